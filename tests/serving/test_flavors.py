"""Flavors, digests and the shared loading path (no deployment target)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mlplatform.core.backends import DeploymentSpec
from mlplatform.core.errors import ArtifactNotFound, InvalidInput
from mlplatform.core.model_loading import (
    ArtifactIntegrityError,
    artifact_sha256,
    cache_root,
    combine_digests,
    fetch_artifact,
    file_sha256,
    load_model,
    load_verified,
    pick_flavor,
    store_sha256,
)
from mlplatform.core.platform import Platform
from mlplatform.plugins.flavors import PythonFunctionFlavor, SklearnFlavor
from tests.serving.conftest import training_frame, upload, write_pyfunc_model, write_sklearn_model

FLAVORS = {"sklearn": SklearnFlavor, "python_function": PythonFunctionFlavor}


def test_digest_is_over_sorted_relative_paths_and_file_digests(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.bin").write_bytes(b"x")
    (tmp_path / "a.txt").write_bytes(b"a")
    expected = combine_digests(
        [("b/x.bin", file_sha256(tmp_path / "b/x.bin")), ("a.txt", file_sha256(tmp_path / "a.txt"))]
    )
    assert artifact_sha256(tmp_path) == expected
    (tmp_path / "a.txt").write_bytes(b"A")
    assert artifact_sha256(tmp_path) != expected


def test_store_digest_matches_folder_digest(serving_platform: Platform, tmp_path: Path) -> None:
    folder = write_sklearn_model(tmp_path / "m")
    assert upload(serving_platform, folder, "models/m/1/") == store_sha256(
        serving_platform.artifact_store, "models/m/1"
    )
    with pytest.raises(ArtifactNotFound):
        store_sha256(serving_platform.artifact_store, "models/none/1/")


def test_detect_by_files() -> None:
    assert SklearnFlavor().detect(["mlplatform-model.json", "model.joblib"])
    assert SklearnFlavor().detect(["model.pkl"])
    assert not SklearnFlavor().detect(["mlplatform-model.json", "model.py"])
    assert PythonFunctionFlavor().detect(["mlplatform-model.json", "model.py", "offset.txt"])
    assert not PythonFunctionFlavor().detect(["model.py"])
    assert pick_flavor(FLAVORS, None, ["mlplatform-model.json", "model.joblib"]) is SklearnFlavor
    with pytest.raises(InvalidInput, match="no flavor"):
        pick_flavor(FLAVORS, None, ["weights.bin"])
    with pytest.raises(InvalidInput, match="not installed; available: python_function, sklearn"):
        pick_flavor(FLAVORS, "onnx", ["model.onnx"])


def test_sklearn_flavor_predicts_with_signature_columns(tmp_path: Path) -> None:
    folder = write_sklearn_model(tmp_path / "m")
    predictor = load_verified(folder, artifact_sha256(folder), SklearnFlavor)
    frame = training_frame()[["x2", "x1"]].assign(extra="ignored")  # columns reordered and one extra
    assert predictor.predict(frame) == [0, 0, 0, 1, 1, 1]
    assert predictor.predict([{"x1": 1.0, "x2": 0.0}]) == [1]
    with pytest.raises(InvalidInput, match="lacks input columns: x2"):
        predictor.predict([{"x1": 1.0}])


def test_python_function_flavor(tmp_path: Path) -> None:
    folder = write_pyfunc_model(tmp_path / "p")
    predictor = load_verified(folder, artifact_sha256(folder), PythonFunctionFlavor)
    assert predictor.predict(training_frame().head(2)) == [10.0, 10.1]


def test_python_function_module_must_be_inside_the_artifact(tmp_path: Path) -> None:
    folder = write_pyfunc_model(tmp_path / "p")
    (folder / "mlplatform-model.json").write_text('{"flavor": "python_function", "module": "../evil.py"}')
    with pytest.raises(InvalidInput, match="not a file in the artifact"):
        PythonFunctionFlavor().load(str(folder))


def test_digest_mismatch_loads_nothing(tmp_path: Path) -> None:
    folder = write_pyfunc_model(tmp_path / "p")
    registered = artifact_sha256(folder)
    marker = tmp_path / "ran"
    (folder / "model.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Model:\n    def predict(self, f): return []\n"
    )
    with pytest.raises(ArtifactIntegrityError, match="digest mismatch"):
        load_verified(folder, registered, PythonFunctionFlavor)
    assert not marker.exists()


def test_fetch_verifies_caches_and_refuses_tampered_store(serving_platform: Platform, tmp_path: Path) -> None:
    folder = write_sklearn_model(tmp_path / "m")
    sha = upload(serving_platform, folder, "models/churn/1/")
    store, cache = serving_platform.artifact_store, cache_root(serving_platform)
    fetched = fetch_artifact(store, "models/churn/1/", sha, cache)
    assert fetched == cache / sha and artifact_sha256(fetched) == sha
    assert [p.name for p in cache.iterdir()] == [sha]  # no temporary folder left behind

    (fetched / "model.joblib").write_bytes(b"corrupted cache")  # a damaged cache copy is replaced
    assert artifact_sha256(fetch_artifact(store, "models/churn/1/", sha, cache)) == sha

    # Content-addressed: a cached copy of the registered bytes is served whatever the store now holds.
    upload(serving_platform, folder, "models/churn/2/")
    store.put("models/churn/2/backdoor.py", io.BytesIO(b"print('x')"))
    assert fetch_artifact(store, "models/churn/2/", sha, cache) == cache / sha
    fresh_cache = tmp_path / "other-cache"
    with pytest.raises(ArtifactIntegrityError):
        fetch_artifact(store, "models/churn/2/", sha, fresh_cache)
    assert list(fresh_cache.iterdir()) == []  # the temporary copy is gone
    with pytest.raises(ArtifactNotFound):
        fetch_artifact(store, "models/none/", sha, fresh_cache)


def test_load_model_through_the_platform(serving_platform: Platform, sklearn_spec: DeploymentSpec) -> None:
    assert load_model(serving_platform, sklearn_spec).predict(training_frame()) == [0, 0, 0, 1, 1, 1]
    unnamed = DeploymentSpec("acme", "churn", 1, "", sklearn_spec.artifact_uri, sklearn_spec.artifact_sha256)
    assert load_model(serving_platform, unnamed).predict(training_frame().tail(1)) == [1]
