"""Approvals: N from maintainers, never the requester's own; rejection with a reason; expiry
(lazily on read and approve, and by the periodic sweep); listing; permissions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import update

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.promotions import Promotion
from mlplatform.core.services import promotions
from tests.api_client import Api
from tests.promotions.conftest import MODEL_BASE, PROMOTIONS, add_version, promote, serve_v1, settle, show, traffic_of

TWO_APPROVALS = {
    "environments": [
        {"name": "staging", "target": "local"},
        {"name": "production", "target": "local", "promotion_only": True, "approvals": 2},
    ]
}


def _people(api: Api) -> None:
    api.user("dora", role="developer", project="acme")
    api.user("mia", role="maintainer", project="acme")
    api.user("max", role="maintainer", project="acme")
    api.user("vic", role="viewer", project="acme")


def test_two_maintainers_approve_then_it_rolls_out(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi(TWO_APPROVALS)
    _people(api)
    add_version(api.platform, tmp_path, 1)
    response = promote(api, 1, token="dora", strategy="direct")
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["state"], body["required_approvals"], body["requested_by"]) == ("pending_approval", 2, "dora")
    assert body["expires_at"] and body["checks"] == {"request": []}
    pid = body["id"]

    assert api.post(f"{PROMOTIONS}/{pid}/approve", json={}, token="vic").status_code == 403  # viewers
    assert api.post(f"{PROMOTIONS}/{pid}/approve", json={}, token="dora").status_code == 403  # developers
    api.put("/api/v1/projects/acme/members/dora", json={"role": "maintainer"})
    response = api.post(f"{PROMOTIONS}/{pid}/approve", json={}, token="dora")
    assert response.status_code == 403 and "another maintainer" in response.json["message"]  # not one's own

    response = api.post(f"{PROMOTIONS}/{pid}/approve", json={"comment": "metrics look good"}, token="mia")
    assert response.status_code == 200 and response.json["state"] == "pending_approval"
    assert response.json["reason"] == "1 of 2 approval(s)"
    assert api.post(f"{PROMOTIONS}/{pid}/approve", json={}, token="mia").status_code == 409  # one vote each
    response = api.post(f"{PROMOTIONS}/{pid}/approve", json={}, token="max")
    assert response.status_code == 200 and response.json["state"] == "approved"
    assert response.json["reason"] == "approved by 2 of 2 maintainer(s)"
    body = settle(api, pid)
    assert body["state"] == "completed" and traffic_of(api) == {1: 100}
    assert [(a["username"], a["decision"], a["comment"]) for a in body["approvals"]] == [
        ("mia", "approve", "metrics look good"),
        ("max", "approve", ""),
    ]
    assert api.post(f"{PROMOTIONS}/{pid}/approve", json={}, token="admin").status_code == 409
    listing = api.get(f"{MODEL_BASE}/promotions?state=completed").json["items"]
    assert [p["id"] for p in listing] == [pid]
    actions = [
        e["action"]
        for e in api.get(f"/api/v1/projects/acme/audit?resource_type=promotion&resource_id={pid}").json["items"]
    ]
    assert actions == [
        "promotion.request",
        "promotion.approve",
        "promotion.approve",
        "promotion.approved",
        "promotion.rolling_out",
        "promotion.completed",
    ]


def test_reject_needs_a_reason(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi(TWO_APPROVALS)
    _people(api)
    add_version(api.platform, tmp_path, 1)
    pid = promote(api, 1, token="dora").json["id"]
    assert api.post(f"{PROMOTIONS}/{pid}/reject", json={}, token="mia").status_code == 422
    assert api.post(f"{PROMOTIONS}/{pid}/reject", json={"reason": "no"}, token="dora").status_code == 403
    response = api.post(f"{PROMOTIONS}/{pid}/reject", json={"reason": "wait for the Q3 data"}, token="mia")
    assert response.status_code == 200, response.json
    assert response.json["state"] == "rejected" and response.json["reason"] == "rejected by mia: wait for the Q3 data"
    assert response.json["approvals"][0]["decision"] == "reject" and not response.json["active"]
    assert api.post(f"{PROMOTIONS}/{pid}/approve", json={}, token="max").status_code == 409
    assert api.post(f"{PROMOTIONS}/{pid}/rollback", json={}, token="mia").status_code == 409
    assert promote(api, 1, token="dora").status_code == 201  # the slot is free again


def test_pending_requests_expire(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi({**TWO_APPROVALS, "promotion": {"approval_expiry": "1s"}})
    _people(api)
    add_version(api.platform, tmp_path, 1)
    first = promote(api, 1, token="dora").json
    assert first["state"] == "pending_approval"
    time.sleep(1.2)
    body = show(api, first["id"])  # lazily on read
    assert (
        body["state"] == "expired" and body["reason"].startswith("not approved within") and body["expires_at"] is None
    )
    assert api.post(f"{PROMOTIONS}/{first['id']}/approve", json={}, token="mia").status_code == 409

    second = promote(api, 1, token="dora").json
    with api.platform.db.write() as session:
        session.execute(update(Promotion).where(Promotion.id == second["id"]).values(expires_at=utcnow()))
    assert promotions.expire_pending(api.platform) == [second["id"]]  # the periodic sweep
    assert promotions.expire_pending(api.platform) == []
    response = api.post(f"{PROMOTIONS}/{second['id']}/approve", json={}, token="mia")
    assert response.status_code == 409 and "expired" in response.json["message"]


def test_unknown_and_foreign(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi()
    serve_v1(api, tmp_path)
    assert api.get(f"{PROMOTIONS}/999").status_code == 404
    assert api.post("/api/v1/projects", json={"name": "other"}).status_code == 201
    assert api.get("/api/v1/projects/other/promotions/1").status_code == 404
    assert promote(api, 1, to="qa").status_code == 404
    assert promote(api, 9).status_code == 404
    response = promote(api, 1, strategy="canary", steps=[50, 20])
    assert response.status_code == 400 and "steps" in response.json["errors"]
    assert promote(api, 1, strategy="direct", steps=[10, 100]).status_code == 400
    assert promote(api, 1, strategy="sideways").status_code == 422
