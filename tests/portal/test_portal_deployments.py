"""The Deployments pages: environments with traffic, a deployment's history, deploy and
undeploy forms (roles, CSRF, promotion-only environments, errors shown)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api_client import Api
from tests.portal.world import API, P, World, make_world


@pytest.fixture
def world(make_api: Callable[..., Api], db_kind: str, tmp_path: Path) -> World:
    return make_world(make_api, db_kind, tmp_path)


def test_environments_are_listed_empty_with_their_rules(world: World) -> None:
    world.sign_in()
    html = world.page(f"{P}/deployments")
    assert "Nothing deployed to staging." in html and "Nothing deployed to production." in html
    assert "promotions only" in html and "Versions reach production through promotions (1 approval needed)" in html
    assert "Deploy to staging" in html and "Deploy to production" not in html


def test_deploy_shows_traffic_and_history(world: World) -> None:
    world.sign_in("dev")
    world.register()
    response = world.post(
        f"{P}/deployments/deploy", {"environment": "staging", "model": "churn", "version": "latest", "weight": "100"}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith(
        f"{P}/models/churn/deployments/staging"
    )
    world.wait()
    html = world.page(f"{P}/models/churn/deployments/staging")
    assert "status-healthy" in html and "v1" in html and "100%" in html
    assert "deploy requested" in html and "by dev" in html  # the history
    assert "Undeploy from staging" in html
    overview = world.page(f"{P}/deployments")
    assert "Traffic: version 1 100%" in overview
    assert world.api.get(f"{API}/models/churn/deployments/staging").json["status"] == "healthy"
    lineage = world.page(f"{P}/models/churn/versions/1")
    assert "staging" in lineage


def test_undeploy(world: World) -> None:
    world.sign_in("dev")
    world.register()
    world.deploy()
    response = world.post(f"{P}/models/churn/deployments/staging/undeploy")
    assert response.status_code == 302
    world.wait()
    html = world.page(f"{P}/models/churn/deployments/staging")
    assert "status-retired" in html and "undeploy requested" in html


def test_deploy_errors_are_shown(world: World) -> None:
    world.sign_in("dev")
    world.register()
    response = world.post(
        f"{P}/deployments/deploy", {"environment": "production", "model": "churn", "version": "1", "weight": "100"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 409 and "only takes promotions" in html
    response = world.post(
        f"{P}/deployments/deploy", {"environment": "staging", "model": "churn", "version": "7", "weight": "100"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 404 and "has no version 7" in html and 'id="version-staging-error"' in html
    response = world.post(
        f"{P}/deployments/deploy", {"environment": "staging", "model": "churn", "version": "1", "weight": "50"}
    )
    html = response.get_data(as_text=True)
    assert (
        response.status_code == 422 and "needs another version serving" in html and 'id="weight-staging-error"' in html
    )
    response = world.post(
        f"{P}/deployments/deploy", {"environment": "staging", "model": "churn", "version": "", "weight": "x"}
    )
    assert response.status_code == 400 and 'aria-invalid="true"' in response.get_data(as_text=True)


def test_viewer_reads_but_cannot_deploy(world: World) -> None:
    world.sign_in()
    world.register()
    world.deploy()
    world.sign_in("viewer")
    html = world.page(f"{P}/models/churn/deployments/staging")
    assert "v1" in html and "Undeploying needs the developer role" in html and "Undeploy from staging" not in html
    assert "Deploy to staging" not in world.page(f"{P}/deployments")
    deploy = {"environment": "staging", "model": "churn", "version": "1", "weight": "100"}
    assert world.post(f"{P}/deployments/deploy", deploy).status_code == 403
    assert world.post(f"{P}/models/churn/deployments/staging/undeploy").status_code == 403


def test_deploy_needs_the_csrf_token(world: World) -> None:
    world.sign_in("dev")
    world.register()
    deploy = {"environment": "staging", "model": "churn", "version": "1", "weight": "100"}
    assert world.post(f"{P}/deployments/deploy", deploy, with_csrf=False).status_code == 403
    assert world.api.get(f"{API}/deployments").json["items"] == []
