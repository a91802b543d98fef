"""The job queue: one interface, two backends, the ``jobs`` table as the record.

- ``inline`` runs jobs on a thread pool in the server process (the embedded default);
- ``rq`` puts job ids on a Redis queue; ``mlplatform worker`` (:func:`run_worker`) runs them.

Contract for callers: ``platform.jobs.enqueue(session, name, args)`` inserts a ``Job`` row in the
caller's transaction and hands its id to the backend only after that transaction commits; a
rollback leaves no row and runs nothing. Only the id travels; :func:`run_job` reads the rest.

Contract for handlers: a job name maps to ``"module:function"`` in :data:`HANDLERS` (or in
``jobs.options.handlers``), resolved on first use and called as ``fn(platform, **args)``. A
handler must be safe to run twice: a worker may die after the work but before the row says so.
A handler owns its own transactions (``platform.db.write()``).

Every state change is its own short transaction and a compare-and-set on the row, so two
deliveries of one id, or a recovered job whose old worker was only slow, never both record a
result. States: queued -> running -> succeeded | failed; between retries a job is queued again.
A worker that owns a job refreshes ``heartbeat_at``; :func:`recover_orphaned_jobs` gives a job
whose heartbeat went stale (its worker died) back to the queue, or fails it when it is out of
attempts, without waiting for RQ's own ten-minute maintenance.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Job
from mlplatform.core.db.session import after_commit
from mlplatform.core.errors import ConfigError

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue

    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.jobs")

#: Job name -> ``"module:function"``. Features add their jobs here; nothing registers on import.
HANDLERS: dict[str, str] = {}

ACTIVE_STATES = ("queued", "running")
HandlerRef = str | Callable[..., Any]


class JobTimeout(Exception):
    """An attempt ran longer than the job's ``timeout``; it counts as a failed attempt."""


# --- options ------------------------------------------------------------------------------


class _CommonOptions(Schema):
    class Meta:
        unknown = RAISE

    heartbeat_interval = fields.Float(
        load_default=10.0,
        validate=validate.Range(min=0.05),
        metadata={"description": "seconds between a running job's heartbeats"},
    )
    stale_after = fields.Float(
        load_default=60.0,
        validate=validate.Range(min=0.1),
        metadata={"description": "a job whose heartbeat is older than this is orphaned and recovered"},
    )
    retry_backoff = fields.Float(
        load_default=2.0,
        validate=validate.Range(min=0),
        metadata={"description": "seconds before the first retry; doubles with each attempt"},
    )
    retry_backoff_max = fields.Float(load_default=60.0, validate=validate.Range(min=0))
    handlers = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=fields.String(validate=validate.Regexp(r"^[\w.]+:\w+$", error="must be 'module:function'")),
        load_default=dict,
        metadata={"description": "extra job handlers, name -> 'module:function' (in-house jobs)"},
    )

    @validates_schema
    def _stale_after_heartbeats(self, data: dict[str, Any], **_: Any) -> None:
        if data["stale_after"] <= 2 * data["heartbeat_interval"]:
            raise ValidationError("must be more than twice heartbeat_interval", "stale_after")


class InlineOptions(_CommonOptions):
    workers = fields.Integer(
        load_default=4,
        validate=validate.Range(min=1, max=256),
        metadata={"description": "threads that run jobs in the server process"},
    )


class RQOptions(_CommonOptions):
    url = fields.String(
        load_default="redis://127.0.0.1:6379/0",
        validate=validate.Regexp(r"^(redis|rediss|unix)://", error="must be a redis://, rediss:// or unix:// URL"),
        metadata={"secret": True},
    )
    queue = fields.String(load_default="mlplatform", validate=validate.Regexp(r"^[\w.:-]{1,100}$"))
    recovery_interval = fields.Float(
        load_default=15.0,
        validate=validate.Range(min=0.05),
        metadata={"description": "seconds between a worker's sweeps for orphaned jobs"},
    )


# --- the interface ------------------------------------------------------------------------


class JobQueue(ABC):
    """What the platform enqueues on. Subclasses implement dispatch and the liveness probes."""

    name: ClassVar[str]
    Options: ClassVar[type[Schema]]

    def __init__(
        self, platform: Platform, options: Mapping[str, Any], handlers: Mapping[str, HandlerRef] | None = None
    ) -> None:
        self.platform = platform
        self.heartbeat_interval: float = options["heartbeat_interval"]
        self.stale_after: float = options["stale_after"]
        self.retry_backoff: float = options["retry_backoff"]
        self.retry_backoff_max: float = options["retry_backoff_max"]
        #: This queue's job table: :data:`HANDLERS`, then ``options.handlers``, then ``handlers``.
        self.handlers: dict[str, HandlerRef] = {**HANDLERS, **options["handlers"], **(handlers or {})}

    def enqueue(
        self,
        session: Session,
        name: str,
        args: dict[str, Any],
        *,
        project: str | None = None,
        max_attempts: int = 3,
        timeout: int = 600,
    ) -> str:
        """Add a queued ``Job`` row in ``session``; dispatch it once the transaction commits.

        Returns the job id. Raises ``ValueError`` for an unknown name or bad limits. ``args``
        must be JSON: ids and small values, never objects (the handler reloads what it needs).
        """
        if name not in self.handlers:
            raise ValueError(f"unknown job {name!r}; known jobs: {', '.join(sorted(self.handlers)) or 'none'}")
        if max_attempts < 1 or timeout < 1:
            raise ValueError("max_attempts and timeout must be at least 1")
        job_id = str(uuid.uuid4())
        session.add(
            Job(
                id=job_id,
                name=name,
                args=dict(args),
                state="queued",
                attempts=0,
                max_attempts=max_attempts,
                timeout_seconds=timeout,
                project=project,
            )
        )
        after_commit(session, lambda: self._dispatch(job_id, timeout=timeout, max_attempts=max_attempts))
        return job_id

    def recover(self) -> list[str]:
        """Re-dispatch or fail orphaned jobs; see :func:`recover_orphaned_jobs`."""
        return recover_orphaned_jobs(self.platform)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.retry_backoff * 2 ** (attempt - 1), self.retry_backoff_max))

    def resolve(self, name: str) -> Callable[..., Any]:
        ref = self.handlers[name]
        return ref if callable(ref) else _import_handler(ref)

    @property
    @abstractmethod
    def worker_name(self) -> str:
        """Written to ``Job.worker`` by jobs this process runs."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the backend cannot take jobs (``/ready``)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _dispatch(self, job_id: str, *, timeout: int, max_attempts: int) -> None:
        """Hand a committed, queued job id to the backend (replacing any stale copy of it)."""

    @abstractmethod
    def _is_pending(self, job_id: str) -> bool:
        """Whether the backend still holds ``job_id`` (waiting or being picked up)."""

    @abstractmethod
    def _worker_gone(self, worker: str | None) -> bool:
        """Whether ``worker`` is known to be dead even though its heartbeat is not stale yet."""

    @abstractmethod
    def _maintain_backend(self) -> None:
        """Backend-side clean-up run at the start of each recovery sweep."""


@cache
def _import_handler(ref: str) -> Callable[..., Any]:
    module, _, function = ref.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def build_job_queue(
    platform: Platform, config: Mapping[str, Any], *, handlers: Mapping[str, HandlerRef] | None = None
) -> JobQueue:
    """Instantiate the backend named by ``config["backend"]`` with validated ``config["options"]``.

    Raises ``ConfigError`` with the dotted key (``jobs.options.workers``) for a bad option.
    """
    from mlplatform.core.config import validate_schema

    backends: dict[str, type[JobQueue]] = {"inline": InlineJobQueue, "rq": RQJobQueue}
    cls = backends.get(config["backend"])
    if cls is None:
        raise ConfigError("jobs.backend", f"unknown job backend {config['backend']!r}; available: inline, rq")
    options = validate_schema(cls.Options(), config.get("options") or {}, "jobs.options")
    return cls(platform, options, handlers)


# --- running a job ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attempt:
    job_id: str
    name: str
    args: dict[str, Any]
    number: int
    max_attempts: int
    timeout: int


def run_job(platform: Platform, job_id: str, *, worker: str | None = None) -> str:
    """Run job ``job_id`` with retries; return its state when this call lets go of it.

    Claims the row (queued -> running, attempts + 1) and runs the handler under the job's
    timeout while a heartbeat keeps ``heartbeat_at`` fresh. A failed attempt goes back to
    queued and is retried here after a backoff while attempts remain, else the job fails with
    the error. A job that is not queued (already done, or owned by a live worker) is left
    alone, so running an id twice is a no-op. Raises only if the database is unreachable.
    """
    queue = platform.jobs
    worker = worker or queue.worker_name
    attempt = _claim(platform, job_id, worker, after=None)
    if attempt is None:
        return _state(platform, job_id)
    with _Lease(platform, job_id, worker, attempt.number, queue.heartbeat_interval) as lease:
        while True:
            error, permanent = _perform(platform, attempt)
            owned = (Job.id == job_id, Job.state == "running", Job.worker == worker, Job.attempts == attempt.number)
            if error is None:
                _cas(platform, *owned, state="succeeded", error=None, finished_at=utcnow())
                break
            if permanent or attempt.number >= attempt.max_attempts:
                _cas(platform, *owned, state="failed", error=error, finished_at=utcnow())
                break
            if not _cas(platform, *owned, state="queued", error=error):
                break
            log.info("job %s (%s) attempt %d failed, retrying: %s", job_id, attempt.name, attempt.number, error)
            if lease.lost.wait(queue.backoff(attempt.number)):
                break
            with lease.lock:  # the heartbeat must not see the new attempt number half-set
                next_attempt = _claim(platform, job_id, worker, after=attempt.number)
                if next_attempt is None:
                    break
                attempt = next_attempt
                lease.attempt = attempt.number
    if lease.lost.is_set():
        log.warning("job %s was taken from %s (stale heartbeat); its result here is discarded", job_id, worker)
    return _state(platform, job_id)


def _perform(platform: Platform, attempt: _Attempt) -> tuple[str | None, bool]:
    """Run one attempt; return ``(error text or None, whether retrying is pointless)``."""
    try:
        handler = platform.jobs.resolve(attempt.name)
    except KeyError:
        return f"unknown job {attempt.name!r} in this process", True
    except Exception as exc:  # noqa: BLE001 - an import error fails the attempt, not the worker
        log.exception("job %s: cannot load the handler for %r", attempt.job_id, attempt.name)
        return f"{type(exc).__name__}: {exc}", False
    try:
        _call_with_deadline(lambda: handler(platform, **attempt.args), attempt.timeout)
    except Exception as exc:  # noqa: BLE001 - a handler's failure is the job's, recorded on the row
        if not isinstance(exc, JobTimeout):
            log.exception("job %s (%s) attempt %d raised", attempt.job_id, attempt.name, attempt.number)
        return f"{type(exc).__name__}: {exc}", False
    return None, False


def _claim(platform: Platform, job_id: str, worker: str, *, after: int | None) -> _Attempt | None:
    """Take a queued job: a fresh one (``after`` None), or this worker's own retry of ``after``."""
    owner = (Job.worker.is_(None),) if after is None else (Job.worker == worker, Job.attempts == after)
    now = utcnow()
    with platform.db.write() as session:
        claimed = _update(
            session,
            Job.id == job_id,
            Job.state == "queued",
            *owner,
            state="running",
            attempts=Job.attempts + 1,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
        )
        if not claimed:
            return None
        row = session.execute(
            select(Job.name, Job.args, Job.attempts, Job.max_attempts, Job.timeout_seconds).where(Job.id == job_id)
        ).one()
    return _Attempt(job_id, row.name, row.args or {}, row.attempts, row.max_attempts, row.timeout_seconds)


def _state(platform: Platform, job_id: str) -> str:
    with platform.db.read() as session:
        state = session.scalar(select(Job.state).where(Job.id == job_id))
    return state or "missing"


def _update(session: Session, *where: ColumnElement[bool], **values: Any) -> bool:
    result = session.execute(update(Job).where(*where).values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


def _cas(platform: Platform, *where: ColumnElement[bool], **values: Any) -> bool:
    """Update the one row matching ``where`` in its own transaction; False if it no longer matches."""
    with platform.db.write() as session:
        return _update(session, *where, **values)


class _Lease:
    """Refreshes ``heartbeat_at`` while this worker owns a job; sets ``lost`` if the row moved on."""

    def __init__(self, platform: Platform, job_id: str, worker: str, attempt: int, interval: float) -> None:
        self.platform, self.job_id, self.worker, self.interval = platform, job_id, worker, interval
        self.attempt = attempt
        self.lock = threading.Lock()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"job-heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.lock:
                    kept = _cas(
                        self.platform,
                        Job.id == self.job_id,
                        Job.worker == self.worker,
                        Job.attempts == self.attempt,
                        Job.state.in_(ACTIVE_STATES),
                        heartbeat_at=utcnow(),
                    )
            except Exception:  # noqa: BLE001 - a missed beat is survivable; the next one may work
                log.exception("job %s: heartbeat failed", self.job_id)
                continue
            if not kept and not self._stop.is_set():
                self.lost.set()
                return


def _call_with_deadline(fn: Callable[[], Any], timeout: float) -> None:
    """Call ``fn``; raise :class:`JobTimeout` if it has not returned after ``timeout`` seconds.

    In the main thread (an rq worker) SIGALRM interrupts the handler. A pool thread cannot be
    interrupted: there the handler runs in a daemon thread that is abandoned at the deadline,
    and whatever it does afterwards is not recorded.
    """
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        _call_with_alarm(fn, timeout)
    else:
        _call_in_thread(fn, timeout)


def _call_with_alarm(fn: Callable[[], Any], timeout: float) -> None:
    armed = True

    def expire(_signum: int, _frame: Any) -> None:
        if armed:
            raise JobTimeout(f"timed out after {timeout:g}s")

    previous_handler = signal.signal(signal.SIGALRM, expire)
    # An outer alarm (rq's job timeout, pytest-timeout) is paused and re-armed afterwards.
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, timeout)
    started = time.monotonic()
    try:
        fn()
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler if previous_handler is not None else signal.SIG_DFL)
        if previous_delay:
            signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - started), 0.001))


def _call_in_thread(fn: Callable[[], Any], timeout: float) -> None:
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append(exc)

    thread = threading.Thread(target=target, name="job-handler", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise JobTimeout(f"timed out after {timeout:g}s")
    if outcome[0] is not None:
        raise outcome[0]


# --- recovery -----------------------------------------------------------------------------


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


# --- inline backend -----------------------------------------------------------------------


class InlineJobQueue(JobQueue):
    """Runs jobs on a thread pool in this process. Jobs waiting here die with the process;
    ``recover()`` at start-up (``mlplatform serve``) picks them up again from the table."""

    name = "inline"
    Options = InlineOptions

    def __init__(
        self, platform: Platform, options: Mapping[str, Any], handlers: Mapping[str, HandlerRef] | None = None
    ) -> None:
        super().__init__(platform, options, handlers)
        self._pool = ThreadPoolExecutor(max_workers=options["workers"], thread_name_prefix="mlplatform-job")
        self._pending: set[str] = set()
        self._idle = threading.Condition()
        self._closed = False

    @property
    def worker_name(self) -> str:
        return f"inline:{socket.gethostname()}:{os.getpid()}"

    def ping(self) -> None:
        if self._closed:
            raise RuntimeError("the inline job queue is closed")

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is waiting or running here; False if still busy after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        """Stop taking jobs, drop the ones still waiting (they stay queued), finish running ones."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _dispatch(self, job_id: str, *, timeout: int, max_attempts: int) -> None:
        with self._idle:
            if job_id in self._pending:
                return
            self._pending.add(job_id)
        try:
            self._pool.submit(self._run, job_id).add_done_callback(lambda _: self._settle(job_id))
        except BaseException:
            self._settle(job_id)
            raise

    def _is_pending(self, job_id: str) -> bool:
        with self._idle:
            return job_id in self._pending

    def _worker_gone(self, worker: str | None) -> bool:
        return False  # threads leave no trace to check; only the heartbeat tells

    def _maintain_backend(self) -> None:
        pass  # nothing outside the jobs table

    def _run(self, job_id: str) -> None:
        try:
            run_job(self.platform, job_id, worker=self.worker_name)
        except Exception:  # noqa: BLE001 - the row stays active and recovery retries it
            log.exception("job %s could not be run", job_id)

    def _settle(self, job_id: str) -> None:
        with self._idle:
            self._pending.discard(job_id)
            self._idle.notify_all()


# --- rq backend ---------------------------------------------------------------------------

# The Platform of this worker process, set by run_worker; RQ calls _perform_rq_job by import path.
_worker_platform: Platform | None = None


class RQJobQueue(JobQueue):
    """Puts job ids on an RQ queue in Redis; ``mlplatform worker`` processes run them."""

    name = "rq"
    Options = RQOptions

    def __init__(
        self, platform: Platform, options: Mapping[str, Any], handlers: Mapping[str, HandlerRef] | None = None
    ) -> None:
        super().__init__(platform, options, handlers)
        from redis import Redis
        from rq import Queue

        try:
            self.redis: Redis = Redis.from_url(options["url"], socket_connect_timeout=5, socket_timeout=30)
        except ValueError as exc:
            raise ConfigError("jobs.options.url", str(exc)) from None
        self.url: str = options["url"]
        self.rq_queue: Queue = Queue(options["queue"], connection=self.redis)
        self.recovery_interval: float = options["recovery_interval"]
        self._worker_name: str | None = None

    @property
    def worker_name(self) -> str:
        return f"rq:{self._worker_name}" if self._worker_name else f"rq-caller:{socket.gethostname()}:{os.getpid()}"

    def ping(self) -> None:
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()

    def _dispatch(self, job_id: str, *, timeout: int, max_attempts: int) -> None:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job as RQJob

        try:
            # A recovered job still sits in RQ's started registry under this id: drop that copy
            # so RQ's own clean-up cannot later mistake the new run for an abandoned one.
            RQJob.fetch(job_id, connection=self.redis).delete()
        except NoSuchJobError:
            pass
        retries = sum(self.backoff(n) for n in range(1, max_attempts))
        self.rq_queue.enqueue_call(
            _perform_rq_job,
            args=(job_id,),
            job_id=job_id,
            description=f"mlplatform job {job_id}",
            # The attempts enforce their own timeouts; this only stops a worker stuck outside them.
            timeout=int(max_attempts * timeout + retries + 60),
            result_ttl=600,
            failure_ttl=7 * 24 * 3600,
        )

    def _is_pending(self, job_id: str) -> bool:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job as RQJob
        from rq.job import JobStatus

        try:
            status = RQJob.fetch(job_id, connection=self.redis).get_status()
        except NoSuchJobError:
            return False
        return status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)

    def _worker_gone(self, worker: str | None) -> bool:
        from rq import Worker

        if not worker or not worker.startswith("rq:"):
            return False
        return not self.redis.exists(Worker.redis_worker_namespace_prefix + worker[len("rq:") :])

    def _maintain_backend(self) -> None:
        # One sweep per interval across all workers; RQ's clean-up is not safe to run concurrently.
        lock = f"mlplatform:jobs:recovery:{self.rq_queue.name}"
        if self.redis.set(lock, self.worker_name, nx=True, px=max(int(self.recovery_interval * 1000), 100)):
            self.rq_queue.started_job_registry.cleanup()


def _perform_rq_job(job_id: str) -> str:
    """What RQ runs: :func:`run_job` on this worker process's Platform."""
    from rq import get_current_job

    platform = _worker_platform or _platform_from_environment()
    current = get_current_job()
    worker = f"rq:{current.worker_name}" if current is not None and current.worker_name else None
    return run_job(platform, job_id, worker=worker)


@cache
def _platform_from_environment() -> Platform:
    """For RQ workers not started by ``mlplatform worker``: build from ``MLPLATFORM_CONFIG``."""
    from mlplatform.core.platform import Platform

    return Platform.from_file()


def run_worker(platform: Platform, *, burst: bool = False, name: str | None = None) -> None:
    """Run an RQ worker on the platform's queue until stopped (or, with ``burst``, until empty).

    Jobs run in this process (RQ's ``SimpleWorker``): no fork under open database pools, and
    killing the worker kills its job, which recovery then re-runs elsewhere. The worker sweeps
    for orphaned jobs at start and every ``recovery_interval`` seconds in a background thread.
    """
    from redis import Redis
    from rq import Queue, SimpleWorker

    global _worker_platform
    queue = platform.jobs
    if not isinstance(queue, RQJobQueue):
        raise ConfigError(
            "jobs.backend", "`mlplatform worker` serves the rq backend; with 'inline' the server runs jobs itself"
        )
    # A connection of its own: RQ raises its socket timeout above the blocking dequeue's wait.
    connection = Redis.from_url(queue.url, socket_connect_timeout=5)
    worker = SimpleWorker(
        [Queue(queue.rq_queue.name, connection=connection)],
        connection=connection,
        name=name or f"{socket.gethostname()}.{os.getpid()}",
    )
    queue._worker_name = worker.name
    _worker_platform = platform
    level = platform.config["logging"]["level"]
    _log_to_stderr(level)
    stop = threading.Event()
    sweeper = threading.Thread(
        target=_sweep, args=(platform, queue.recovery_interval, stop), name="job-recovery", daemon=True
    )
    try:
        _sweep_once(platform)
        if not burst:
            sweeper.start()
        worker.work(burst=burst, logging_level=level)
    finally:
        stop.set()
        _worker_platform = None
        connection.close()


def _log_to_stderr(level: str) -> None:
    """Show this worker's job and recovery messages next to RQ's (unless logging is set up)."""
    logger = logging.getLogger("mlplatform")
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)


def _sweep(platform: Platform, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        _sweep_once(platform)


def _sweep_once(platform: Platform) -> None:
    try:
        recovered = recover_orphaned_jobs(platform)
    except Exception:  # noqa: BLE001 - the next sweep tries again
        log.exception("recovering orphaned jobs failed")
        return
    if recovered:
        log.info("recovered %d orphaned job(s): %s", len(recovered), ", ".join(recovered))
