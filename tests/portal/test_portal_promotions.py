"""The Promotions pages: request (failed checks listed), checks with results, approve or
reject with a reason (maintainers; never the requester), the rollout's steps, roll back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api_client import Api
from tests.portal.world import API, P, World, make_world


@pytest.fixture
def world(make_api: Callable[..., Api], db_kind: str, tmp_path: Path) -> World:
    return make_world(make_api, db_kind, tmp_path)


def request(world: World, **fields: str) -> int:
    body = {
        "model": "churn",
        "version": "1",
        "environment": "production",
        "strategy": "",
        "steps": "",
        "bake_seconds": "",
        **fields,
    }
    response = world.post(f"{P}/promotions/request", body)
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[-1])


def test_empty_promotions_page(world: World) -> None:
    world.sign_in()
    html = world.page(f"{P}/promotions")
    assert "No promotions yet." in html and "Nothing waits for approval." in html
    assert "No models yet: " in html  # the request form needs a model


def test_request_approve_and_watch_the_rollout(world: World) -> None:
    world.sign_in("dev")
    world.register()
    promotion_id = request(world)
    html = world.page(f"{P}/promotions/{promotion_id}")
    assert f"Promotion {promotion_id} of churn v1 to production requested. It waits for approval." in html
    assert "status-pending_approval" in html and "check-passed" in html and "accuracy &gt;= 0.9" in html
    assert "Approving needs the maintainer role; you are developer." in html
    assert f"#{promotion_id} churn v1 → production" in world.page(P)  # the home lists it as waiting
    assert "Waiting for approval" in world.page(f"{P}/promotions")

    world.sign_in("maint")
    html = world.page(f"{P}/promotions/{promotion_id}")
    assert ">Approve</button>" in html and "Reason for rejecting" in html
    response = world.post(
        f"{P}/promotions/{promotion_id}/approve", {"comment": "looks good"}, form_page=f"{P}/promotions/{promotion_id}"
    )
    assert response.status_code == 302
    world.wait()
    html = world.page(f"{P}/promotions/{promotion_id}")
    assert "status-completed" in html and "approved by <strong>maint</strong>" in html and "looks good" in html
    assert "Prepare" in html and "version 1 deployed" in html  # the rollout's steps
    assert world.api.get(f"{API}/models/churn/deployments/production").json["traffic"][0]["weight"] == 100

    world.sign_in("dev")
    response = world.post(
        f"{P}/promotions/{promotion_id}/rollback", {"reason": "bad numbers"}, form_page=f"{P}/promotions/{promotion_id}"
    )
    assert response.status_code == 302
    world.wait()
    assert "status-rolled_back" in world.page(f"{P}/promotions/{promotion_id}")


def test_the_requester_cannot_approve_their_own(world: World) -> None:
    world.sign_in("maint")
    world.register()
    promotion_id = request(world)
    html = world.page(f"{P}/promotions/{promotion_id}")
    assert (
        "You requested this promotion: another maintainer must approve it." in html and ">Approve</button>" not in html
    )
    response = world.post(f"{P}/promotions/{promotion_id}/approve", form_page=f"{P}/promotions/{promotion_id}")
    assert response.status_code == 403 and "another maintainer must approve it" in response.get_data(as_text=True)


def test_reject_needs_a_reason(world: World) -> None:
    world.sign_in("dev")
    world.register()
    promotion_id = request(world)
    world.sign_in("maint")
    page = f"{P}/promotions/{promotion_id}"
    response = world.post(f"{page}/reject", {"reason": ""}, form_page=page)
    assert response.status_code == 400 and 'id="reject-reason-error"' in response.get_data(as_text=True)
    response = world.post(f"{page}/reject", {"reason": "not this week"}, form_page=page)
    assert response.status_code == 302
    html = world.page(page)
    assert "status-rejected" in html and "not this week" in html


def test_failed_checks_are_listed(make_api: Callable[..., Api], db_kind: str, tmp_path: Path) -> None:
    strict = {
        "environments": [
            {"name": "staging", "target": "local"},
            {"name": "production", "target": "local", "approvals": 1, "policies": {"min_metrics": {"accuracy": 0.99}}},
        ]
    }
    world = make_world(make_api, db_kind, tmp_path, strict)
    world.sign_in("dev")
    world.register()
    body = {
        "model": "churn",
        "version": "1",
        "environment": "production",
        "strategy": "",
        "steps": "",
        "bake_seconds": "",
    }
    response = world.post(f"{P}/promotions/request", body)
    html = response.get_data(as_text=True)
    assert (
        response.status_code == 422
        and "1 promotion check(s) failed" in html
        and "check-failed" in html
        and "metric_gate" in html
    )


def test_request_form_errors(world: World) -> None:
    world.sign_in("dev")
    world.register()
    body = {"model": "churn", "version": "", "environment": "production"}
    response = world.post(f"{P}/promotions/request", body)
    assert response.status_code == 400 and 'id="f-version-error"' in response.get_data(as_text=True)
    response = world.post(f"{P}/promotions/request", {**body, "version": "1", "strategy": "canary", "steps": "10, x"})
    assert response.status_code == 400 and 'id="f-steps-error"' in response.get_data(as_text=True)
    response = world.post(f"{P}/promotions/request", {**body, "version": "1", "strategy": "canary", "steps": "50, 10"})
    assert response.status_code == 400 and 'id="f-steps-error"' in response.get_data(as_text=True)
    request(world)
    response = world.post(f"{P}/promotions/request", {**body, "version": "1"})
    assert response.status_code == 409 and "still active" in response.get_data(as_text=True)


def test_viewer_reads_but_forms_are_refused(world: World) -> None:
    world.sign_in("dev")
    world.register()
    promotion_id = request(world)
    world.sign_in("viewer")
    page = f"{P}/promotions/{promotion_id}"
    assert "churn v1" in world.page(page)
    assert "Requesting a promotion needs the developer role" in world.page(f"{P}/promotions")
    body = {"model": "churn", "version": "1", "environment": "production"}
    assert world.post(f"{P}/promotions/request", body).status_code == 403
    for action in ("approve", "reject", "rollback"):
        assert world.post(f"{page}/{action}", {"reason": "x"}).status_code == 403
    world.sign_in("dev")  # a developer may not approve either
    assert world.post(f"{page}/approve").status_code == 403


def test_promotion_forms_need_the_csrf_token(world: World) -> None:
    world.sign_in("dev")
    world.register()
    body = {"model": "churn", "version": "1", "environment": "production"}
    assert world.post(f"{P}/promotions/request", body, with_csrf=False).status_code == 403
    assert world.api.get(f"{API}/models/churn/promotions").json["items"] == []
