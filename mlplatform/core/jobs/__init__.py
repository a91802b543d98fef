"""The job queue: one interface, two backends, the ``jobs`` table as the record.

- ``inline`` runs jobs on a thread pool in the server process (the embedded default);
- ``rq`` puts job ids on a Redis queue; ``mlplatform worker`` (:func:`run_worker`) runs them.

Contract for callers: ``platform.jobs.enqueue(session, name, args)`` inserts a ``Job`` row in the
caller's transaction and hands its id to the backend only after that transaction commits; a
rollback leaves no row and runs nothing. Only the id travels; :func:`run_job` reads the rest.
The ``rq`` backend sends fresh ids to Redis from a background thread, so the caller does not
wait for Redis; an id lost there (process gone, Redis down) is dispatched again by recovery.

Contract for handlers: a job name maps to ``"module:function"`` in :data:`HANDLERS` (or in
``jobs.options.handlers``), resolved on first use and called as ``fn(platform, **args)``. A
handler must be safe to run twice: a worker may die after the work but before the row says so.
A handler owns its own transactions (``platform.db.write()``); one whose last act is a write
may call :func:`succeed_in` in it, so the job's end commits with that write.

Every state change is its own short transaction and a compare-and-set on the row, so two
deliveries of one id, or a recovered job whose old worker was only slow, never both record a
result. States: queued -> running -> succeeded | failed; between retries a job is queued again.
A worker that owns a job refreshes ``heartbeat_at``; :func:`recover_orphaned_jobs` gives a job
whose heartbeat went stale (its worker died) back to the queue, or fails it when it is out of
attempts, without waiting for RQ's own ten-minute maintenance.

Modules, each to read in one sitting:

- :mod:`.queue`: the ``JobQueue`` interface, its options, handler resolution, :func:`build_job_queue`;
- :mod:`.runner`: :func:`run_job`, claiming a row, the heartbeat lease, attempt deadlines;
- :mod:`.recovery`: :func:`recover_orphaned_jobs`;
- :mod:`.inline`: the ``inline`` backend;
- :mod:`.rq`: the ``rq`` backend, the function RQ runs in a worker, :func:`run_worker`.
"""

from mlplatform.core.jobs.inline import InlineJobQueue
from mlplatform.core.jobs.queue import HANDLERS, HandlerRef, InlineOptions, JobQueue, RQOptions, build_job_queue
from mlplatform.core.jobs.recovery import recover_orphaned_jobs
from mlplatform.core.jobs.rq import RQJobQueue, run_worker
from mlplatform.core.jobs.rq import _perform_rq_job as _perform_rq_job  # RQ imports it by this name
from mlplatform.core.jobs.runner import ACTIVE_STATES, JobTimeout, run_job, succeed_in

__all__ = [
    "ACTIVE_STATES",
    "HANDLERS",
    "HandlerRef",
    "InlineJobQueue",
    "InlineOptions",
    "JobQueue",
    "JobTimeout",
    "RQJobQueue",
    "RQOptions",
    "build_job_queue",
    "recover_orphaned_jobs",
    "run_job",
    "run_worker",
    "succeed_in",
]
