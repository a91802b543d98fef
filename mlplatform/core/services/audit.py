"""The audit trail: an append-only hash chain written in the same transaction as the change.

Each row stores ``prev_hash`` (the previous row's ``row_hash``) and ``row_hash``, the SHA-256
of a canonical JSON encoding of its own stored fields including ``prev_hash``. Editing a
row breaks its ``row_hash``; deleting or reordering rows breaks the next row's ``prev_hash``.
Events are written just before commit, under a lock that serialises writers (PostgreSQL: a
transaction-level advisory lock; SQLite: write transactions begin IMMEDIATE), so two writers
never read the same head and fork the chain, and the lock is held only for the commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from mlplatform.core.backends import PlatformEvent
from mlplatform.core.db.base import JSONText, UTCDateTime, utcnow
from mlplatform.core.db.models import AuditEvent
from mlplatform.core.db.session import after_commit

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

GENESIS = "0" * 64
PENDING = "audit_pending"
PUBLISHERS = "audit_publishers"
ADVISORY_LOCK_KEY = 0x6D6C70_61756469  # "mlp" "audi"


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes ``row_hash`` covers: the stored fields as JSON, keys sorted, no spaces."""
    before, after = canonical_parts(row)
    return (before + row["prev_hash"] + after).encode()


def canonical_parts(row: Mapping[str, Any]) -> tuple[str, str]:
    """``canonical(row)`` as the text before and after the ``prev_hash`` value, which the
    row's hash depends on but which is known only under the chain's lock (PostgreSQL hashes
    there, in ``audit_append``). Keys in sorted order: prev_hash sits between occurred_at and project."""
    occurred_at = row["occurred_at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    head = _json({"action": row["action"], "actor": row["actor"], "occurred_at": occurred_at})
    tail = _json(
        {
            "project": row["project"],
            "resource_id": row["resource_id"],
            "resource_type": row["resource_type"],
            "summary": row["summary"],
        }
    )
    return f'{head[:-1]},"prev_hash":"', f'",{tail[1:]}'


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: str | int,
    summary: Mapping[str, Any] | None = None,
    project: str | None = None,
    platform: Platform | None = None,
) -> None:
    """Append one event to the chain as part of the caller's transaction.

    The row is written just before the transaction commits (see ``_write_pending``), so the
    chain's lock is held for the commit only, not for the whole use case: writers that
    audit are serialised for a moment, not for their whole transaction. A rollback drops it.
    """
    pending = session.info.setdefault(PENDING, [])
    pending.append(
        {
            "actor": actor,
            "project": project,
            "action": action,
            "resource_type": resource_type,
            "resource_id": str(resource_id),
            "summary": json.loads(json.dumps(dict(summary or {}), default=str)),
        }
    )
    publish = platform.publish if platform is not None else session.info.get("publish")
    if publish is not None:
        session.info.setdefault(PUBLISHERS, {})[len(pending) - 1] = publish


@sa_event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    """Write the transaction's audit events at the head of the chain, under the chain's lock.

    Core statements on the session's connection, not ORM objects: this runs in every audited
    commit, and while it holds the lock every other audited writer waits."""
    pending = session.info.pop(PENDING, None)
    publishers = session.info.pop(PUBLISHERS, {})
    if not pending:
        return
    session.flush()  # the use case's own changes first, before the lock is taken
    connection = session.connection()
    now = utcnow()
    rows = [{**fields, "occurred_at": now} for fields in pending]
    if connection.dialect.name == "postgresql":  # lock, head, hash and insert: one round trip (migration 0010)
        events = []
        for fields in rows:
            before, after = canonical_parts(fields)
            stored = {key: fields[key] for key in ("actor", "project", "action", "resource_type", "resource_id")}
            events.append({**stored, "summary": _STORED_JSON(fields["summary"]), "before": before, "after": after})
        ids = connection.execute(_APPEND, {"key": ADVISORY_LOCK_KEY, "occurred": now, "events": events}).scalars().all()
    else:  # SQLite: the write transaction (BEGIN IMMEDIATE) already serialises writers
        head = connection.execute(_HEAD).scalar() or GENESIS
        for fields in rows:
            fields["prev_hash"] = head
            head = fields["row_hash"] = row_hash(fields)
        ids = connection.execute(_INSERT, rows).scalars().all()
    for index, publish in publishers.items():
        row = rows[index]
        published = PlatformEvent(
            id=ids[index],
            occurred_at=row["occurred_at"],
            actor=row["actor"],
            project=row["project"],
            action=row["action"],
            resource_type=row["resource_type"],
            resource_id=row["resource_id"],
            summary=row["summary"],
        )
        after_commit(session, functools.partial(publish, published))


_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]
_APPEND = text("SELECT audit_append(:key, :occurred, CAST(:events AS jsonb))").bindparams(
    bindparam("occurred", type_=UTCDateTime()), bindparam("events", type_=JSONText())
)
_STORED_JSON = functools.partial(JSONText().process_bind_param, dialect=None)  # the summary column's text
_HEAD = select(_EVENTS.c.row_hash).order_by(_EVENTS.c.id.desc()).limit(1)
_INSERT = _EVENTS.insert().returning(_EVENTS.c.id, sort_by_parameter_order=True)


@sa_event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(PENDING, None)
    session.info.pop(PUBLISHERS, None)


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_broken_id": self.first_broken_id, "reason": self.reason}


def verify(session: Session) -> Verification:
    """Recompute the chain in id order; name the first event that does not match.

    ``session`` should be a ``Database.snapshot()``: the rows stream through a server-side
    cursor, which PostgreSQL keeps only inside a transaction, and the chain is read as of one moment."""
    expected_prev = GENESIS
    checked = 0
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000)).scalars()
    for event in rows:
        stored = {
            c: getattr(event, c)
            for c in (
                "occurred_at",
                "actor",
                "project",
                "action",
                "resource_type",
                "resource_id",
                "summary",
                "prev_hash",
            )
        }
        if event.prev_hash != expected_prev:
            return Verification(
                False,
                checked,
                event.id,
                "prev_hash does not match the previous event: an event before it was deleted or changed",
            )
        if row_hash(stored) != event.row_hash:
            return Verification(
                False, checked, event.id, "row_hash does not match the event's contents: the event was edited"
            )
        expected_prev = event.row_hash
        checked += 1
    return Verification(True, checked)


def search(
    session: Session,
    *,
    project: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    page_size: int = 100,
    page_token: str | None = None,
) -> Any:
    """Events matching every given filter, oldest first, a page at a time."""
    from mlplatform.core.services.pagination import paginate

    query = select(AuditEvent)
    for column, value in (
        (AuditEvent.project, project),
        (AuditEvent.resource_type, resource_type),
        (AuditEvent.resource_id, resource_id),
        (AuditEvent.actor, actor),
        (AuditEvent.action, action),
    ):
        if value is not None:
            query = query.where(column == value)
    if start is not None:
        query = query.where(AuditEvent.occurred_at >= start)
    if end is not None:
        query = query.where(AuditEvent.occurred_at < end)
    return paginate(session, query, AuditEvent.id, page_size, page_token)
