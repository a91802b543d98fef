"""Every route is authenticated and declares its permission; one place checks it."""

from __future__ import annotations

import re

from api.security import permission_for
from tests.api_client import Api

PUBLIC_PATHS = {"/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json"}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def spec_operations(api: Api) -> list[tuple[str, str]]:
    spec = api.get("/api/v1/openapi.json", token=None).json
    return [
        (path, method) for path, item in spec["paths"].items() for method in item if method in WRITE_METHODS | {"get"}
    ]


def concrete(path: str) -> str:
    numeric = ("id", "version", "v}")
    return re.sub(r"\{[^}]+\}", lambda m: "1" if any(n in m.group(0) for n in numeric) else "p1", path)


def test_every_route_declares_a_permission(api: Api) -> None:
    undeclared = []
    for rule in api.app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        view = api.app.view_functions[rule.endpoint]
        for method in rule.methods - {"OPTIONS", "HEAD"}:
            if permission_for(view, method) is None:
                undeclared.append(f"{method} {rule.rule}")
    assert undeclared == []


def test_every_spec_route_needs_a_token(api: Api) -> None:
    operations = spec_operations(api)
    assert len(operations) >= 15
    for path, method in operations:
        if path in PUBLIC_PATHS:
            continue
        response = api.call(method.upper(), concrete(path), token=None, json={})
        assert response.status_code == 401, (method, path, response.json)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(response.json) == {"code", "status", "message", "errors"}


def test_a_bad_token_is_401(api: Api) -> None:
    for token in ("mlp_not-a-real-token", "garbage"):
        response = api.get("/api/v1/whoami", token=token)
        assert response.status_code == 401
        assert response.json["code"] == 401


def test_public_routes_answer_without_a_token(api: Api) -> None:
    assert api.get("/api/v1/health", token=None).json["status"] == "ok"
    assert api.get("/health", token=None).status_code == 200
    assert api.get("/api/v1/ready", token=None).json["checks"] == {"database": "ok", "jobs": "ok"}
    assert api.get("/api/v1/openapi.json", token=None).json["info"]["title"] == "mlplatform"


def test_viewer_cannot_write(api: Api) -> None:
    assert api.post("/api/v1/projects", json={"name": "p1"}).status_code == 201
    viewer = api.user("vera", role="viewer", project="p1")
    checked = 0
    for path, method in spec_operations(api):
        if method not in WRITE_METHODS:
            continue
        endpoint, _args = api.app.url_map.bind("localhost").match(concrete(path), method.upper())
        permission = permission_for(api.app.view_functions[endpoint], method.upper())
        if permission.scope == "authenticated" or permission.role == "viewer":
            continue  # your own tokens and new projects are anyone's; some POSTs only read
        response = api.call(
            method.upper(),
            concrete(path),
            token=viewer,
            json={"role": "viewer", "description": "x", "username": "x", "name": "x"},
        )
        assert response.status_code == 403, (method, path, response.json)
        checked += 1
    assert checked >= 5


def test_roles_are_ordered(api: Api) -> None:
    api.post("/api/v1/projects", json={"name": "p1"})
    developer = api.user("dev", role="developer", project="p1")
    maintainer = api.user("maint", role="maintainer", project="p1")
    outsider = api.user("out")
    assert api.get("/api/v1/projects/p1", token=developer).status_code == 200
    assert api.patch("/api/v1/projects/p1", token=developer, json={"description": "d"}).status_code == 403
    assert api.patch("/api/v1/projects/p1", token=maintainer, json={"description": "d"}).status_code == 200
    assert api.put("/api/v1/projects/p1/members/out", token=maintainer, json={"role": "viewer"}).status_code == 403
    response = api.get("/api/v1/projects/p1", token=outsider)
    assert response.status_code == 403
    assert "not a member" in response.json["message"]
    assert api.get("/api/v1/projects/nope", token=outsider).status_code == 404


def test_admin_only_routes(api: Api) -> None:
    user = api.user("ursula")
    for path in ("/api/v1/users", "/api/v1/audit", "/api/v1/audit/verify"):
        assert api.get(path, token=user).status_code == 403
        assert api.get(path).status_code == 200
