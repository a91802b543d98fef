"""Tracking test helpers; ``api`` (tests/api_client.py) runs each test on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_client import Api

P = "/api/v1/projects/p1"


@pytest.fixture
def tracked(api: Api) -> Api:
    """An app with project ``p1`` and members dev (developer), viewer (viewer), boss (admin)."""
    assert api.post("/api/v1/projects", json={"name": "p1"}).status_code == 201
    api.user("dev", role="developer", project="p1")
    api.user("viewer", role="viewer", project="p1")
    api.user("boss", role="admin", project="p1")
    return api


def experiment(client: Api, name: str = "exp", **body: Any) -> int:
    response = client.post(f"{P}/experiments", json={"name": name, **body})
    assert response.status_code == 201, response.json
    return response.json["id"]


def run(client: Api, experiment_id: int, **body: Any) -> dict[str, Any]:
    response = client.post(f"{P}/experiments/{experiment_id}/runs", json=body)
    assert response.status_code == 201, response.json
    return response.json


def log(client: Api, run_id: str, token: str = "admin", headers: dict[str, str] | None = None, **body: Any) -> Any:
    return client.post(f"{P}/runs/{run_id}/log", json=body, token=token, headers=headers)
