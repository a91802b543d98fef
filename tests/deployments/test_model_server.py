"""``mlplatform model-server``: one version over HTTP with the gateway's loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform.core.errors import Conflict, InvalidInput, NotFound
from mlplatform.model_server import create_model_server, resolve_spec
from tests.api_client import Api
from tests.deployments.conftest import ROWS, add_version


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
