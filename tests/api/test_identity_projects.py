"""Users, tokens, projects and members through the REST API, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text

from mlplatform.core.db.models import ApiToken
from tests.api_client import Api


def test_whoami_and_projects(api: Api) -> None:
    assert api.get("/api/v1/whoami").json["username"] == "admin"
    created = api.post("/api/v1/projects", json={"name": "churn", "description": "Churn models"})
    assert created.status_code == 201
    assert created.json["created_by"] == "admin"
    assert api.get("/api/v1/whoami").json["projects"] == [{"project": "churn", "role": "admin"}]
    assert api.post("/api/v1/projects", json={"name": "churn"}).status_code == 409
    assert api.patch("/api/v1/projects/churn", json={"description": "new"}).json["description"] == "new"


def test_tokens_are_shown_once_stored_hashed_and_revocable(api: Api) -> None:
    api.user("tom")
    issued = api.post("/api/v1/tokens", token="tom", json={"name": "laptop"})
    assert issued.status_code == 201
    plaintext = issued.json["token"]
    assert plaintext.startswith("mlp_")
    listed = api.get("/api/v1/tokens", token=plaintext).json
    assert {t["name"] for t in listed} == {"test", "laptop"}
    assert all("token" not in t for t in listed)
    with api.platform.db.read() as session:
        hashes = list(session.scalars(select(ApiToken.token_hash)))
        assert plaintext not in hashes and all(len(h) == 64 for h in hashes)
        dump = " ".join(str(row) for row in session.execute(text("SELECT * FROM api_tokens")))
        assert plaintext not in dump
    token_id = issued.json["id"]
    assert api.get("/api/v1/whoami", token=plaintext).json["token_id"] == token_id
    with api.platform.db.read() as session:
        assert session.get(ApiToken, token_id).last_used_at is not None
    assert api.delete(f"/api/v1/tokens/{token_id}", token=plaintext).status_code == 204
    assert api.delete(f"/api/v1/tokens/{token_id}").status_code == 204  # idempotent
    response = api.get("/api/v1/whoami", token=plaintext)
    assert response.status_code == 401
    assert "revoked" in response.json["message"]


def test_someone_elses_token_is_not_found(api: Api) -> None:
    api.user("a")
    api.user("b")
    token_b = api.post("/api/v1/tokens", token="b", json={"name": "x"}).json["id"]
    assert api.delete(f"/api/v1/tokens/{token_b}", token="a").status_code == 404


def test_expired_token_is_refused(api: Api) -> None:
    api.user("eve")
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    assert api.post("/api/v1/tokens", token="eve", json={"name": "old", "expires_at": past}).status_code == 409
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    issued = api.post("/api/v1/tokens", token="eve", json={"name": "soon", "expires_at": soon}).json
    with api.platform.db.write() as session:
        session.get(ApiToken, issued["id"]).expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    response = api.get("/api/v1/whoami", token=issued["token"])
    assert response.status_code == 401
    assert "expired" in response.json["message"]


def test_only_admins_issue_tokens_for_others(api: Api) -> None:
    api.user("mallory")
    assert api.post("/api/v1/tokens", token="mallory", json={"name": "x", "username": "admin"}).status_code == 403


def test_members_and_the_last_admin(api: Api) -> None:
    api.post("/api/v1/projects", json={"name": "p1"})
    api.user("ann", role="developer", project="p1")
    members = api.get("/api/v1/projects/p1/members").json
    assert [(m["username"], m["role"]) for m in members] == [("admin", "admin"), ("ann", "developer")]
    assert api.put("/api/v1/projects/p1/members/ann", json={"role": "owner"}).status_code == 422
    assert api.put("/api/v1/projects/p1/members/ghost", json={"role": "viewer"}).status_code == 404
    assert api.put("/api/v1/projects/p1/members/admin", json={"role": "viewer"}).status_code == 409
    assert api.delete("/api/v1/projects/p1/members/admin").status_code == 409
    assert api.put("/api/v1/projects/p1/members/ann", json={"role": "admin"}).json["role"] == "admin"
    assert api.delete("/api/v1/projects/p1/members/ann").status_code == 204
    assert api.delete("/api/v1/projects/p1/members/ann").status_code == 204
    assert api.get("/api/v1/projects/p1/members/ann").status_code == 404


def test_project_list_paginates_in_a_stable_order(api: Api) -> None:
    names = [f"p{i:02d}" for i in range(7)]
    for name in names:
        api.post("/api/v1/projects", json={"name": name})
    seen, token = [], None
    while True:
        query = {"page_size": 3, **({"page_token": token} if token else {})}
        page = api.get("/api/v1/projects", query_string=query).json
        seen += [p["name"] for p in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == names
    assert api.get("/api/v1/projects", query_string={"page_token": "%%%"}).status_code == 400
    assert api.get("/api/v1/projects", query_string={"page_size": 0}).status_code == 422


def test_users_are_admin_managed(api: Api) -> None:
    response = api.post("/api/v1/users", json={"username": "zoe", "email": "zoe@example.com"})
    assert response.status_code == 201
    assert api.post("/api/v1/users", json={"username": "zoe"}).status_code == 409
    assert api.post("/api/v1/users", json={"username": "bad name"}).status_code == 422
    assert [u["username"] for u in api.get("/api/v1/users").json["items"]] == ["admin", "zoe"]
