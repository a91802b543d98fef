"""Run artifacts through the REST API: streamed, confined, limited."""

from __future__ import annotations

import hashlib
import io

import pytest

from mlplatform.core.errors import InvalidInput
from mlplatform.core.services.artifacts import normalise_path
from tests.api_client import Api


@pytest.fixture
def run(api: Api) -> str:
    assert api.post("/api/v1/projects", json={"name": "p1"}).status_code == 201
    experiment = api.post("/api/v1/projects/p1/experiments", json={"name": "e"}).json["id"]
    return api.post(f"/api/v1/projects/p1/experiments/{experiment}/runs", json={"name": "r"}).json["id"]


def url(run: str, path: str = "") -> str:
    return f"/api/v1/projects/p1/runs/{run}/artifacts" + (f"/{path}" if path else "")


def test_upload_download_and_list(api: Api, run: str) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    response = api.put(url(run, "model/weights.bin"), data=io.BytesIO(body), content_type="application/octet-stream")
    assert response.status_code == 201, response.json
    assert response.json["path"] == "model/weights.bin" and response.json["size"] == len(body)
    api.put(url(run, "model/conf.json"), data=b'{"a": 1}')
    api.put(url(run, "notes.txt"), data=b"hello")
    got = api.get(url(run, "model/weights.bin"))
    assert got.status_code == 200 and got.headers["Content-Length"] == str(len(body))
    assert hashlib.sha256(got.get_data()).hexdigest() == hashlib.sha256(body).hexdigest()
    assert api.get(url(run, "model/conf.json")).headers["Content-Type"] == "application/json"
    listed = api.get(url(run), query_string={"prefix": "model/"}).json["items"]
    assert [(i["path"], i["size"]) for i in listed] == [("model/conf.json", 8), ("model/weights.bin", len(body))]
    assert len(api.get(url(run)).json["items"]) == 3
    assert api.get(url(run, "missing.bin")).status_code == 404


@pytest.mark.parametrize("path", ["../escape", "a/../../b", "a\\b", "a/%2E%2E/%2E%2E/b"])
def test_paths_are_confined(api: Api, run: str, path: str) -> None:
    response = api.put(url(run, path), data=b"x")
    assert response.status_code in (400, 404), response.json
    if response.status_code == 400:
        assert "path" in response.json["errors"]


@pytest.mark.parametrize(
    "path, reason",
    [("/etc/passwd", "absolute"), ("a/../b", "'..'"), ("a\\b", "backslash"), ("", "empty"), ("a\x00b", "control")],
)
def test_normalise_path_refuses(path: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        normalise_path(path)


def test_normalise_path_cleans() -> None:
    assert normalise_path("a//b/./c") == "a/b/c"


def test_a_name_longer_than_a_file_system_takes_is_400(api: Api, run: str) -> None:
    """Before: the local store's open failed with ENAMETOOLONG, a 500."""
    response = api.put(url(run, "x" * 256), data=b"x")
    assert response.status_code == 400 and "longer than 255 bytes" in response.json["message"]
    assert api.put(url(run, "é" * 128), data=b"x").status_code == 400  # 256 bytes in UTF-8
    assert api.put(url(run, "x" * 255), data=b"x").status_code == 201


def test_size_limit_is_413(make_api) -> None:
    api = make_api({"tracking": {"limits": {"max_artifact_bytes": 1000}}})
    api.post("/api/v1/projects", json={"name": "p1"})
    experiment = api.post("/api/v1/projects/p1/experiments", json={"name": "e"}).json["id"]
    run = api.post(f"/api/v1/projects/p1/experiments/{experiment}/runs", json={"name": "r"}).json["id"]
    response = api.put(url(run, "big.bin"), data=b"x" * 5000)
    assert response.status_code == 413
    assert api.get(url(run)).json["items"] == []
    assert api.put(url(run, "small.bin"), data=b"x" * 1000).status_code == 201


def test_viewers_read_but_do_not_write(api: Api, run: str) -> None:
    viewer = api.user("vic", role="viewer", project="p1")
    api.put(url(run, "a.txt"), data=b"a")
    assert api.get(url(run, "a.txt"), token=viewer).status_code == 200
    assert api.put(url(run, "b.txt"), token=viewer, data=b"b").status_code == 403
