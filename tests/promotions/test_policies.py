"""Policy checks through check_promotion: absolute and relative metric gates, healthy in the
previous environment, reference data, a broken plugin; all failures reported together (422)
and checked again just before traffic moves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mlplatform import hookimpl
from mlplatform.core.backends import PolicyResult
from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.monitoring import Alert, AlertRule, ReferenceProfile
from mlplatform.core.errors import ConfigError
from mlplatform.core.platform import Platform
from tests.api_client import Api
from tests.promotions.conftest import MODEL_BASE, add_version, promote, settle

GATES = {
    "environments": [
        {"name": "staging", "target": "local"},
        {
            "name": "production",
            "target": "local",
            "promotion_only": True,
            "policies": {
                "min_metrics": {"accuracy": 0.9},
                "metric_gates": ["accuracy >= current + 0.01", "loss <= current * 1.05"],
            },
        },
    ],
}


def _failed(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.json
    return sorted((c["policy"], c["message"].split(":")[0]) for c in response.json["errors"]["checks"])


def test_metric_gates_absolute_and_relative(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi(GATES)
    add_version(api.platform, tmp_path, 1, metrics={"accuracy": 0.91, "loss": 0.30})
    add_version(api.platform, tmp_path, 2, metrics={"accuracy": 0.85, "loss": 0.20})
    add_version(api.platform, tmp_path, 3, metrics={"accuracy": 0.95, "loss": 0.40})
    add_version(api.platform, tmp_path, 4, metrics={"accuracy": 0.95, "loss": 0.31})
    add_version(api.platform, tmp_path, 5, metrics={"accuracy": 0.95})

    first = promote(api, 1, strategy="direct")  # nothing serves: relative gates do not apply yet
    assert first.status_code == 201, first.json
    request_checks = {c["message"] for c in first.json["checks"]["request"]}
    assert "accuracy >= current + 0.01: nothing serves production yet; relative gate not applied" in request_checks
    assert settle(api, first.json["id"])["state"] == "completed"

    assert _failed(promote(api, 2)) == [
        ("metric_gate", "accuracy >= 0.9"),
        ("metric_gate", "accuracy >= current + 0.01"),
    ]
    response = promote(api, 3)
    assert _failed(response) == [("metric_gate", "loss <= current * 1.05")]
    (check,) = response.json["errors"]["checks"]
    assert check["details"] == {
        "gate": "loss <= current * 1.05",
        "metric": "loss",
        "value": 0.4,
        "current_version": 1,
        "current_value": 0.3,
        "threshold": pytest.approx(0.315),
    }
    assert check["plugin"] == "mlplatform.plugins.policies" and check["phase"] == "request"
    assert _failed(promote(api, 5)) == [("metric_gate", "loss <= current * 1.05")]
    assert api.get(f"{MODEL_BASE}/promotions").json["items"][-1]["version"] == 1  # refusals store nothing

    body = settle(api, promote(api, 4, strategy="direct").json["id"])
    assert body["state"] == "completed"
    assert {c["passed"] for c in body["checks"]["request"] + body["checks"]["pre_traffic"]} == {True}


def test_healthy_in_previous_environment_and_reference(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi(
        {
            "environments": [
                {"name": "staging", "target": "local"},
                {
                    "name": "production",
                    "target": "local",
                    "promotion_only": True,
                    "policies": {"healthy_in_previous_minutes": 0, "require_reference": True},
                },
            ]
        }
    )
    version_id = add_version(api.platform, tmp_path, 1)
    assert _failed(promote(api, 1)) == [
        ("healthy_in_previous", "the version does not serve staging"),
        ("reference_data", "the version has no reference data for monitoring; PUT .../versions/{v}/reference first"),
    ]
    assert api.put(f"{MODEL_BASE}/deployments/staging", json={"version": 1}).status_code == 202
    assert api.platform.jobs.wait_idle(30)
    with api.platform.db.write() as session:
        session.add(
            ReferenceProfile(
                version_id=version_id, source="upload", artifact_prefix="x/", row_count=1, profile={}, created_by="t"
            )
        )
        deployment = session.scalar(select(Deployment).where(Deployment.environment == "staging"))
        rule = AlertRule(
            project_id=deployment.project_id,
            name="drifting",
            metric="psi",
            comparison=">",
            threshold=0.2,
            created_by="t",
        )
        session.add(rule)
        session.flush()
        session.add(
            Alert(
                project_id=deployment.project_id,
                rule_id=rule.id,
                deployment_id=deployment.id,
                state="firing",
                details={},
            )
        )
    response = promote(api, 1)
    assert _failed(response) == [("healthy_in_previous", "alerts fired in staging in the last 0 minutes")]
    with api.platform.db.write() as session:
        session.query(Alert).delete()
    response = promote(api, 1, strategy="direct")
    assert response.status_code == 201, response.json
    assert settle(api, response.json["id"])["state"] == "completed"


class Boom:
    @hookimpl
    def check_promotion(self, version: Any) -> list[PolicyResult]:
        raise RuntimeError("policy service down")


class Freeze:
    """Passes at request time, fails just before traffic moves (state changed in between)."""

    frozen = False

    @hookimpl
    def check_promotion(self, context: Any) -> list[PolicyResult]:
        return [PolicyResult("freeze", not (Freeze.frozen and context.phase == "pre_traffic"), "change freeze")]


def test_a_raising_plugin_is_a_failed_check_naming_it(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi(GATES, extra_plugins=[Boom()])
    add_version(api.platform, tmp_path, 1, metrics={"accuracy": 0.5, "loss": 1.0})
    response = promote(api, 1)
    checks = response.json["errors"]["checks"]
    assert response.status_code == 422 and len(checks) == 2  # every failure, together
    boom = next(c for c in checks if c["policy"].startswith("plugin:"))
    assert "raised RuntimeError: policy service down" in boom["message"] and boom["plugin"] in boom["policy"]


def test_checks_run_again_before_traffic_moves(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi(
        {
            "environments": [
                {"name": "staging", "target": "local"},
                {"name": "production", "target": "local", "approvals": 1},
            ]
        },
        extra_plugins=[Freeze()],
    )
    api.user("mia", role="maintainer", project="acme")
    add_version(api.platform, tmp_path, 1)
    Freeze.frozen = False
    pid = promote(api, 1).json["id"]
    Freeze.frozen = True
    try:
        assert api.post(f"/api/v1/projects/acme/promotions/{pid}/approve", json={}, token="mia").status_code == 200
        body = settle(api, pid)
    finally:
        Freeze.frozen = False
    assert body["state"] == "failed" and body["reason"].startswith("checks failed before traffic moved: freeze")
    assert [c["passed"] for c in body["checks"]["pre_traffic"] if c["policy"] == "freeze"] == [False]
    assert api.get(f"{MODEL_BASE}/deployments/production").status_code == 404  # nothing was deployed


def test_policy_config_is_validated(make_platform: Callable[..., Platform]) -> None:
    bad = [
        ({"policies": {"metric_gates": ["accuracy is high"]}}, "environments.0.policies.metric_gates.0"),
        ({"policies": {"healthy_in_previous_minutes": -1}}, "environments.0.policies.healthy_in_previous_minutes"),
        ({"promotion": {"canary_steps": [50, 10]}}, "environments.0.promotion.canary_steps"),
        ({"promotion": {"guard": {"colour": 1}}}, "environments.0.promotion.guard.colour"),
    ]
    for extra, path in bad:
        with pytest.raises(ConfigError) as info:
            make_platform({"environments": [{"name": "prod", "target": "local", **extra}]})
        assert info.value.path == path, info.value
    with pytest.raises(ConfigError, match="no alert channel named pager"):
        make_platform({"promotion": {"alert_channels": ["pager"]}})
