"""Finding jobs whose worker died, and giving them back to the queue (or failing them)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Job
from mlplatform.core.db.session import after_commit
from mlplatform.core.jobs.runner import ACTIVE_STATES, _update

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.jobs")


def recover_orphaned_jobs(platform: Platform) -> list[str]:
    """Find jobs whose worker died and queue them again (or fail them when out of attempts).

    Orphaned: queued or running with a ``heartbeat_at`` older than ``stale_after`` (or, for rq,
    running on a worker whose Redis key is gone). Lost: queued, never claimed, older than
    ``stale_after`` and unknown to the backend (its dispatch failed, or the process holding it
    died). Also runs the backend's own clean-up (RQ's started-job registry). Safe to run from
    many workers at once. Returns the ids it re-dispatched or failed.
    """
    queue = platform.jobs
    try:
        queue._maintain_backend()
    except Exception:  # noqa: BLE001 - the table sweep below still helps
        log.exception("job backend clean-up failed")
    stale = utcnow() - dt.timedelta(seconds=queue.stale_after)
    with platform.db.read() as session:
        rows = session.execute(
            select(
                Job.id,
                Job.state,
                Job.attempts,
                Job.max_attempts,
                Job.timeout_seconds,
                Job.worker,
                Job.heartbeat_at,
                Job.created_at,
            ).where(Job.state.in_(ACTIVE_STATES))
        ).all()
    handled = []
    for row in rows:
        if row.heartbeat_at is not None:
            if row.heartbeat_at < stale or (row.state == "running" and queue._worker_gone(row.worker)):
                if _reclaim(platform, row):
                    handled.append(row.id)
        elif row.state == "queued" and row.created_at < stale and not queue._is_pending(row.id):
            log.warning("job %s was never picked up; dispatching it again", row.id)
            queue._dispatch(row.id, timeout=row.timeout_seconds, max_attempts=row.max_attempts)
            handled.append(row.id)
    return handled


def _reclaim(platform: Platform, row: Any) -> bool:
    """Take an orphaned job from its dead worker: queue it again, or fail it if out of attempts."""
    error = f"worker {row.worker} stopped during attempt {row.attempts}"
    # Matching the heartbeat we saw means its worker has not beaten since: it is ours to move.
    seen = (
        Job.id == row.id,
        Job.state == row.state,
        Job.attempts == row.attempts,
        Job.heartbeat_at <= row.heartbeat_at,
    )
    with platform.db.write() as session:
        if row.attempts >= row.max_attempts:
            done = _update(session, *seen, state="failed", error=error, worker=None, finished_at=utcnow())
        else:
            done = _update(session, *seen, state="queued", error=error, worker=None, heartbeat_at=None)
            if done:
                queue = platform.jobs
                after_commit(
                    session, lambda: queue._dispatch(row.id, timeout=row.timeout_seconds, max_attempts=row.max_attempts)
                )
    if done:
        log.warning(
            "job %s orphaned by %s: %s",
            row.id,
            row.worker,
            "failed, out of attempts" if row.attempts >= row.max_attempts else "queued again",
        )
    return done
