"""An app on a fresh database (SQLite and PostgreSQL), its test client and tokens by role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from mlplatform.core.platform import Platform
from mlplatform.core.services.bootstrap import bootstrap_admin


@dataclass
class Api:
    """A thin JSON client over Flask's test client that sends a bearer token."""

    app: Flask
    client: FlaskClient
    platform: Platform
    admin_token: str
    tokens: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, token: str | None = "admin", **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = (
                f"Bearer {self.admin_token if token == 'admin' else self.tokens.get(token, token)}"
            )
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.call("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.call("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.call("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.call("DELETE", path, **kwargs)

    def user(self, username: str, *, role: str | None = None, project: str | None = None, admin: bool = False) -> str:
        """Create a user with a token (optionally a member of ``project`` with ``role``); returns the token."""
        assert self.post("/api/v1/users", json={"username": username, "is_admin": admin}).status_code == 201
        response = self.post("/api/v1/tokens", json={"name": "test", "username": username})
        assert response.status_code == 201, response.json
        token = response.json["token"]
        self.tokens[username] = token
        if project and role:
            response = self.put(f"/api/v1/projects/{project}/members/{username}", json={"role": role})
            assert response.status_code == 200, response.json
        return token


@pytest.fixture
def make_api(make_platform: Callable[..., Platform]) -> Callable[..., Api]:
    def make(overrides: dict[str, Any] | None = None, *, db: str = "sqlite", **kwargs: Any) -> Api:
        platform = make_platform(overrides, db=db, **kwargs)
        app = create_app(platform, TESTING=True)
        _path, token = bootstrap_admin(platform)
        assert token is not None
        return Api(app, app.test_client(), platform, token)

    return make


@pytest.fixture
def api(make_api: Callable[..., Api], db_kind: str) -> Api:
    return make_api(db=db_kind)
