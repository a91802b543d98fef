"""The built-in ``local`` target, on a real Platform with the local artifact store."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from mlplatform.core.backends import DeploymentSpec
from mlplatform.core.errors import BackendError, ConfigError, NotFound
from mlplatform.core.platform import Platform
from mlplatform.plugins.local_target import LocalTarget
from tests.serving.conftest import SERVING_PLUGINS, training_frame, upload, write_pyfunc_model


def local_target(platform: Platform, **options: object) -> LocalTarget:
    return platform.backend("deployment_target", "local", {"max_models": 8, **options}, "deployment_targets.0")  # type: ignore[return-value]


def test_deploy_status_predict_undeploy(serving_platform: Platform, sklearn_spec: DeploymentSpec) -> None:
    target = local_target(serving_platform)
    ref = target.deploy(sklearn_spec)
    assert target.deploy(sklearn_spec) == ref  # idempotent
    status = target.status(ref)
    assert (status.state, status.details["loaded"]) == ("healthy", True)
    assert target.predict(ref, training_frame()) == [0, 0, 0, 1, 1, 1]
    target.undeploy(ref)
    target.undeploy(ref)
    assert target.status(ref).state == "absent"
    with pytest.raises(NotFound):
        target.predict(ref, training_frame())


def test_lru_evicts_and_reloads(serving_platform: Platform, sklearn_spec: DeploymentSpec, tmp_path: Path) -> None:
    target = local_target(serving_platform, max_models=1)
    sha = upload(serving_platform, write_pyfunc_model(tmp_path / "p"), "models/plus/1/")
    pyfunc = DeploymentSpec("acme", "plus", 1, "python_function", "models/plus/1/", sha)
    first, second = target.deploy(sklearn_spec), target.deploy(pyfunc)
    assert target.status(first).details == {"loaded": False}  # evicted, still deployed
    assert target.predict(first, training_frame().tail(1)) == [1]  # reloaded from the cache
    assert target.status(second).details == {"loaded": False}
    assert target.predict(second, training_frame().head(1)) == [10.0]


def test_failed_load_reports_failed(serving_platform: Platform, sklearn_spec: DeploymentSpec) -> None:
    target = local_target(serving_platform)
    wrong = dataclasses.replace(sklearn_spec, artifact_sha256="0" * 64)
    with pytest.raises(BackendError, match="digest mismatch"):
        target.deploy(wrong)
    status = target.status(target.reference(wrong))
    assert status.state == "failed" and "digest mismatch" in status.message
    broken = dataclasses.replace(sklearn_spec, flavor="python_function")
    with pytest.raises(BackendError, match="not a 'python_function' model"):
        target.deploy(broken)


def test_concurrent_predictions_load_once(serving_platform: Platform, sklearn_spec: DeploymentSpec) -> None:
    target = local_target(serving_platform)
    ref = target.deploy(sklearn_spec)
    target.undeploy(ref)
    target.deploy(sklearn_spec)
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(target.predict(ref, training_frame()))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[0, 0, 0, 1, 1, 1]] * 8


def test_max_models_is_validated(serving_platform: Platform) -> None:
    with pytest.raises(ConfigError, match=r"deployment_targets\.0\.options\.max_models"):
        Platform(
            {
                "data_dir": str(serving_platform.data_dir),
                "database": {"url": serving_platform.database_url},
                "environments": [{"name": "dev", "target": "here"}],
                "deployment_targets": [{"name": "here", "backend": "local", "options": {"max_models": 0}}],
            },
            extra_plugins=SERVING_PLUGINS,
        )
