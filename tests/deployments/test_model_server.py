"""``mlplatform model-server``: one version over HTTP with the gateway's loading and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from mlplatform import __version__
from mlplatform.core.errors import Conflict, InvalidInput, NotFound
from mlplatform.core.model_loading import DESCRIPTOR
from mlplatform.model_server import create_model_server, resolve_spec
from tests.api_client import Api
from tests.deployments.conftest import ROWS, add_version, store_version


def test_serves_one_version(api: Api, tmp_path: Path) -> None:
    version_id = add_version(api.platform, tmp_path, 1)
    spec = resolve_spec(api.platform, version_id=version_id)
    assert resolve_spec(api.platform, project="acme", model="churn", version="v1") == spec
    app = create_model_server(api.platform, spec)
    assert app.extensions["model_server"].wait(30)
    client = app.test_client()
    assert client.get("/health").json == {"status": "ok"}
    assert client.get("/ready").json == {"status": "ready", "model": "churn", "version": 1}

    response = client.post("/predict", json={"instances": ROWS}, headers={"X-Request-ID": "abc"})
    assert response.json == {"predictions": [0, 1], "version": 1, "request_id": "abc"}
    assert client.post("/predict", json={"records": ROWS}).json["predictions"] == [
        0,
        1,
    ]  # the kubernetes target's shape
    assert client.post("/predict", json={"columns": ["x1", "x2"], "data": [[1.1, 0.1]]}).json["predictions"] == [1]
    response = client.post("/predict", json={"instances": [{"x1": "a", "x2": 1.0}]})
    assert response.status_code == 422 and "'x1'" in response.json["message"]
    response = client.post("/predict", data=b"x" * (api.platform.config["gateway"]["max_body_bytes"] + 1))
    assert response.status_code == 413


def test_failed_load_is_not_ready(api: Api, tmp_path: Path) -> None:
    spec = resolve_spec(api.platform, version_id=add_version(api.platform, tmp_path, 1, broken=True))
    app = create_model_server(api.platform, spec)
    assert app.extensions["model_server"].wait(30)
    client = app.test_client()
    assert client.get("/health").status_code == 200
    response = client.get("/ready")
    assert response.status_code == 503 and "cannot load sklearn model" in response.json["message"]
    assert client.post("/predict", json={"instances": ROWS}).status_code == 503


def test_resolve_refusals(api: Api, tmp_path: Path) -> None:
    add_version(api.platform, tmp_path, 1, status="failed")
    with pytest.raises(InvalidInput):
        resolve_spec(api.platform)
    with pytest.raises(NotFound):
        resolve_spec(api.platform, version_id=999)
    with pytest.raises(Conflict, match="failed"):
        resolve_spec(api.platform, project="acme", model="churn", version=1)


# --- MLflow's scoring protocol and KServe's Open Inference Protocol (V2) ---------------------------

#: A python_function model over integer, string and boolean columns, answering one record per row
#: (several outputs), to show each protocol's typing.
TYPED_SOURCE = """
class Model:
    def __init__(self, artifact_dir):
        pass

    def predict(self, frame):
        return [
            {"double": int(n) * 2, "shout": s.upper(), "flipped": not b}
            for n, s, b in zip(frame["n"], frame["s"], frame["b"])
        ]
"""
TYPED_SIGNATURE = {
    "inputs": [
        {"name": "n", "type": "long"},
        {"name": "s", "type": "string"},
        {"name": "b", "type": "boolean", "nullable": True},
    ]
}


def serve(api: Api, version_id: int) -> FlaskClient:
    app = create_model_server(api.platform, resolve_spec(api.platform, version_id=version_id))
    assert app.extensions["model_server"].wait(30)
    return app.test_client()


@pytest.fixture
def typed(api: Api, tmp_path: Path) -> FlaskClient:
    folder = tmp_path / "typed"
    folder.mkdir()
    (folder / "model.py").write_text(TYPED_SOURCE)
    (folder / DESCRIPTOR).write_text(json.dumps({"flavor": "python_function", "module": "model.py", "class": "Model"}))
    version_id = store_version(
        api.platform, folder, 1, model="typed", flavor="python_function", signature=TYPED_SIGNATURE
    )
    return serve(api, version_id)


def test_mlflow_scoring_protocol(api: Api, tmp_path: Path) -> None:
    """What MLflow's ScoringServerClient sends: /ping until 200, then JSON to /invocations."""
    client = serve(api, add_version(api.platform, tmp_path, 1))
    assert client.get("/ping").status_code == 200
    assert client.get("/version").text == __version__
    split = {"dataframe_split": {"columns": ["x1", "x2"], "data": [[0.0, 1.0], [1.1, 0.1]]}}
    response = client.post("/invocations", json=split, headers={"X-Request-ID": "r1"})
    assert response.json == {"predictions": [0, 1], "version": 1, "request_id": "r1"}
    assert client.post("/invocations", json={"dataframe_records": ROWS}).json["predictions"] == [0, 1]
    assert client.post("/invocations", json={"inputs": {"x1": [1.1], "x2": [0.1]}}).json["predictions"] == [1]

    csv = client.post("/invocations", data="x1,x2\n0.0,1.0\n1.1,0.1\n", content_type="text/csv")
    assert csv.status_code == 200 and csv.json["predictions"] == [0, 1]
    bad = client.post("/invocations", data="x1,x2\nabc,1.0\n", content_type="text/csv")
    assert bad.status_code == 422 and bad.json["error_code"] == "BAD_REQUEST"
    assert bad.json["errors"] == {"x1": ["wrong type: expected number, got 'abc'"]}
    ragged = client.post("/invocations", data="x1,x2\n1.0\n", content_type="text/csv")
    assert ragged.status_code == 422 and "line 2 has 1 cells" in ragged.json["message"]
    assert client.post("/invocations", data="", content_type="text/csv").status_code == 422
    other = client.post("/invocations", data="<x/>", content_type="application/xml")
    assert other.status_code == 415 and "text/csv" in other.json["message"]
    missing = client.post("/invocations", json={"dataframe_split": {"columns": ["x1"], "data": [[1.0]]}})
    assert missing.status_code == 422 and missing.json["errors"] == {"x2": ["missing"]}


def test_csv_cells_are_read_as_their_column_type(typed: FlaskClient) -> None:
    response = typed.post("/invocations", data="n,s,b\n2,007,true\n3,x,\n4,y,0\n", content_type="text/csv")
    assert response.status_code == 200, response.json
    assert response.json["predictions"] == [
        {"double": 4, "shout": "007", "flipped": False},  # "007" stays a string: the column is one
        {"double": 6, "shout": "X", "flipped": True},  # an empty cell is null (b is nullable)
        {"double": 8, "shout": "Y", "flipped": True},
    ]
    wrong = typed.post("/invocations", data="n,s,b\n2.5,x,maybe\n", content_type="text/csv")
    assert wrong.status_code == 422
    assert wrong.json["errors"] == {
        "n": ["wrong type: expected integer, got 2.5"],
        "b": ["wrong type: expected boolean, got 'maybe'"],
    }
    assert typed.post("/invocations", data="n,s,b\n,x,true\n", content_type="text/csv").json["errors"] == {
        "n": ["null not allowed"]
    }


def test_open_inference_protocol(api: Api, tmp_path: Path) -> None:
    """KServe's V2 REST protocol: health, metadata, readiness and infer, in both tensor layouts."""
    client = serve(api, add_version(api.platform, tmp_path, 1))
    assert client.get("/v2").json == {"name": "mlplatform", "version": __version__, "extensions": []}
    assert client.get("/v2/health/live").json == {"live": True}
    assert client.get("/v2/health/ready").json == {"ready": True}
    metadata = {
        "name": "churn",
        "versions": ["1"],
        "platform": "mlplatform-sklearn",
        "inputs": [
            {"name": "x1", "datatype": "FP64", "shape": [-1]},
            {"name": "x2", "datatype": "FP64", "shape": [-1]},
        ],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
    }
    assert client.get("/v2/models/churn").json == metadata
    assert client.get("/v2/models/churn/versions/1").json == metadata
    assert client.get("/v2/models/churn/ready").json == {"name": "churn", "ready": True}

    matrix = {
        "id": "req-7",
        "inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [0, 1, 1.1, 0.1]}],
    }
    expected = {
        "model_name": "churn",
        "model_version": "1",
        "id": "req-7",
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 1]}],
    }
    assert client.post("/v2/models/churn/infer", json=matrix).json == expected
    assert client.post("/v2/models/churn/versions/1/infer", json=matrix).json == expected
    nested = {"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [[0, 1], [1.1, 0.1]]}]}
    response = client.post("/v2/models/churn/infer", json=nested, headers={"X-Request-ID": "h1"})
    assert response.json["outputs"] == expected["outputs"] and response.json["id"] == "h1"
    columns = {
        "inputs": [
            {"name": "x2", "shape": [2, 1], "datatype": "FP64", "data": [1.0, 0.1]},
            {"name": "x1", "shape": [2], "datatype": "FP64", "data": [0.0, 1.1]},
        ],
        "outputs": [{"name": "predict"}],
    }
    assert client.post("/v2/models/churn/infer", json=columns).json["outputs"] == expected["outputs"]


@pytest.mark.parametrize(
    ("tensors", "status", "says"),
    [
        ([], 400, "'inputs' must be a non-empty list"),
        ([{"shape": [1], "datatype": "FP64", "data": [1.0]}], 400, "needs a 'name'"),
        ([{"name": "m", "shape": "2x2", "datatype": "FP64", "data": [1.0]}], 400, "'shape' must be a list"),
        ([{"name": "m", "shape": [1, 2], "datatype": "FLOAT", "data": [1.0, 2.0]}], 400, "unknown datatype 'FLOAT'"),
        ([{"name": "m", "shape": [1, 2], "datatype": "FP64", "data": [1.0]}], 400, "holds 2 values but 'data' has 1"),
        ([{"name": "m", "shape": [1, 2], "datatype": "FP64", "data": [1.0, "a"]}], 400, "data[1] is 'a', not a number"),
        ([{"name": "m", "shape": [1, 2], "datatype": "UINT8", "data": [1, 300]}], 400, "outside UINT8's range"),
        ([{"name": "m", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}], 400, "has 3 columns but"),
        (
            [
                {"name": "x1", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
                {"name": "x2", "shape": [1], "datatype": "FP64", "data": [1.0]},
            ],
            400,
            "has 1 rows where the others have 2",
        ),
        ([{"name": "x1", "shape": [1], "datatype": "FP64", "data": [1.0]}], 422, "column 'x2': missing"),
        (
            [
                {"name": "x1", "shape": [1], "datatype": "BYTES", "data": ["a"]},
                {"name": "x2", "shape": [1], "datatype": "FP64", "data": [1.0]},
            ],
            422,
            "column 'x1': wrong type: expected number, got 'a'",
        ),
    ],
)
def test_open_inference_refusals(api: Api, tmp_path: Path, tensors: list[Any], status: int, says: str) -> None:
    client = serve(api, add_version(api.platform, tmp_path, 1))
    response = client.post("/v2/models/churn/infer", json={"inputs": tensors})
    assert response.status_code == status, response.json
    assert says in response.json["error"] and response.json["message"] == response.json["error"]


def test_open_inference_names_the_model_it_serves(api: Api, tmp_path: Path) -> None:
    client = serve(api, add_version(api.platform, tmp_path, 1))
    body = {"inputs": [{"name": "m", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 0.0]}]}
    for path in ("/v2/models/other/infer", "/v2/models/churn/versions/2/infer"):
        response = client.post(path, json=body)
        assert response.status_code == 404 and "serves 'churn' version 1" in response.json["error"]
    assert client.get("/v2/models/other/ready").status_code == 404
    unknown = client.post("/v2/models/churn/infer", json={**body, "outputs": [{"name": "proba"}]})
    assert unknown.status_code == 400 and "no output 'proba'" in unknown.json["error"]
    assert client.post("/v2/models/churn/infer", data="{").status_code == 400
    assert client.get("/v2/nothing").status_code == 404 and client.get("/v2/nothing").json["code"] == 404


def test_open_inference_typed_outputs(typed: FlaskClient) -> None:
    body = {
        "inputs": [
            {"name": "n", "shape": [2], "datatype": "INT32", "data": [1, 2]},
            {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
            {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        ]
    }
    response = typed.post("/v2/models/typed/infer", json=body)
    assert response.status_code == 200, response.json
    assert response.json["outputs"] == [
        {"name": "double", "datatype": "INT64", "shape": [2], "data": [2, 4]},
        {"name": "shout", "datatype": "BYTES", "shape": [2], "data": ["A", "B"]},
        {"name": "flipped", "datatype": "BOOL", "shape": [2], "data": [False, True]},
    ]
    picked = typed.post("/v2/models/typed/infer", json={**body, "outputs": [{"name": "shout"}]})
    assert [tensor["name"] for tensor in picked.json["outputs"]] == ["shout"]
    metadata = typed.get("/v2/models/typed").json
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [("n", "INT64"), ("s", "BYTES"), ("b", "BOOL")]
    assert metadata["outputs"] == []


def test_protocol_readiness_while_the_model_cannot_load(api: Api, tmp_path: Path) -> None:
    client = serve(api, add_version(api.platform, tmp_path, 1, broken=True))
    assert client.get("/v2/health/live").status_code == 200
    for path in ("/ping", "/v2/health/ready", "/v2/models/churn/ready"):
        response = client.get(path)
        assert response.status_code == 503 and "cannot load sklearn model" in response.json["message"], path
    assert client.get("/v2/health/ready").json["ready"] is False
    body = {"inputs": [{"name": "m", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 0.0]}]}
    assert client.post("/v2/models/churn/infer", json=body).status_code == 503
    assert client.post("/invocations", json={"dataframe_records": ROWS}).json["error_code"] == "TEMPORARILY_UNAVAILABLE"


def binary_request(tensors: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, dict[str, str]]:
    """A V2 request in the binary tensor extension, laid out as tritonclient lays it out."""
    header = {
        "inputs": [
            {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(blob)}}
            for name, datatype, shape, blob in tensors
        ]
    }
    head = json.dumps(header).encode()
    return head + b"".join(blob for *_, blob in tensors), {"Inference-Header-Content-Length": str(len(head))}


def test_open_inference_binary_tensors(api: Api, typed: FlaskClient, tmp_path: Path) -> None:
    """Triton's and KServe's clients send tensors in binary after a JSON header by default."""
    import numpy as np

    client = serve(api, add_version(api.platform, tmp_path, 1))
    matrix = np.array([[0.0, 1.0], [1.1, 0.1]], dtype=np.float32).tobytes()
    body, headers = binary_request([("input-0", "FP32", [2, 2], matrix)])
    response = client.post("/v2/models/churn/infer", data=body, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 1]}]

    strings = b"".join(len(s).to_bytes(4, "little") + s for s in (b"a", "\u00e9t\u00e9".encode()))
    body, headers = binary_request(
        [
            ("n", "INT64", [2], np.array([1, 2], dtype=np.int64).tobytes()),
            ("s", "BYTES", [2], strings),
            ("b", "BOOL", [2], np.array([True, False]).tobytes()),
        ]
    )
    response = typed.post("/v2/models/typed/infer", data=body, headers=headers)
    assert response.status_code == 200, response.json
    assert [t["data"] for t in response.json["outputs"]] == [[2, 4], ["A", "\u00c9T\u00c9"], [False, True]]

    three, three_headers = binary_request([("input-0", "FP32", [2, 2], matrix[:12])])
    whole, headers = binary_request([("input-0", "FP32", [2, 2], matrix)])
    for data, header, says in [
        (three, three_headers, "holds 4 values but 'data' has 3"),
        (whole[:-4], headers, "binary_data_size 16 runs past the body"),
        (whole + b"xx", headers, "2 bytes after its tensors"),
        (whole, {"Inference-Header-Content-Length": "99999"}, "not a size within the body"),
        (whole, {"Inference-Header-Content-Length": "3"}, "header is not valid JSON"),
    ]:
        response = client.post("/v2/models/churn/infer", data=data, headers=header)
        assert response.status_code == 400 and says in response.json["error"], (says, response.json)
    odd, headers = binary_request([("input-0", "FP32", [1, 2], b"\x00" * 7)])
    assert (
        "not a whole number of FP32" in client.post("/v2/models/churn/infer", data=odd, headers=headers).json["error"]
    )
