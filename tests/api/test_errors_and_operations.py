"""One error shape for every error; health, readiness, metrics and plugins."""

from __future__ import annotations

from sqlalchemy import func, select

from mlplatform.core.db.models import AuditEvent, Project
from tests.api_client import Api

SHAPE = {"code", "status", "message", "errors"}


def test_unknown_route_and_wrong_method(api: Api) -> None:
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404 and set(response.json) == SHAPE
    response = api.call("PUT", "/api/v1/whoami")
    assert response.status_code == 405 and set(response.json) == SHAPE
    assert "GET" in response.headers["Allow"]


def test_bad_bodies_name_the_field_and_write_nothing(api: Api) -> None:
    cases = [
        ({"name": "ok", "colour": "red"}, 422, "colour"),
        ({"name": 12}, 422, "name"),
        ({"description": "no name"}, 422, "name"),
        ({"name": "Bad Name!"}, 422, "name"),
    ]
    for body, status, field in cases:
        response = api.post("/api/v1/projects", json=body)
        assert response.status_code == status, body
        assert set(response.json) == SHAPE
        assert field in response.json["errors"]["json"]
    response = api.post("/api/v1/projects", data="{not json", content_type="application/json")
    assert response.status_code == 400 and set(response.json) == SHAPE
    with api.platform.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0
        assert (
            session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "project.create"))
            == 0
        )


def test_oversize_body_is_413(make_api) -> None:
    api = make_api({"server": {"max_content_length": 2048}})
    response = api.post("/api/v1/projects", json={"name": "p", "description": "x" * 5000})
    assert response.status_code == 413 and set(response.json) == SHAPE


def test_metrics_count_requests_per_route(api: Api) -> None:
    api.get("/api/v1/whoami")
    api.get("/api/v1/whoami")
    body = api.get("/api/v1/metrics").get_data(as_text=True)
    assert 'mlplatform_http_requests_total{method="GET",route="/api/v1/whoami",status="200"} 2.0' in body
    assert "mlplatform_http_request_duration_seconds_bucket" in body
    assert api.get("/metrics", token=None).status_code == 401


def test_plugins_lists_builtins_with_schemas(api: Api) -> None:
    plugins = {p["name"]: p for p in api.get("/api/v1/plugins").json}
    local = plugins["mlplatform.plugins.local_storage"]
    assert local["hooks"] == ["register_artifact_stores"]
    backend = local["backends"][0]
    assert backend["kind"] == "artifact_store" and backend["name"] == "local"
    assert backend["config_schema"]["root"]["type"] == "String"


def test_request_id_is_echoed(api: Api) -> None:
    response = api.get("/api/v1/health", token=None, headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Request-ID"] == "abc123"
    for unusable in ("x" * 101, "caf\u00e9", "a\tb"):  # monitoring could not take it back with a label
        fresh = api.get("/api/v1/health", token=None, headers={"X-Request-ID": unusable}).headers["X-Request-ID"]
        assert fresh != unusable and len(fresh) == 32
