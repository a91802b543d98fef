"""The Models pages: list, a model's versions and aliases, a version's lineage; the register
and alias forms (CSRF, roles, validation errors shown beside their fields)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api_client import Api
from tests.portal.world import API, P, World, make_world


@pytest.fixture
def world(make_api: Callable[..., Api], db_kind: str, tmp_path: Path) -> World:
    return make_world(make_api, db_kind, tmp_path)


def test_empty_models_page_explains_how_to_register(world: World) -> None:
    world.sign_in()
    html = world.page(f"{P}/models")
    assert "No models registered yet." in html and "Register a version from a run" in html
    assert 'aria-current="page">Models</a>' in html  # the nav marks the page


def test_register_from_a_run_shows_pending_then_ready(world: World) -> None:
    world.sign_in("dev")
    response = world.post(f"{P}/models/register", {"run_id": world.run_id, "artifact_path": "model", "model": "churn"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{P}/models/churn/versions/1")
    first = world.page(f"{P}/models/churn/versions/1")
    assert "Registered version 1 of churn" in first  # the confirmation
    assert "status-pending" in first or "status-ready" in first
    world.wait()
    html = world.page(f"{P}/models/churn/versions/1")
    assert "status-ready" in html and "data-auto-refresh" not in html
    assert "sklearn" in html and "x1" in html and "prediction" in html  # flavor and signature
    assert f"/projects/shop/runs/{world.run_id}" in html and "good-run" in html  # lineage links the run
    assert "accuracy" in html and "0.93" in html
    listing = world.page(f"{P}/models")
    assert "churn" in listing and "v1" in listing


def test_register_errors_are_shown_beside_their_fields(world: World) -> None:
    world.sign_in("dev")
    response = world.post(f"{P}/models/register", {"run_id": "", "artifact_path": "model", "model": ""})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="f-run_id" name="run_id"' in html and 'aria-invalid="true"' in html
    response = world.post(f"{P}/models/register", {"run_id": "nope", "artifact_path": "model", "model": "churn"})
    html = response.get_data(as_text=True)
    assert response.status_code == 404 and "run &#39;nope&#39; does not exist" in html and 'id="f-run_id-error"' in html
    response = world.post(
        f"{P}/models/register", {"run_id": world.run_id, "artifact_path": "nothing-here", "model": "churn"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "no artifacts under" in html and 'id="f-artifact_path-error"' in html
    response = world.post(
        f"{P}/models/register", {"run_id": world.run_id, "artifact_path": "model", "model": "bad name!"}
    )
    assert response.status_code == 400 and 'id="f-model-error"' in response.get_data(as_text=True)


def test_forms_need_the_csrf_token(world: World) -> None:
    world.sign_in("dev")
    response = world.post(f"{P}/models/register", {"run_id": world.run_id, "model": "churn"}, with_csrf=False)
    assert response.status_code == 403 and "CSRF" in response.get_data(as_text=True)
    assert world.api.get(f"{API}/models").json["items"] == []


def test_a_viewer_reads_but_cannot_register_or_change_aliases(world: World) -> None:
    world.sign_in()
    world.register()
    world.sign_in("viewer")
    html = world.page(f"{P}/models/churn")
    assert "v1" in html and "Changing aliases needs the developer role; you are viewer." in html
    assert 'action="/projects/shop/models/churn/aliases"' not in html
    assert "Registering a version needs the developer role" in world.page(f"{P}/models")
    response = world.post(f"{P}/models/register", {"run_id": world.run_id, "artifact_path": "model", "model": "churn"})
    assert response.status_code == 403
    assert world.post(f"{P}/models/churn/aliases", {"alias": "champion", "version": "1"}).status_code == 403
    assert world.post(f"{P}/models/churn/aliases/champion/delete").status_code == 403


def test_set_move_and_remove_an_alias(world: World) -> None:
    world.sign_in("dev")
    world.register()
    world.register()
    response = world.post(f"{P}/models/churn/aliases", {"alias": "champion", "version": "1"})
    assert response.status_code == 302
    html = world.page(f"{P}/models/churn")
    assert "Alias champion now points at version 1." in html
    world.post(f"{P}/models/churn/aliases", {"alias": "champion", "version": "2"})
    assert "now points at version 2 (moved from version 1)" in world.page(f"{P}/models/churn")
    assert world.api.get(f"{API}/models/churn").json["aliases"] == {"champion": 2}
    world.post(f"{P}/models/churn/aliases/champion/delete")
    assert world.api.get(f"{API}/models/churn").json["aliases"] == {}


def test_alias_validation_errors_are_inline(world: World) -> None:
    world.sign_in("dev")
    world.register()
    response = world.post(f"{P}/models/churn/aliases", {"alias": "latest", "version": "1"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "reserved" in html and 'id="f-alias-error"' in html
    response = world.post(f"{P}/models/churn/aliases", {"alias": "champion", "version": "9"})
    html = response.get_data(as_text=True)
    assert response.status_code == 404 and "has no version 9" in html and 'id="f-version-error"' in html


def test_unknown_model_is_a_404_page(world: World) -> None:
    world.sign_in()
    assert "does not exist" in world.page(f"{P}/models/ghost", 404)


def test_a_value_no_database_can_store_is_a_400_page(world: World) -> None:
    world.sign_in("dev")
    html = world.page(f"{P}/models?q=churn%00", status=400)
    assert "contains a NUL character" in html
    response = world.post(f"{P}/models/register", {"run_id": "r%00", "artifact_path": "model", "model": "a\x00b"})
    assert response.status_code == 400 and "contains a NUL character" in response.get_data(as_text=True)
