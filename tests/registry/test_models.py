"""Registered models: CRUD, search, permissions, delete refused while deployed."""

from __future__ import annotations

from sqlalchemy import update

from mlplatform.core.db.deployments import DeploymentVersion
from tests.api_client import Api
from tests.registry.conftest import M, create_model, make_run, upload_folder
from tests.registry.helpers import audit_events, deploy


def test_create_get_update_delete(reg: Api) -> None:
    body = create_model(reg, "churn", token="dev", description="who leaves", tags={"team": "crm"})
    assert body["name"] == "churn" and body["tags"] == {"team": "crm"} and body["created_by"] == "dev"
    assert body["aliases"] == {} and body["latest_version"] is None
    assert reg.post(M, json={"name": "churn"}).status_code == 409
    assert reg.post(M, json={"name": "bad name!"}).status_code == 400

    got = reg.get(f"{M}/churn", token="viewer")
    assert got.status_code == 200 and got.json["description"] == "who leaves"
    patched = reg.patch(
        f"{M}/churn", json={"description": "churners", "tags": {"team": None, "tier": "1"}}, token="dev"
    )
    assert patched.status_code == 200, patched.json
    assert patched.json["description"] == "churners" and patched.json["tags"] == {"tier": "1"}

    assert reg.delete(f"{M}/churn", token="dev").status_code == 403  # maintainers delete
    assert reg.delete(f"{M}/churn", token="maint").status_code == 204
    assert reg.get(f"{M}/churn").status_code == 404
    actions = [e["action"] for e in audit_events(reg, resource_type="model")]
    assert actions == ["model.create", "model.update", "model.delete"]
    update = audit_events(reg, action="model.update")[0]
    assert update["actor"] == "dev" and update["summary"]["description"] == {"from": "who leaves", "to": "churners"}


def test_list_searches_by_name_and_tag(reg: Api) -> None:
    create_model(reg, "churn-eu", tags={"region": "eu", "team": "crm"})
    create_model(reg, "churn-us", tags={"region": "us"})
    create_model(reg, "fraud", tags={"region": "eu"})
    names = lambda **q: [m["name"] for m in reg.get(M, query_string=q, token="viewer").json["items"]]  # noqa: E731
    assert names() == ["churn-eu", "churn-us", "fraud"]
    assert names(name="CHURN") == ["churn-eu", "churn-us"]
    assert names(tag="region=eu") == ["churn-eu", "fraud"]
    assert names(tag=["region=eu", "team"]) == ["churn-eu"]
    assert names(name="churn", tag="region=us") == ["churn-us"]
    first = reg.get(M, query_string={"tag": "region", "page_size": 2}).json
    assert [m["name"] for m in first["items"]] == ["churn-eu", "churn-us"] and first["next_page_token"]
    second = reg.get(M, query_string={"tag": "region", "page_size": 2, "page_token": first["next_page_token"]}).json
    assert [m["name"] for m in second["items"]] == ["fraud"] and second["next_page_token"] is None


def test_viewer_reads_but_cannot_write(reg: Api) -> None:
    create_model(reg, "churn")
    assert reg.get(M, token="viewer").status_code == 200
    assert reg.post(M, json={"name": "x"}, token="viewer").status_code == 403
    assert reg.patch(f"{M}/churn", json={"description": "x"}, token="viewer").status_code == 403
    assert reg.post(f"{M}/churn/versions", json={"source": "upload"}, token="viewer").status_code == 403
    assert reg.put(f"{M}/churn/aliases/champion", json={"version": 1}, token="viewer").status_code == 403
    assert reg.delete(f"{M}/churn", token="viewer").status_code == 403
    assert reg.get(M, token=None).status_code == 401


def test_delete_is_refused_while_a_version_is_deployed(reg: Api, sklearn_model_dir) -> None:
    create_model(reg, "churn")
    run = make_run(reg)
    upload_folder(reg, run["id"], sklearn_model_dir)
    assert reg.post(f"{M}/churn/versions", json={"run_id": run["id"], "artifact_path": "model"}).status_code == 201
    assert reg.platform.jobs.wait_idle(10)
    deploy(reg, "churn", 1, weight=0, status="healthy")  # no traffic, but not retired: still deployed
    response = reg.delete(f"{M}/churn", token="maint")
    assert response.status_code == 409 and "version(s) 1" in response.json["message"]
    # archiving a deployed version is refused too
    assert reg.patch(f"{M}/churn/versions/1", json={"archived": True}).status_code == 409
    with reg.platform.db.write() as session:
        session.execute(update(DeploymentVersion).values(status="retired", weight=0))
    files = reg.get(f"{M}/churn/versions/1").json["artifact_uri"]
    assert list(reg.platform.artifact_store.list(files))
    assert reg.delete(f"{M}/churn", token="maint").status_code == 204
    assert reg.get(f"{M}/churn/versions/1").status_code == 404
    assert list(reg.platform.artifact_store.list(files)) == []  # the model's files went with it
