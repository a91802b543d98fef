"""The ``onnx`` flavor (plugins_contrib.onnx): graphs built in the test with ``onnx.helper``
(and one converted from scikit-learn by skl2onnx), run by onnxruntime on the CPU."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from marshmallow import ValidationError
from onnx import TensorProto, helper, numpy_helper

from mlplatform.core.backends import DeploymentSpec
from mlplatform.core.errors import ConfigError, InvalidInput, Unprocessable
from mlplatform.core.model_loading import (
    DESCRIPTOR,
    ArtifactIntegrityError,
    artifact_sha256,
    available_flavors,
    flavor_options,
    load_model,
    load_verified,
    pick_flavor,
)
from mlplatform.core.platform import Platform
from mlplatform.core.plugins import describe_schema
from mlplatform.plugins.flavors import PythonFunctionFlavor, SklearnFlavor
from plugins_contrib.onnx import plugin
from plugins_contrib.onnx.flavor import OnnxFlavor
from tests.api_client import Api
from tests.contrib.helpers import declared_entry_points, manager_with
from tests.registry.conftest import create_model, make_run, register, upload_folder
from tests.serving.conftest import upload

OPSET = 19
IR_VERSION = 9  # what onnxruntime >= 1.16 reads, whatever onnx writes by default
COLUMNS = ["x1", "x2", "x3"]
SIGNATURE = {"inputs": [{"name": name, "type": "double"} for name in COLUMNS]}
WEIGHTS = np.array([[0.5], [-2.0], [1.25]], dtype=np.float32)
BIAS = np.array([0.75], dtype=np.float32)
CLASS_WEIGHTS = np.array([[1.0, -1.0, 0.0], [0.0, 2.0, -1.0], [-1.0, 0.0, 3.0]], dtype=np.float32)
CLASS_BIAS = np.array([0.1, 0.0, -0.1], dtype=np.float32)
RNG = np.random.default_rng(20240501)
# onnxruntime computes in float32: about 1e-7 absolute on the small outputs some batches give
FLOAT32 = {"rel": 1e-6, "abs": 1e-6}


def batch(rows: int = 7) -> pd.DataFrame:
    return pd.DataFrame(RNG.normal(size=(rows, len(COLUMNS))), columns=COLUMNS)


def finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def linear_model(width: int = 3, input_name: str = "X") -> onnx.ModelProto:
    """y = X·w + b: one float input [batch, width], one output [batch, 1]."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(WEIGHTS[:width], "w"), numpy_helper.from_array(BIAS, "b")],
    )
    return finish(graph)


def classifier_model() -> onnx.ModelProto:
    """Scores = X·W + b over three classes; outputs the ArgMax ``label`` first, then ``scores``."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["scores"]),
            helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
        ],
        "classifier",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3]),
        ],
        [numpy_helper.from_array(CLASS_WEIGHTS, "W"), numpy_helper.from_array(CLASS_BIAS, "B")],
    )
    return finish(graph)


def per_column_model() -> onnx.ModelProto:
    """One input per column: y = 2·age + income + (city == "Paris"), age int64 [batch, 1],
    income double [batch], city string [batch, 1]."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["age"], ["age_f"], to=TensorProto.DOUBLE),
            helper.make_node("Mul", ["age_f", "two"], ["age2"]),
            helper.make_node("Unsqueeze", ["income", "axis1"], ["income2d"]),
            helper.make_node("Equal", ["city", "paris"], ["is_paris"]),
            helper.make_node("Cast", ["is_paris"], ["paris_f"], to=TensorProto.DOUBLE),
            helper.make_node("Add", ["age2", "income2d"], ["partial"]),
            helper.make_node("Add", ["partial", "paris_f"], ["y"]),
        ],
        "per_column",
        [
            helper.make_tensor_value_info("age", TensorProto.INT64, [None, 1]),
            helper.make_tensor_value_info("income", TensorProto.DOUBLE, [None]),
            helper.make_tensor_value_info("city", TensorProto.STRING, [None, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, 1])],
        [
            numpy_helper.from_array(np.array([2.0]), "two"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
            numpy_helper.from_array(np.array(["Paris"], dtype=object), "paris"),
        ],
    )
    return finish(graph)


def write_onnx_model(folder: Path, model: onnx.ModelProto | bytes, file: str = "model.onnx", **descriptor: Any) -> Path:
    """``folder`` with the graph as ``file`` and, when ``descriptor`` is given, mlplatform-model.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    if descriptor:
        (folder / DESCRIPTOR).write_text(json.dumps({"flavor": "onnx", **descriptor}))
    return folder


def load(folder: Path, **options: Any) -> Any:
    return OnnxFlavor(options).load(str(folder))


def expected_linear(frame: pd.DataFrame) -> list[float]:
    return ((frame[COLUMNS].to_numpy(np.float32) @ WEIGHTS) + BIAS)[:, 0].tolist()


# --- the plugin -------------------------------------------------------------------------------


def test_registered_through_its_entry_point(make_platform: Callable[..., Platform]) -> None:
    assert plugin.register_model_flavors() == [OnnxFlavor]
    assert declared_entry_points("onnx") == ["plugins_contrib.onnx.plugin"]
    assert manager_with(plugin).backends.entries("model_flavor")["onnx"].cls is OnnxFlavor
    assert available_flavors(make_platform())["onnx"] is OnnxFlavor
    described = describe_schema(OnnxFlavor.Config)
    assert (
        described["providers"]["default"] == ["CPUExecutionProvider"]
        and described["intra_op_num_threads"]["default"] == 0
    )
    with pytest.raises(ValidationError):
        OnnxFlavor({"threads": 2})


def test_detects_a_folder_holding_an_onnx_file() -> None:
    flavors = {"sklearn": SklearnFlavor, "python_function": PythonFunctionFlavor, "onnx": OnnxFlavor}
    assert OnnxFlavor().detect(["model.onnx"])
    assert OnnxFlavor().detect([DESCRIPTOR, "graphs/Net.ONNX", "weights.bin"])
    assert not OnnxFlavor().detect([DESCRIPTOR, "model.joblib"])
    assert pick_flavor(flavors, None, [DESCRIPTOR, "model.onnx"]) is OnnxFlavor
    assert pick_flavor(flavors, None, ["model.joblib"]) is SklearnFlavor


def test_load_through_the_platform_detects_the_flavor(make_platform: Callable[..., Platform], tmp_path: Path) -> None:
    platform = make_platform()
    folder = write_onnx_model(tmp_path / "m", linear_model())
    spec = DeploymentSpec("acme", "lin", 1, "", "models/lin/1/", upload(platform, folder, "models/lin/1/"))
    frame = batch()
    assert load_model(platform, spec).predict(frame) == pytest.approx(expected_linear(frame), **FLOAT32)


# --- predictions --------------------------------------------------------------------------------


def test_one_2d_input_fed_by_the_signature_columns_in_order(tmp_path: Path) -> None:
    predictor = load(write_onnx_model(tmp_path / "m", linear_model(), signature=SIGNATURE))
    frame = batch()
    reordered = frame[["x3", "x1", "x2"]].assign(extra="dropped")
    assert predictor.predict(reordered) == pytest.approx(expected_linear(frame), **FLOAT32)
    records = frame.to_dict(orient="records")
    assert predictor.predict(records) == pytest.approx(expected_linear(frame), **FLOAT32)
    assert all(isinstance(value, float) for value in predictor.predict(frame))  # [batch, 1] gives scalars


def test_without_a_signature_the_batch_columns_are_fed_in_their_order(tmp_path: Path) -> None:
    predictor = load(write_onnx_model(tmp_path / "m", linear_model()))
    frame = batch(3)
    assert predictor.predict(frame) == pytest.approx(expected_linear(frame), **FLOAT32)
    with pytest.raises(InvalidInput, match="takes 3 features per row, the batch has 2"):
        predictor.predict(frame[["x1", "x2"]])


def test_classifier_labels_and_a_named_output(tmp_path: Path) -> None:
    frame = batch(12)
    scores = frame[COLUMNS].to_numpy(np.float32) @ CLASS_WEIGHTS + CLASS_BIAS
    labels = load(write_onnx_model(tmp_path / "a", classifier_model(), signature=SIGNATURE)).predict(frame)
    assert labels == scores.argmax(axis=1).tolist() and len(set(labels)) > 1
    named = write_onnx_model(tmp_path / "b", classifier_model(), signature=SIGNATURE, output="scores")
    assert np.allclose(load(named).predict(frame), scores, rtol=1e-6)
    wrong = write_onnx_model(tmp_path / "c", classifier_model(), output="proba")
    with pytest.raises(InvalidInput, match="names output 'proba'; the ONNX graph's outputs are label, scores"):
        load(wrong)


def test_one_input_per_column(tmp_path: Path) -> None:
    signature = {
        "inputs": [
            {"name": "city", "type": "string"},
            {"name": "age", "type": "integer"},
            {"name": "income", "type": "double"},
        ]
    }
    frame = pd.DataFrame({"city": ["Paris", "Lyon", "Paris"], "age": [30, 41, 52], "income": [1.5, 2.25, -3.0]})
    expected = (2 * frame["age"] + frame["income"] + (frame["city"] == "Paris")).tolist()
    for folder, descriptor in ((tmp_path / "signed", {"signature": signature}), (tmp_path / "unsigned", {})):
        predictor = load(write_onnx_model(folder, per_column_model(), **descriptor))
        assert predictor.predict(frame) == pytest.approx(expected)
        assert predictor.predict(frame.to_dict(orient="records")[:1]) == pytest.approx(expected[:1])
        with pytest.raises(InvalidInput, match="lacks input columns: income"):
            predictor.predict(frame[["city", "age"]])
    with pytest.raises(InvalidInput, match="cannot be fed to the ONNX graph's input 'age'"):
        predictor.predict(frame.assign(age=["thirty", "x", "y"]))


def test_a_scikit_learn_model_converted_by_skl2onnx(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    train = batch(60)
    labels = (train["x1"] - train["x2"] > 0).astype(int)
    model = LogisticRegression().fit(train.to_numpy(np.float32), labels)
    converted = to_onnx(model, train.to_numpy(np.float32)[:1], target_opset=OPSET)
    folder = write_onnx_model(tmp_path / "sk", converted, signature=SIGNATURE)
    frame = batch(20)
    assert load(folder).predict(frame) == model.predict(frame.to_numpy(np.float32)).tolist()
    probabilities = load(write_onnx_model(tmp_path / "p", converted, output="output_probability")).predict(frame)
    expected = model.predict_proba(frame.to_numpy(np.float32))
    assert [sorted(row) for row in probabilities] == [["0", "1"]] * 20  # ZipMap: an object per row
    assert np.allclose([[row["0"], row["1"]] for row in probabilities], expected, atol=1e-5)


# --- errors ----------------------------------------------------------------------------------------


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    named = write_onnx_model(tmp_path / "named", linear_model(), file="net.onnx", model_file="other.onnx")
    with pytest.raises(InvalidInput, match="no ONNX model file 'other.onnx'"):
        OnnxFlavor().load(str(named))
    escaping = write_onnx_model(tmp_path / "escape", linear_model(), model_file="../named/net.onnx")
    with pytest.raises(InvalidInput, match="no ONNX model file"):
        OnnxFlavor().load(str(escaping))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no ONNX model file 'model.onnx'"):
        OnnxFlavor().load(str(tmp_path / "empty"))
    several = write_onnx_model(tmp_path / "several", linear_model(), file="a.onnx")
    write_onnx_model(several, linear_model(), file="b.onnx")
    with pytest.raises(InvalidInput, match=r"several ONNX files \(a.onnx, b.onnx\)"):
        OnnxFlavor().load(str(several))
    assert load(write_onnx_model(tmp_path / "one", linear_model(), file="net.onnx")).predict(batch(2))  # the only one

    corrupt = write_onnx_model(tmp_path / "corrupt", b"this is not a protobuf")
    with pytest.raises(InvalidInput, match="cannot load ONNX model model.onnx") as raised:
        OnnxFlavor().load(str(corrupt))
    assert str(tmp_path) not in raised.value.message  # the host's paths stay out of the reason
    invalid = linear_model()
    invalid.graph.node[0].op_type = "NoSuchOperator"
    with pytest.raises(InvalidInput, match="cannot load ONNX model model.onnx"):
        OnnxFlavor().load(str(write_onnx_model(tmp_path / "invalid", invalid)))


def test_inputs_that_do_not_match_the_signature(tmp_path: Path) -> None:
    two_columns = {"inputs": SIGNATURE["inputs"][:2]}
    with pytest.raises(
        InvalidInput, match=r"input 'X' takes 3 features per row, the signature names 2 columns \(x1, x2\)"
    ):
        load(write_onnx_model(tmp_path / "a", linear_model(), signature=two_columns))
    renamed = {"inputs": [{"name": "city"}, {"name": "age"}, {"name": "salary"}]}
    with pytest.raises(InvalidInput, match="no column for input income; no input for column salary") as raised:
        load(write_onnx_model(tmp_path / "b", per_column_model(), signature=renamed))
    assert raised.value.errors == {"inputs": ["income"], "columns": ["salary"]}
    cube = finish(
        helper.make_graph(
            [helper.make_node("Identity", ["v"], ["y"])],
            "rank3",
            [helper.make_tensor_value_info("v", TensorProto.FLOAT, [None, 2, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2, 2])],
        )
    )
    with pytest.raises(InvalidInput, match=r"input 'v' has shape \[\?, 2, 2\]; a single input must be 2-D"):
        load(write_onnx_model(tmp_path / "c", cube, signature=SIGNATURE))
    predictor = load(write_onnx_model(tmp_path / "d", linear_model(), signature=SIGNATURE))
    with pytest.raises(InvalidInput, match="lacks input columns: x3"):
        predictor.predict(batch(2)[["x1", "x2"]])
    with pytest.raises(InvalidInput, match="cannot be fed"):
        predictor.predict(batch(2).assign(x2="high"))


def test_options_choose_providers_and_threads(tmp_path: Path) -> None:
    folder = write_onnx_model(tmp_path / "m", linear_model())
    predictor = load(folder, providers=["CPUExecutionProvider"], intra_op_num_threads=1)
    assert predictor.predict(batch(2))
    with pytest.raises(
        InvalidInput, match="provider NoSuchExecutionProvider is not available here; available: .*CPUExecutionProvider"
    ):
        load(folder, providers=["NoSuchExecutionProvider"])


def test_a_batch_the_graph_refuses_is_unprocessable(tmp_path: Path) -> None:
    fixed = finish(
        helper.make_graph(
            [helper.make_node("MatMul", ["X", "w"], ["y"])],
            "fixed_batch",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])],
            [numpy_helper.from_array(WEIGHTS, "w")],
        )
    )
    predictor = load(write_onnx_model(tmp_path / "m", fixed, signature=SIGNATURE))
    assert len(predictor.predict(batch(2))) == 2
    with pytest.raises(Unprocessable, match="the ONNX model failed on this batch"):
        predictor.predict(batch(5))


def test_a_digest_mismatch_refuses_loading(tmp_path: Path) -> None:
    folder = write_onnx_model(tmp_path / "m", linear_model())
    registered = artifact_sha256(folder)
    write_onnx_model(folder, classifier_model())
    with pytest.raises(ArtifactIntegrityError, match="digest mismatch"):
        load_verified(folder, registered, OnnxFlavor)


# --- through the REST API: register, validate, deploy, predict ---------------------------------------

P = "/api/v1/projects/p1"
EXAMPLE = [{"x1": 0.5, "x2": -1.0, "x3": 2.0}, {"x1": 1.5, "x2": 0.25, "x3": -0.5}]


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """An app on SQLite with project ``p1`` and a ``staging`` environment on the local target."""
    api = make_api({"environments": [{"name": "staging", "target": "local"}]})
    assert api.post("/api/v1/projects", json={"name": "p1"}).status_code == 201
    return api


def registered(api: Api, folder: Path, model: str, **body: Any) -> dict[str, Any]:
    create_model(api, model)
    run = make_run(api)
    upload_folder(api, run["id"], folder)
    response = register(api, model, run["id"], **body)
    assert response.status_code == 201, response.json
    assert response.json["flavor"] == "onnx"
    assert api.platform.jobs.wait_idle(30)
    return api.get(f"{P}/models/{model}/versions/{response.json['version']}").json


def test_register_deploy_and_predict_through_the_gateway(api: Api, tmp_path: Path) -> None:
    version = registered(api, write_onnx_model(tmp_path / "model", linear_model()), "lin", input_example=EXAMPLE)
    assert version["status"] == "ready", version
    assert [c["name"] for c in version["signature"]["inputs"]] == COLUMNS
    assert version["signature"]["outputs"] == [{"name": "prediction", "type": "number", "nullable": False}]

    response = api.put(f"{P}/models/lin/deployments/staging", json={"version": 1})
    assert response.status_code == 202, response.json
    assert api.platform.jobs.wait_idle(30)
    assert api.get(f"{P}/models/lin/deployments/staging").json["status"] == "healthy"
    rows = [{"x3": 1.0, "x1": 2.0, "x2": 3.0}, *EXAMPLE]
    response = api.post(f"{P}/models/lin/deployments/staging/predict", json={"instances": rows})
    assert response.status_code == 200, response.json
    assert response.json["version"] == 1
    assert response.json["predictions"] == pytest.approx(expected_linear(pd.DataFrame(rows)), **FLOAT32)


def test_a_corrupt_onnx_file_fails_the_version_with_the_reason(api: Api, tmp_path: Path) -> None:
    version = registered(api, write_onnx_model(tmp_path / "model", b"\x08\x07garbage"), "broken")
    assert version["status"] == "failed"
    assert "cannot load ONNX model model.onnx" in version["status_message"], version
    assert api.get(f"{P}/models/broken").json["latest_version"] is None


def test_inputs_that_do_not_match_the_example_fail_the_version(api: Api, tmp_path: Path) -> None:
    example = [{name: value for name, value in row.items() if name != "x3"} for row in EXAMPLE]
    version = registered(api, write_onnx_model(tmp_path / "model", linear_model()), "narrow", input_example=example)
    assert version["status"] == "failed" and "takes 3 features per row, the batch has 2" in version["status_message"]


def test_model_flavors_config_reaches_the_flavor_and_is_checked_at_start_up(make_platform: Any) -> None:
    platform = make_platform({"model_flavors": {"onnx": {"intra_op_num_threads": 1}}})
    flavor = available_flavors(platform)["onnx"]
    assert flavor_options(platform, flavor)["intra_op_num_threads"] == 1
    assert flavor_options(make_platform(), flavor)["intra_op_num_threads"] == 0  # the schema's default
    with pytest.raises(ConfigError, match=r"model_flavors\.onnx"):
        make_platform({"model_flavors": {"onnx": {"threads": 1}}})
    with pytest.raises(ConfigError, match=r"model_flavors\.onxx"):
        make_platform({"model_flavors": {"onxx": {}}})
