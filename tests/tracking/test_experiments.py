"""Experiments through the REST API: CRUD, filters, archive, soft delete, restore, purge, audit, roles."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from mlplatform.core.db.models import AuditEvent
from mlplatform.core.db.tracking import Metric, Run
from tests.api_client import Api
from tests.tracking.conftest import P, experiment, log, run


def test_create_get_list_and_filter(tracked: Api) -> None:
    api = tracked
    first = api.post(
        f"{P}/experiments", json={"name": "Churn baseline", "description": "d", "tags": {"team": "ml"}}, token="dev"
    )
    assert first.status_code == 201
    body = first.json
    assert body["name"] == "Churn baseline" and body["tags"] == {"team": "ml"} and body["lifecycle_stage"] == "active"
    assert body["created_by"] == "dev"
    experiment(api, "churn v2", tags={"team": "data"})
    experiment(api, "fraud")
    assert api.get(f"{P}/experiments/{body['id']}", token="viewer").json["description"] == "d"
    names = lambda **q: [e["name"] for e in api.get(f"{P}/experiments", query_string=q, token="viewer").json["items"]]  # noqa: E731
    assert names() == ["Churn baseline", "churn v2", "fraud"]
    assert names(name="CHURN") == ["Churn baseline", "churn v2"]
    assert names(tag="team") == ["Churn baseline", "churn v2"]
    assert names(tag="team=data") == ["churn v2"]
    assert names(name="churn", tag="team=ml") == ["Churn baseline"]
    assert names(name="%") == []  # LIKE wildcards are literal
    page = api.get(f"{P}/experiments", query_string={"page_size": 2}).json
    assert len(page["items"]) == 2 and page["next_page_token"]
    rest = api.get(f"{P}/experiments", query_string={"page_size": 2, "page_token": page["next_page_token"]}).json
    assert [e["name"] for e in rest["items"]] == ["fraud"] and rest["next_page_token"] is None


def test_names_are_unique_per_project(tracked: Api) -> None:
    api = tracked
    eid = experiment(api, "a")
    experiment(api, "b")
    assert api.post(f"{P}/experiments", json={"name": "a"}).status_code == 409
    assert api.patch(f"{P}/experiments/{eid}", json={"name": "b"}).status_code == 409
    api.post("/api/v1/projects", json={"name": "p2"})
    assert api.post("/api/v1/projects/p2/experiments", json={"name": "a"}).status_code == 201
    assert api.get(f"/api/v1/projects/p2/experiments/{eid}").status_code == 404  # another project's id


def test_rename_describe_tag_archive(tracked: Api) -> None:
    api = tracked
    eid = experiment(api, "old", tags={"a": "1", "b": "2"})
    changed = api.patch(
        f"{P}/experiments/{eid}",
        json={"name": "new", "description": "why", "tags": {"a": "9", "b": None, "c": "3"}},
        token="dev",
    )
    assert changed.status_code == 200
    assert (changed.json["name"], changed.json["description"], changed.json["tags"]) == (
        "new",
        "why",
        {"a": "9", "c": "3"},
    )
    archived = api.patch(f"{P}/experiments/{eid}", json={"archived": True}, token="dev").json
    assert archived["lifecycle_stage"] == "archived"
    assert api.get(f"{P}/experiments").json["items"] == []
    assert [e["id"] for e in api.get(f"{P}/experiments", query_string={"view": "archived"}).json["items"]] == [eid]
    assert api.post(f"{P}/experiments/{eid}/runs", json={}).status_code == 409  # no new runs in an archived experiment
    assert api.patch(f"{P}/experiments/{eid}", json={"archived": False}).json["lifecycle_stage"] == "active"
    with api.platform.db.read() as session:
        actions = list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.resource_type == "experiment").order_by(AuditEvent.id)
            )
        )
    assert actions == ["experiment.create", "experiment.update", "experiment.archive", "experiment.unarchive"]


def test_soft_delete_and_restore(tracked: Api) -> None:
    api = tracked
    eid = experiment(api, "x")
    api.patch(f"{P}/experiments/{eid}", json={"archived": True})
    assert api.delete(f"{P}/experiments/{eid}", token="dev").status_code == 204
    assert api.delete(f"{P}/experiments/{eid}", token="dev").status_code == 204  # idempotent
    deleted = api.get(f"{P}/experiments/{eid}").json
    assert deleted["lifecycle_stage"] == "deleted" and deleted["deleted_at"]
    assert [e["id"] for e in api.get(f"{P}/experiments", query_string={"view": "deleted"}).json["items"]] == [eid]
    assert [e["id"] for e in api.get(f"{P}/experiments", query_string={"view": "all"}).json["items"]] == [eid]
    assert api.patch(f"{P}/experiments/{eid}", json={"description": "x"}).status_code == 409
    conflict = api.post(f"{P}/experiments", json={"name": "x"})
    assert conflict.status_code == 409 and "deleted" in conflict.json["message"]
    restored = api.post(f"{P}/experiments/{eid}/restore", token="dev")
    assert restored.status_code == 200 and restored.json["lifecycle_stage"] == "archived"  # back where it was
    assert restored.json["deleted_at"] is None


def test_purge_is_admin_only_and_removes_runs_and_artifacts(tracked: Api) -> None:
    api = tracked
    eid = experiment(api, "doomed")
    keep = experiment(api, "kept")
    r = run(api, eid, metrics=[{"key": "m", "value": 1.0}])
    other = run(api, keep, parent_run_id=r["id"])
    store = api.platform.artifact_store
    store.put(f"{r['artifact_prefix']}/model.pkl", io.BytesIO(b"model"))
    store.put(f"{other['artifact_prefix']}/model.pkl", io.BytesIO(b"other"))
    assert api.delete(f"{P}/experiments/{eid}", query_string={"purge": "true"}, token="dev").status_code == 403
    assert api.delete(f"{P}/experiments/{eid}", query_string={"purge": "true"}, token="boss").status_code == 204
    assert api.get(f"{P}/experiments/{eid}").status_code == 404
    assert api.get(f"{P}/runs/{r['id']}").status_code == 404
    assert list(store.list(r["artifact_prefix"])) == []
    assert [a.path for a in store.list(other["artifact_prefix"])] == [f"{other['artifact_prefix']}/model.pkl"]
    assert api.get(f"{P}/runs/{other['id']}").json["parent_run_id"] is None
    with api.platform.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == r["id"])) == 0
        assert session.scalar(select(func.count()).select_from(Run)) == 1
        purge = session.scalar(select(AuditEvent).where(AuditEvent.action == "experiment.purge"))
        assert purge is not None and purge.actor == "boss" and purge.summary == {"name": "doomed", "runs": 1}
    assert (
        api.delete(f"{P}/experiments/{eid}", query_string={"purge": "true"}, token="boss").status_code == 204
    )  # idempotent
    assert api.post(f"{P}/experiments", json={"name": "doomed"}).status_code == 201  # the name is free again


def test_viewers_read_but_do_not_write(tracked: Api) -> None:
    api = tracked
    eid = experiment(api, "e")
    r = run(api, eid)
    assert api.get(f"{P}/experiments", token="viewer").status_code == 200
    assert api.get(f"{P}/runs/{r['id']}", token="viewer").status_code == 200
    writes = [
        ("POST", f"{P}/experiments", {"name": "v"}),
        ("PATCH", f"{P}/experiments/{eid}", {"name": "v"}),
        ("DELETE", f"{P}/experiments/{eid}", None),
        ("POST", f"{P}/experiments/{eid}/restore", None),
        ("POST", f"{P}/experiments/{eid}/runs", {}),
        ("PATCH", f"{P}/runs/{r['id']}", {"status": "finished"}),
        ("DELETE", f"{P}/runs/{r['id']}", None),
        ("POST", f"{P}/runs/{r['id']}/restore", None),
        ("POST", f"{P}/runs/{r['id']}/log", {"tags": {"a": "b"}}),
    ]
    for method, path, body in writes:
        response = api.call(method, path, token="viewer", json=body)
        assert response.status_code == 403, (method, path, response.json)
    api.user("stranger")
    assert api.get(f"{P}/experiments", token="stranger").status_code == 403
    assert log(api, r["id"], token="dev", tags={"a": "b"}).status_code == 200
