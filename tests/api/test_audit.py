"""The audit trail: written with every change, filterable, a chain that proves integrity."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mlplatform.core.backends import Identity
from mlplatform.core.services import audit, projects
from tests.api_client import Api


def test_changes_are_audited_and_filterable(api: Api) -> None:
    api.post("/api/v1/projects", json={"name": "p1"})
    api.user("ann", role="developer", project="p1")
    api.put("/api/v1/projects/p1/members/ann", json={"role": "maintainer"})
    events = api.get("/api/v1/projects/p1/audit").json["items"]
    assert [e["action"] for e in events] == ["project.create", "member.set_role", "member.set_role"]
    assert events[-1]["summary"] == {"from": "developer", "to": "maintainer"}
    assert events[-1]["actor"] == "admin"
    only_roles = api.get(
        "/api/v1/projects/p1/audit", query_string={"action": "member.set_role", "resource_id": "p1/ann"}
    ).json
    assert len(only_roles["items"]) == 2
    everything = api.get("/api/v1/audit").json["items"]
    actions = [e["action"] for e in everything]
    assert actions[:2] == ["user.create", "token.issue"]  # the bootstrap admin
    token_events = [e for e in everything if e["action"] == "token.issue"]
    assert all("mlp_" not in str(e["summary"]) for e in token_events)
    later = api.get("/api/v1/audit", query_string={"start": events[-1]["occurred_at"]}).json["items"]
    assert [e["id"] for e in later] == [events[-1]["id"]]


def test_verify_detects_an_edited_row_and_a_deleted_middle_row(api: Api) -> None:
    api.post("/api/v1/projects", json={"name": "p1"})
    for i in range(4):
        api.patch("/api/v1/projects/p1", json={"description": f"v{i}"})
    assert api.get("/api/v1/audit/verify").json == {"ok": True, "checked": 7, "first_broken_id": None, "reason": ""}
    ids = [e["id"] for e in api.get("/api/v1/audit").json["items"]]

    with tampering(api) as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'someone-else' WHERE id = :id"), {"id": ids[3]})
    result = api.get("/api/v1/audit/verify").json
    assert result["ok"] is False and result["first_broken_id"] == ids[3] and "edited" in result["reason"]

    with tampering(api) as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'admin' WHERE id = :id"), {"id": ids[3]})
        conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[4]})
    result = api.get("/api/v1/audit/verify").json
    assert result["ok"] is False and result["first_broken_id"] == ids[5] and "deleted" in result["reason"]


class tampering:
    """A direct connection that bypasses the append-only trigger, as a superuser could."""

    def __init__(self, api: Api) -> None:
        self.engine = api.platform.db.engine

    def __enter__(self):
        self.cm = self.engine.begin()
        conn = self.cm.__enter__()
        if self.engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        return conn

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def test_postgres_refuses_changes_to_the_trail(make_api) -> None:
    api = make_api(db="postgresql")
    for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events", "TRUNCATE audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            with api.platform.db.engine.begin() as conn:
                conn.execute(text(statement))
    assert api.get("/api/v1/audit/verify").json["ok"] is True


def test_concurrent_writers_never_fork_the_chain(platform) -> None:
    with platform.db.write() as session:
        projects.create_project(session, Identity("admin", "test", is_admin=True), "p1")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with platform.db.write() as session:
                    audit.record(
                        session,
                        actor=f"w{n}",
                        action="test.write",
                        resource_type="thing",
                        resource_id=f"{n}-{i}",
                        project="p1",
                    )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with platform.db.snapshot() as session:
        result = audit.verify(session)
    assert result.ok and result.checked == 81


def test_canonical_encoding_is_the_sorted_json_of_the_stored_fields() -> None:
    """Chains written before the encoding was split around prev_hash (for PostgreSQL's
    audit_append) must still verify: the bytes are the same sorted, compact JSON."""
    import datetime as dt
    import json

    row = {
        "occurred_at": dt.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "actor": 'ann "the admin"',
        "project": None,
        "action": "model_alias.set",
        "resource_type": "model",
        "resource_id": "7",
        "summary": {"z": [1, 2.5, None], "ä": "ü\n\u0000", "a": {"b": True}},
        "prev_hash": "ab" * 32,
    }
    expected = json.dumps(
        {**row, "occurred_at": "2026-01-02T01:04:05.000678Z"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert audit.canonical(row) == expected
    before, after = audit.canonical_parts(row)
    assert (before + row["prev_hash"] + after).encode() == expected


def test_many_events_in_one_transaction_chain_in_order(platform) -> None:
    with platform.db.write() as session:
        for i in range(5):
            audit.record(
                session,
                actor="admin",
                action="test.write",
                resource_type="thing",
                resource_id=str(i),
                summary={"n": i, "text": "naïve ✓"},
            )
    with platform.db.snapshot() as session:
        assert audit.verify(session).ok
        rows = session.execute(
            text("SELECT resource_id, prev_hash, row_hash FROM audit_events WHERE action = 'test.write' ORDER BY id")
        ).all()
    assert [r.resource_id for r in rows] == ["0", "1", "2", "3", "4"]
    assert all(later.prev_hash == earlier.row_hash for earlier, later in zip(rows, rows[1:], strict=False))
