"""Alert rules over the API: CRUD, validation naming the field, ETags, roles, audit."""

from __future__ import annotations

from sqlalchemy import select

from mlplatform.core.db.models import AuditEvent
from mlplatform.core.services.alerting import KNOWN_METRICS
from tests.alerting.conftest import MODEL, PROJECT, add_deployment, create_rule
from tests.api_client import Api

RULES = f"/api/v1/projects/{PROJECT}/alert-rules"


def test_create_read_update_delete_with_etags(aapi: Api) -> None:
    add_deployment(aapi.platform)
    response = aapi.post(
        RULES,
        json={
            "name": "drift",
            "metric": "psi",
            "comparison": ">=",
            "threshold": 0.25,
            "for_windows": 3,
            "severity": "critical",
            "channels": ["hook", "log"],
            "model": MODEL,
            "environment": "production",
        },
    )
    assert response.status_code == 201, response.json
    rule = response.json
    assert response.headers["ETag"] == '"1"'
    assert rule["feature"] is None and rule["enabled"] is True and rule["revision"] == 1
    assert rule["channels"] == ["hook", "log"] and rule["created_by"] == "admin"

    one = aapi.get(f"{RULES}/{rule['id']}")
    assert one.status_code == 200 and one.json == rule and one.headers["ETag"] == '"1"'
    assert [r["id"] for r in aapi.get(RULES).json["items"]] == [rule["id"]]

    changed = aapi.patch(
        f"{RULES}/{rule['id']}", json={"threshold": 0.3, "feature": "age"}, headers={"If-Match": '"1"'}
    )
    assert changed.status_code == 200, changed.json
    assert changed.headers["ETag"] == '"2"'
    assert (changed.json["threshold"], changed.json["feature"], changed.json["revision"]) == (0.3, "age", 2)

    stale = aapi.patch(f"{RULES}/{rule['id']}", json={"threshold": 0.4}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and '"2"' in stale.json["message"]
    assert aapi.delete(f"{RULES}/{rule['id']}", headers={"If-Match": '"1"'}).status_code == 412
    assert aapi.get(f"{RULES}/{rule['id']}").json["threshold"] == 0.3

    unchanged = aapi.patch(f"{RULES}/{rule['id']}", json={"threshold": 0.3})
    assert unchanged.status_code == 200 and unchanged.headers["ETag"] == '"2"'

    assert aapi.delete(f"{RULES}/{rule['id']}", headers={"If-Match": '"2"'}).status_code == 204
    assert aapi.get(f"{RULES}/{rule['id']}").status_code == 404
    assert aapi.delete(f"{RULES}/{rule['id']}").status_code == 204  # idempotent
    assert aapi.delete(f"{RULES}/{rule['id']}", headers={"If-Match": '"2"'}).status_code == 412

    with aapi.platform.db.read() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.resource_type == "alert_rule").order_by(AuditEvent.id)
        ).all()
    assert actions == ["alert_rule.create", "alert_rule.update", "alert_rule.delete"]


def test_validation_names_the_field(aapi: Api) -> None:
    add_deployment(aapi.platform)
    base = {"name": "r", "metric": "psi", "comparison": ">", "threshold": 0.2}

    def error(**body: object) -> tuple[int, dict]:
        response = aapi.post(RULES, json={**base, **body})
        return response.status_code, response.json["errors"]

    status, errors = error(metric="psy")
    assert status == 422 and "'psy'" in errors["metric"][0] and "psi" in errors["metric"][0]
    status, errors = error(channels=["hook", "pager"])
    assert status == 422 and "'pager'" in errors["channels"][0] and "hook" in errors["channels"][0]
    status, errors = error(environment="qa")
    assert status == 422 and "'qa'" in errors["environment"][0]
    status, errors = error(model="nope")
    assert status == 422 and "'nope'" in errors["model"][0]
    status, errors = error(comparison="==")
    assert status == 422 and "comparison" in errors["json"]
    status, errors = error(severity="page")
    assert status == 422 and "severity" in errors["json"]
    status, errors = error(for_windows=0)
    assert status == 422 and "for_windows" in errors["json"]
    status, errors = error(surprise=1)
    assert status == 422 and "surprise" in errors["json"]
    response = aapi.post(RULES, json={"metric": "psi"})
    assert response.status_code == 422 and {"name", "comparison", "threshold"} <= set(response.json["errors"]["json"])

    for metric in ("ks", "chi_square", *KNOWN_METRICS):  # every drift metric plugin counts, built-in or contrib
        assert aapi.post(RULES, json={**base, "name": f"r-{metric}", "metric": metric}).status_code == 201, metric
    assert aapi.post(RULES, json={**base, "name": "r-ks"}).status_code == 409
    rule = aapi.get(RULES).json["items"][0]
    response = aapi.patch(f"{RULES}/{rule['id']}", json={"channels": ["pager"]})
    assert response.status_code == 422 and "'pager'" in response.json["errors"]["channels"][0]


def test_viewers_read_but_do_not_write(aapi: Api) -> None:
    deployment_id, _ = add_deployment(aapi.platform)
    rule = create_rule(aapi)
    aapi.user("vera", role="viewer", project=PROJECT)
    aapi.user("dev", role="developer", project=PROJECT)
    assert aapi.get(RULES, token="vera").status_code == 200
    assert aapi.get(f"{RULES}/{rule['id']}", token="vera").status_code == 200
    assert (
        aapi.post(
            RULES, token="vera", json={"name": "x", "metric": "psi", "comparison": ">", "threshold": 1}
        ).status_code
        == 403
    )
    assert aapi.patch(f"{RULES}/{rule['id']}", token="vera", json={"threshold": 1}).status_code == 403
    assert aapi.delete(f"{RULES}/{rule['id']}", token="vera").status_code == 403
    assert aapi.post(f"/api/v1/projects/{PROJECT}/alerts/1/acknowledge", token="vera").status_code == 403
    assert aapi.get(f"/api/v1/projects/{PROJECT}/alerts", token="vera").status_code == 200
    assert aapi.patch(f"{RULES}/{rule['id']}", token="dev", json={"threshold": 1}).status_code == 200
    aapi.user("stranger")
    assert aapi.get(RULES, token="stranger").status_code == 403
