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

from sqlalchemy import Table, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from mlplatform.core.backends import PlatformEvent
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import AuditEvent
from mlplatform.core.db.session import after_commit

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

GENESIS = "0" * 64
PENDING = "audit_pending"
PUBLISHERS = "audit_publishers"
ADVISORY_LOCK_KEY = 0x6D6C70_61756469  # "mlp" "audi"


def canonical(row: Mapping[str, Any]) -> bytes:
    occurred_at = row["occurred_at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload = {
        "occurred_at": occurred_at,
        "actor": row["actor"],
        "project": row["project"],
        "action": row["action"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
        "summary": row["summary"],
        "prev_hash": row["prev_hash"],
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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
    if connection.dialect.name == "postgresql":  # lock, then read the head: one round trip (migration 0009)
        head = connection.execute(_LOCKED_HEAD, {"key": ADVISORY_LOCK_KEY}).scalar() or GENESIS
    else:  # SQLite: the write transaction (BEGIN IMMEDIATE) already serialises writers
        head = connection.execute(_HEAD).scalar() or GENESIS
    now = utcnow()
    rows = []
    for fields in pending:
        fields = {**fields, "occurred_at": now, "prev_hash": head}
        head = fields["row_hash"] = row_hash(fields)
        rows.append(fields)
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
_LOCKED_HEAD = text("SELECT audit_chain_head(:key)")
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
    """Recompute the chain in id order; name the first event that does not match."""
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
