"""The ``ray_serve`` target against a real local Ray cluster (``tests/ray_fixtures.py``: one per
session): the target's contract called directly, then a deployment through the REST API."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from mlplatform.core.backends import DeploymentSpec, TargetStatus
from mlplatform.core.errors import BackendError, InvalidInput, NotFound
from mlplatform.core.model_loading import DESCRIPTOR
from mlplatform.core.platform import Platform
from tests.api_client import Api
from tests.deployments.conftest import BASE, PROJECT, ROWS, add_version
from tests.ray_fixtures import RAY_MARKS
from tests.serving.conftest import SERVING_PLUGINS, training_frame, upload, write_sklearn_model

pytestmark = RAY_MARKS

DEADLINE_S = 90
RAY_TARGET = {
    "name": "ray",
    "backend": "ray_serve",
    "options": {"num_replicas": 1, "num_cpus": 0.25, "max_constructor_retries": 2},
}


@pytest.fixture
def ray_platform(serve_apps: set[str], make_platform: Callable[..., Platform]) -> Platform:
    from plugins_contrib.ray_serve import plugin

    installed = any(ep.name == "ray_serve" for ep in metadata.entry_points(group="mlplatform"))
    return make_platform(extra_plugins=[*SERVING_PLUGINS, *([] if installed else [plugin])])


def ray_target(platform: Platform) -> Any:
    options = {"num_replicas": 1, "num_cpus": 0.5, "max_constructor_retries": 2}
    return platform.backend("deployment_target", "ray_serve", options, "deployment_targets.0")


def wait_for(target: Any, ref: str, states: set[str]) -> TargetStatus:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        status = target.status(ref)
        if status.state in states or time.monotonic() > deadline:
            return status
        time.sleep(0.25)


def test_deploy_predict_undeploy(ray_platform: Platform, tmp_path: Path) -> None:
    sha = upload(ray_platform, write_sklearn_model(tmp_path / "sk"), "models/churn/3/")
    spec = DeploymentSpec("acme", "churn", 3, "sklearn", "models/churn/3/", sha)
    target = ray_target(ray_platform)

    ref = target.deploy(spec)
    assert ref == "acme-churn-v3"
    status = wait_for(target, ref, {"healthy", "failed"})
    assert status.state == "healthy", status
    assert target.deploy(spec) == ref and target.status(ref).state == "healthy"  # no redeploy
    assert target.predict(ref, training_frame()) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(InvalidInput, match="lacks input columns: x2"):  # the replica's error, unchanged
        target.predict(ref, training_frame()[["x1"]])

    target.undeploy(ref)
    target.undeploy(ref)
    assert target.status(ref).state == "absent"
    with pytest.raises(NotFound):
        target.predict(ref, training_frame())


def test_broken_artifact_fails_with_the_load_error(ray_platform: Platform, tmp_path: Path) -> None:
    folder = write_sklearn_model(tmp_path / "sk")
    target = ray_target(ray_platform)
    good = upload(ray_platform, folder, "models/churn/5/")
    mismatch = DeploymentSpec("acme", "churn", 5, "sklearn", "models/churn/5/", good[::-1])
    with pytest.raises(BackendError, match="digest mismatch"):  # refused in the driver, nothing deployed
        target.deploy(mismatch)
    assert target.status("acme-churn-v5").state == "absent"

    (folder / "model.joblib").write_bytes(b"not a pickle")
    (folder / DESCRIPTOR).write_text('{"flavor": "sklearn"}')
    broken = dataclasses.replace(mismatch, version=4, artifact_uri="models/churn/4/")
    broken = dataclasses.replace(broken, artifact_sha256=upload(ray_platform, folder, "models/churn/4/"))
    ref = target.deploy(broken)
    try:
        status = wait_for(target, ref, {"healthy", "failed"})
        assert status.state == "failed", status
        assert "cannot load sklearn model model.joblib" in status.message, status.message
        assert status.message.startswith("mlplatform.core.errors.InvalidInput: cannot load sklearn model")
        assert "Traceback" in status.details["serve_message"]
    finally:
        target.undeploy(ref)
    assert target.status(ref).state == "absent"


def test_deploy_through_the_api_predict_and_undeploy(
    serve_apps: set[str], make_api: Callable[..., Api], tmp_path: Path
) -> None:
    """PUT a deployment to an environment whose target is ray_serve, predict through the
    gateway, DELETE it: the Serve application comes and goes with the deployment."""
    from ray import serve

    config = {"environments": [{"name": "staging", "target": "ray"}], "deployment_targets": [RAY_TARGET]}
    api = make_api(config, db="postgresql")
    assert api.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
    add_version(api.platform, tmp_path, 1)

    response = api.put(f"{BASE}/staging", json={"version": 1})
    assert response.status_code == 202, response.json
    assert api.platform.jobs.wait_idle(DEADLINE_S)  # the deploy job returns once Serve says RUNNING (or failed)
    body = api.get(f"{BASE}/staging").json
    assert (body["status"], body["target"]) == ("healthy", "ray"), body
    assert [(t["version"], t["weight"], t["status"], t["target_ref"]) for t in body["traffic"]] == [
        (1, 100, "healthy", "acme-churn-v1")
    ]
    status = serve.status().applications["acme-churn-v1"].status
    assert str(getattr(status, "value", status)) == "RUNNING"

    for _ in range(3):
        response = api.post(f"{BASE}/staging/predict", json={"instances": ROWS})
        assert response.status_code == 200, response.json
        assert (response.json["predictions"], response.json["version"]) == ([0, 1], 1)
    response = api.post(f"{BASE}/staging/predict", json={"instances": [{"x1": 1.0}]})
    assert response.status_code == 422 and "x2" in response.json["message"]  # refused by the gateway's signature check

    response = api.delete(f"{BASE}/staging")
    assert response.status_code == 202, response.json
    assert api.platform.jobs.wait_idle(DEADLINE_S)
    body = api.get(f"{BASE}/staging").json
    assert (body["status"], body["traffic"]) == ("retired", [])
    assert "acme-churn-v1" not in serve.status().applications  # the job deleted the application
    response = api.post(f"{BASE}/staging/predict", json={"instances": ROWS})
    assert response.status_code == 404, response.json
