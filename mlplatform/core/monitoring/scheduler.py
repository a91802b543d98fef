"""``close_due_windows``: enqueue the windows that ended and have not been computed.

The worker (or ``mlplatform monitor close-windows`` from cron) calls it periodically. A
window is due once it ended ``monitoring.close_delay`` ago (captured records are flushed in
batches, so they land a little after their timestamp). For every deployment that is not
retired it looks at most ``MAX_CATCH_UP`` windows back, and no further than the window the
deployment was created in, and skips windows already computed or already queued.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.models import Job
from mlplatform.core.db.monitoring import MonitorWindow
from mlplatform.core.monitoring.window_job import JOB
from mlplatform.core.monitoring.windows import as_utc, parse_length, window_start

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

MAX_CATCH_UP = 288  # a day of 5-minute windows


def close_due_windows(platform: Platform, now: dt.datetime | None = None) -> list[tuple[int, dt.datetime]]:
    """Enqueue every due window; returns ``(deployment_id, window_start)`` of those enqueued."""
    config = platform.config["monitoring"]
    length = parse_length(config["window"])
    cutoff = as_utc(now or utcnow()) - parse_length(config["close_delay"])
    last = window_start(cutoff, length) - length  # the latest window with end <= cutoff
    enqueued: list[tuple[int, dt.datetime]] = []
    with platform.db.write() as session:
        queued = active_windows(session)
        deployments = session.execute(
            select(Deployment.id, Deployment.created_at, Deployment.environment).where(Deployment.status != "retired")
        ).all()
        for deployment_id, created_at, _env in deployments:
            first = max(window_start(as_utc(created_at), length), last - (MAX_CATCH_UP - 1) * length)
            if first > last:
                continue
            done = set(
                session.scalars(
                    select(MonitorWindow.window_start).where(
                        MonitorWindow.deployment_id == deployment_id,
                        MonitorWindow.window_start >= first,
                        MonitorWindow.window_start <= last,
                    )
                )
            )
            done = {as_utc(d) for d in done}
            start = first
            while start <= last:
                if start not in done and (deployment_id, start) not in queued:
                    enqueue_window(session, platform, deployment_id, start)
                    enqueued.append((deployment_id, start))
                start += length
    return enqueued


def enqueue_window(
    session: Session, platform: Platform, deployment_id: int, start: dt.datetime, project: str | None = None
) -> str:
    """Queue ``compute_monitor_window`` for one window (after ``session`` commits)."""
    return platform.jobs.enqueue(
        session, JOB, {"deployment_id": deployment_id, "window_start": start.isoformat()}, project=project, timeout=900
    )


def active_windows(session: Session) -> set[tuple[int, dt.datetime]]:
    """Windows with a queued or running computation."""
    args = session.scalars(select(Job.args).where(Job.name == JOB, Job.state.in_(("queued", "running"))))
    return {(a["deployment_id"], as_utc(dt.datetime.fromisoformat(a["window_start"]))) for a in args}
