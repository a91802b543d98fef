"""Runs: create (with a first batch), read, update, soft delete and restore; log batches.

Every change of a run is audited in the caller's transaction; logging params, metrics and
tags is data, not a change of state, and is not audited.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Double,
    String,
    Text,
    any_,
    bindparam,
    cast,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.tracking import RUN_STATUSES, Run
from mlplatform.core.errors import Conflict, InvalidInput, NotFound
from mlplatform.core.services import access
from mlplatform.core.services.tracking import audit_change, load_run
from mlplatform.core.services.tracking_batch import Batch, LogResult, RunState, log_batch
from mlplatform.core.services.tracking_writes import (
    artifact_prefix,
    insert_run,
    latest_points,
    latest_table,
    params_table,
    projects_table,
    runs_table,
    tags_table,
)

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run's columns as read for a response (search pages) or just written (a new run):
    the attributes of ``Run`` without an ORM object."""

    id: str
    project_id: int
    experiment_id: int
    name: str
    status: str
    lifecycle_stage: str
    start_time: dt.datetime
    end_time: dt.datetime | None
    user: str
    source_git_commit: str | None
    source_entry_point: str | None
    parent_run_id: str | None
    artifact_prefix: str
    deleted_at: dt.datetime | None


RUN_RECORD_COLUMNS = [runs_table.c[f.name] for f in fields(RunRecord)]


@dataclass
class RunView:
    """A run with its params, tags and latest metrics (``value`` None is NaN)."""

    run: Run | RunRecord
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


def in_ids(column: Any, ids: list[str], dialect: str) -> Any:
    """``column`` is one of ``ids``. PostgreSQL: ``= ANY(array)``, one statement text whatever
    the count (an ``IN`` list is rendered, and parsed by the driver, anew for every count)."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", ids, type_=ARRAY(String)))
    return column.in_(ids)


def run_views(session: Session, runs: Sequence[Run | RunRecord]) -> list[RunView]:
    """Attach params, tags and latest metrics to ``runs`` with one query in all."""
    views = {run.id: RunView(run) for run in runs}
    if not views:
        return []
    ids = list(views)
    dialect = session.get_bind().dialect.name
    p, t, m = params_table.c, tags_table.c, latest_table.c
    # Typed NULLs: PostgreSQL resolves a UNION column from its first two inputs.
    no_text, no_number, no_int = cast(null(), Text), cast(null(), Double), cast(null(), BigInteger)
    attached = union_all(
        select(literal_column("'p'"), p.run_id, p.key, p.value, no_number, no_int, no_int).where(
            in_ids(p.run_id, ids, dialect)
        ),
        select(literal_column("'t'"), t.run_id, t.key, t.value, no_number, no_int, no_int).where(
            in_ids(t.run_id, ids, dialect)
        ),
        select(literal_column("'m'"), m.run_id, m.key, no_text, m.value, m.step, m.timestamp).where(
            in_ids(m.run_id, ids, dialect)
        ),
    )
    for kind, run_id, key, text, number, step, stamp in session.connection().execute(attached).all():
        view = views[run_id]
        if kind == "m":
            view.metrics[key] = {"value": number, "step": step, "timestamp": stamp}
        elif kind == "p":
            view.params[key] = text
        else:
            view.tags[key] = text
    return [views[run.id] for run in runs]


def get_run(session: Session, project_name: str, run_id: str) -> RunView:
    return run_views(session, [load_run(session, access.get_project(session, project_name), run_id)])[0]


def create_run(
    session: Session,
    identity: Identity,
    project_name: str,
    experiment_id: int,
    spec: Mapping[str, Any],
    batch: Batch | None = None,
    *,
    platform: Platform | None = None,
    limits: Mapping[str, int] | None = None,
) -> RunView:
    """Start a run in an active experiment. ``spec`` may carry name, start_time, user,
    source_git_commit, source_entry_point and parent_run_id; ``batch`` is logged with it in
    the same transaction (one round trip for the common start-of-training call).

    The hot path of run creation: on PostgreSQL one statement checks the experiment and the
    parent and writes the run and its batch; the audit event is written at commit; no ORM
    object is made."""
    parent = spec.get("parent_run_id")
    batch = batch or Batch()
    run_id = uuid.uuid4().hex
    start_time: dt.datetime = spec.get("start_time") or utcnow()
    columns = {
        "id": run_id,
        "experiment_id": experiment_id,
        "name": spec.get("name") or f"run-{run_id[:8]}",
        "status": "running",
        "lifecycle_stage": "active",
        "start_time": start_time.astimezone(dt.UTC),
        "user": spec.get("user") or identity.username,
        "source_git_commit": spec.get("source_git_commit"),
        "source_entry_point": spec.get("source_entry_point"),
        "parent_run_id": parent,
    }
    target = insert_run(session, project_name, columns, batch)
    if target is None:
        project = access.get_project(session, project_name)  # NotFound if the project is the missing one
        raise NotFound(f"experiment {experiment_id} does not exist in project {project.name!r}")
    if target.lifecycle_stage != "active":
        raise Conflict(
            f"experiment {experiment_id} is {target.lifecycle_stage}: runs can only be created in an active experiment"
        )
    if not target.parent_found:
        raise NotFound(f"run {parent!r} does not exist in project {project_name!r}")
    run = RunRecord(
        **columns,
        project_id=target.project_id,
        artifact_prefix=artifact_prefix(target.project_id, run_id),
        end_time=None,
        deleted_at=None,
    )
    audit_change(
        session,
        identity,
        project_name,
        "run.create",
        "run",
        run_id,
        {"experiment_id": experiment_id, "name": run.name, "parent_run_id": parent},
        platform,
    )
    # Everything the run holds is in the batch: no need to read it back.
    metrics = {k: {"value": v, "step": s, "timestamp": t} for k, v, s, t in latest_points(batch.metrics).values()}
    return RunView(run, dict(batch.params), dict(batch.tags), metrics)


def update_run(
    session: Session,
    identity: Identity,
    project_name: str,
    run_id: str,
    changes: Mapping[str, Any],
    *,
    platform: Platform | None = None,
) -> RunView:
    """Change ``name``, ``status`` and ``end_time``. A terminal status without an end time
    ends the run now; setting ``running`` again reopens it (end time cleared)."""
    project = access.get_project(session, project_name)
    run = load_run(session, project, run_id)
    if run.lifecycle_stage == "deleted":
        raise Conflict(f"run {run_id!r} is deleted: restore it before changing it")
    summary: dict[str, Any] = {}
    status = changes.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput(
            f"unknown status {status!r}", errors={"status": [f"must be one of {', '.join(RUN_STATUSES)}"]}
        )
    if status is not None and status != run.status:
        summary["status"] = {"from": run.status, "to": status}
        run.status = status
        if status == "running":
            run.end_time = None
        elif "end_time" not in changes:
            run.end_time = utcnow()
    if changes.get("end_time") is not None:
        end_time: dt.datetime = changes["end_time"]
        if end_time < run.start_time:
            raise InvalidInput("end_time is before the run's start_time", errors={"end_time": ["before start_time"]})
        summary["end_time"] = end_time.isoformat()
        run.end_time = end_time
    if changes.get("name") and changes["name"] != run.name:
        summary["name"] = {"from": run.name, "to": changes["name"]}
        run.name = changes["name"]
    if summary:
        audit_change(session, identity, project, "run.update", "run", run.id, summary, platform)
    session.flush()
    return run_views(session, [run])[0]


def set_run_deleted(
    session: Session,
    identity: Identity,
    project_name: str,
    run_id: str,
    deleted: bool,
    *,
    platform: Platform | None = None,
) -> RunView:
    """Soft-delete (``deleted``) or restore a run; both idempotent."""
    project = access.get_project(session, project_name)
    run = load_run(session, project, run_id)
    stage = "deleted" if deleted else "active"
    if run.lifecycle_stage != stage:
        run.lifecycle_stage = stage
        run.deleted_at = utcnow() if deleted else None
        audit_change(
            session,
            identity,
            project,
            "run.delete" if deleted else "run.restore",
            "run",
            run.id,
            {"experiment_id": run.experiment_id},
            platform,
        )
    session.flush()
    return run_views(session, [run])[0]


def log(
    session: Session,
    project_name: str,
    run_id: str,
    batch: Batch,
    *,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> tuple[LogResult, bool]:
    """Log one batch to a run (not audited: it is data, not a change of state). Returns the
    result and whether it is a replay of an earlier call with the same idempotency key."""
    return log_batch(
        session,
        _run_state(session, project_name, run_id),
        batch,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )


def _run_state(session: Session, project_name: str, run_id: str) -> RunState:
    """The run's state, read with its project in one query; ``NotFound`` naming what is missing.

    The run's row is locked ``FOR KEY SHARE`` (PostgreSQL) until the batch commits: points
    have no foreign key to their run, so this is what keeps a purge from deleting the run
    between this read and the commit (the purge waits, then deletes the points too)."""
    r, p = runs_table.c, projects_table.c
    query = (
        select(r.id, r.status, r.lifecycle_stage)
        .select_from(runs_table.join(projects_table, p.id == r.project_id))
        .where(r.id == run_id, p.name == project_name)
        .with_for_update(read=True, key_share=True, of=runs_table)
    )
    row = session.connection().execute(query).first()
    if row is None:
        project = access.get_project(session, project_name)
        raise NotFound(f"run {run_id!r} does not exist in project {project.name!r}")
    return RunState(*row)
