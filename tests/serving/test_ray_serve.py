"""The ``ray_serve`` target against a real local Ray cluster, started once per session.

The fixture starts Ray in this process (2 CPUs, no dashboard) and Serve without an HTTP
proxy, and at session end shuts down exactly those: ``serve.shutdown()``, ``ray.shutdown()``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from mlplatform.core.backends import DeploymentSpec, TargetStatus
from mlplatform.core.errors import BackendError, InvalidInput, NotFound
from mlplatform.core.model_loading import DESCRIPTOR
from mlplatform.core.platform import Platform
from tests.conftest import service_missing
from tests.serving.conftest import SERVING_PLUGINS, training_frame, upload, write_sklearn_model

pytestmark = [
    pytest.mark.ray,
    # ray.serve's pydantic models (ray 2.60, pydantic 2.14), raised once when ray.serve is imported.
    pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field` is deprecated:DeprecationWarning"),
]

DEADLINE_S = 90


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        service_missing(f"Ray Serve is not installed ({exc}): pip install 'mlplatform[ray]'")
    if ray.is_initialized():
        pytest.fail("Ray is already initialised in this process; the ray tests start their own")
    previous = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="mlplatform-tests")
    try:
        serve.start(proxy_location="Disabled")
        yield
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if previous is None:
                os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
            else:
                os.environ["RAY_USAGE_STATS_ENABLED"] = previous


@pytest.fixture
def ray_platform(ray_cluster: None, make_platform: Callable[..., Platform]) -> Platform:
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
