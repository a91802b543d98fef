"""Runs: create (with a first batch), read, update, soft delete and restore; log batches.

Every change of a run is audited in the caller's transaction; logging params, metrics and
tags is data, not a change of state, and is not audited.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.tracking import RUN_STATUSES, LatestMetric, Param, Run, RunTag
from mlplatform.core.errors import Conflict, InvalidInput
from mlplatform.core.services import access
from mlplatform.core.services.tracking import audit_change, load_experiment, load_run
from mlplatform.core.services.tracking_batch import Batch, LogResult, latest_points, log_batch

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform


@dataclass
class RunView:
    """A run with its params, tags and latest metrics (``value`` None is NaN)."""

    run: Run
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_views(session: Session, runs: list[Run]) -> list[RunView]:
    """Attach params, tags and latest metrics to ``runs`` with three queries in all."""
    views = {run.id: RunView(run) for run in runs}
    if not views:
        return []
    ids = list(views)
    for run_id, key, value in session.execute(
        select(Param.run_id, Param.key, Param.value).where(Param.run_id.in_(ids))
    ):
        views[run_id].params[key] = value
    for run_id, key, value in session.execute(
        select(RunTag.run_id, RunTag.key, RunTag.value).where(RunTag.run_id.in_(ids))
    ):
        views[run_id].tags[key] = value
    latest = select(
        LatestMetric.run_id, LatestMetric.key, LatestMetric.value, LatestMetric.step, LatestMetric.timestamp
    )
    for run_id, key, number, step, timestamp in session.execute(latest.where(LatestMetric.run_id.in_(ids))):
        views[run_id].metrics[key] = {"value": number, "step": step, "timestamp": timestamp}
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
    the same transaction (one round trip for the common start-of-training call)."""
    project = access.get_project(session, project_name)
    experiment = load_experiment(session, project, experiment_id)
    if experiment.lifecycle_stage != "active":
        raise Conflict(
            f"experiment {experiment_id} is {experiment.lifecycle_stage}: runs can only be created in an active experiment"
        )
    parent = spec.get("parent_run_id")
    if parent is not None:
        load_run(session, project, parent)  # the parent must exist in this project
    run_id = uuid.uuid4().hex
    run = Run(
        id=run_id,
        project_id=project.id,
        experiment_id=experiment.id,
        name=spec.get("name") or f"run-{run_id[:8]}",
        status="running",
        lifecycle_stage="active",
        start_time=spec.get("start_time") or utcnow(),
        user=spec.get("user") or identity.username,
        source_git_commit=spec.get("source_git_commit"),
        source_entry_point=spec.get("source_entry_point"),
        parent_run_id=parent,
        artifact_prefix=f"projects/{project.id}/runs/{run_id}",
    )
    session.add(run)
    session.flush()
    audit_change(
        session,
        identity,
        project,
        "run.create",
        "run",
        run_id,
        {"experiment_id": experiment.id, "name": run.name, "parent_run_id": parent},
        platform,
    )
    view = RunView(run)
    if batch is not None and not batch.empty:
        log_batch(session, run, batch, new_run=True)
        # Everything the run holds is in the batch: no need to read it back.
        view.params, view.tags = dict(batch.params), dict(batch.tags)
        view.metrics = {
            k: {"value": v, "step": s, "timestamp": t} for k, v, s, t in latest_points(batch.metrics).values()
        }
    return view


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
    project = access.get_project(session, project_name)
    run = load_run(session, project, run_id)
    return log_batch(session, run, batch, idempotency_key=idempotency_key, request_hash=request_hash)
