"""Deployment fixtures: an API with two environments, and model versions written straight to the DB.

Versions are real: a tiny LogisticRegression (features x1, x2) saved with its descriptor,
uploaded through the platform's artifact store, its digest recorded as the registry does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.model_loading import DESCRIPTOR, store_sha256
from mlplatform.core.platform import Platform
from tests.api_client import Api
from tests.conftest import deep_merge
from tests.serving.conftest import write_sklearn_model

PROJECT = "acme"
MODEL = "churn"
ENVIRONMENTS = [
    {"name": "staging", "target": "local"},
    {"name": "production", "target": "local", "approvals": 1, "promotion_only": True},
]
SIGNATURE = {
    "inputs": [{"name": "x1", "type": "double"}, {"name": "x2", "type": "double"}],
    "outputs": [{"type": "long"}],
}
BASE = f"/api/v1/projects/{PROJECT}/models/{MODEL}/deployments"


@pytest.fixture
def dapi(make_api: Callable[..., Api], db_kind: str) -> Callable[..., Api]:
    """``dapi(overrides)``: an API on ``db_kind`` with staging and production and project ``acme``.
    The gateway and targets close with the platform."""

    def make(overrides: dict[str, Any] | None = None) -> Api:
        api = make_api(deep_merge({"environments": ENVIRONMENTS}, overrides or {}), db=db_kind)
        assert api.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
        return api

    return make


@pytest.fixture
def api(dapi: Callable[..., Api]) -> Api:
    return dapi()


def add_version(
    platform: Platform,
    tmp_path: Path,
    number: int,
    *,
    model: str = MODEL,
    project: str = PROJECT,
    status: str = "ready",
    archived: bool = False,
    broken: bool = False,
    signature: dict[str, Any] | None = SIGNATURE,
) -> int:
    """Register version ``number`` of ``model`` directly in the database; returns its id.

    ``broken``: the artifact's model.joblib is not a pickle, so loading it fails.
    """
    folder = write_sklearn_model(tmp_path / f"{project}-{model}-{number}")
    if broken:
        (folder / "model.joblib").write_bytes(b"not a pickle")
    if signature is None:
        (folder / DESCRIPTOR).write_text(json.dumps({"flavor": "sklearn"}))
    return store_version(
        platform,
        folder,
        number,
        project=project,
        model=model,
        flavor="sklearn",
        signature=signature,
        status=status,
        archived=archived,
    )


def store_version(
    platform: Platform,
    folder: Path,
    number: int,
    *,
    project: str = PROJECT,
    model: str = MODEL,
    flavor: str,
    signature: dict[str, Any] | None,
    **columns: Any,
) -> int:
    """Upload ``folder`` and insert version ``number`` of ``model`` (created if missing) straight in
    the database, ready unless ``columns`` say otherwise; returns the version's id."""
    prefix = f"models/{project}/{model}/{number}/"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as stream:
            platform.artifact_store.put(prefix + path.relative_to(folder).as_posix(), stream)
    sha = store_sha256(platform.artifact_store, prefix)
    with platform.db.write() as session:
        project_row = session.scalar(select(Project).where(Project.name == project))
        assert project_row is not None
        registered = session.scalar(
            select(RegisteredModel).where(RegisteredModel.project_id == project_row.id, RegisteredModel.name == model)
        )
        if registered is None:
            registered = RegisteredModel(project_id=project_row.id, name=model, created_by="test")
            session.add(registered)
            session.flush()
        version = ModelVersion(
            model_id=registered.id,
            version=number,
            flavor=flavor,
            signature=signature,
            artifact_uri=prefix,
            artifact_sha256=sha,
            created_by="test",
            **{"status": "ready", **columns},
        )
        session.add(version)
        registered.last_version = max(registered.last_version or 0, number)  # as registering through the API would
        session.flush()
        return version.id


def deploy(api: Api, version: int | str, *, env: str = "staging", model: str = MODEL, **body: Any) -> Any:
    """PUT a deployment, expect 202, wait for the job; return the deployment as GET shows it."""
    response = api.put(
        f"/api/v1/projects/{PROJECT}/models/{model}/deployments/{env}", json={"version": version, **body}
    )
    assert response.status_code == 202, response.json
    assert api.platform.jobs.wait_idle(30)
    return api.get(f"/api/v1/projects/{PROJECT}/models/{model}/deployments/{env}").json


def predict(api: Api, body: Any, *, env: str = "staging", headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return api.post(f"{BASE}/{env}/predict", json=body, headers=headers or {}, **kwargs)


ROWS = [{"x1": 0.0, "x2": 1.0}, {"x1": 1.1, "x2": 0.1}]
