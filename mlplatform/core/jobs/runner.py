"""Running one job: claim its row, hold a heartbeat lease, run attempts under a deadline, record the end.

Every state change is its own short transaction and a compare-and-set on the row (:func:`_cas`).
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Job
from mlplatform.core.db.session import after_commit

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.jobs")

ACTIVE_STATES = ("queued", "running")


class JobTimeout(Exception):
    """An attempt ran longer than the job's ``timeout``; it counts as a failed attempt."""


@dataclass(frozen=True)
class _Attempt:
    job_id: str
    name: str
    args: dict[str, Any]
    number: int
    max_attempts: int
    timeout: int


@dataclass
class _Running:
    """The attempt a handler runs in; ``succeeded`` once :func:`succeed_in` committed its end."""

    job_id: str
    worker: str
    number: int
    succeeded: bool = False

    def owned(self) -> tuple[ColumnElement[bool], ...]:
        return (Job.id == self.job_id, Job.state == "running", Job.worker == self.worker, Job.attempts == self.number)


_running: contextvars.ContextVar[_Running | None] = contextvars.ContextVar("mlplatform_job", default=None)


def succeed_in(session: Session) -> None:
    """Record the running job's success in ``session``'s transaction, the handler's last write.

    One transaction instead of two: the job ends when the handler's result commits, and the
    runner then records nothing more. A compare-and-set like every other state change, so it
    holds only while this attempt still owns the row; if it does not, or the transaction rolls
    back, the runner records the end itself as usual. Outside a job (a handler called directly)
    it does nothing. Call it only when nothing after that transaction can fail.
    """
    running = _running.get()
    if running is None:
        return
    if _update(session, *running.owned(), state="succeeded", error=None, finished_at=utcnow()):
        after_commit(session, lambda: setattr(running, "succeeded", True))


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
    ended: str | None = None  # the end this call recorded, if its compare-and-set held
    with _Lease(platform, job_id, worker, attempt.number, queue.heartbeat_interval) as lease:
        while True:
            running = _Running(job_id, worker, attempt.number)
            error, permanent = _perform(platform, attempt, running)
            owned = running.owned()
            if error is None:
                if running.succeeded or _cas(platform, *owned, state="succeeded", error=None, finished_at=utcnow()):
                    ended = "succeeded"
                break
            if permanent or attempt.number >= attempt.max_attempts:
                if _cas(platform, *owned, state="failed", error=error, finished_at=utcnow()):
                    ended = "failed"
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
    return ended or _state(platform, job_id)


def _perform(platform: Platform, attempt: _Attempt, running: _Running) -> tuple[str | None, bool]:
    """Run one attempt; return ``(error text or None, whether retrying is pointless)``."""
    try:
        handler = platform.jobs.resolve(attempt.name)
    except KeyError:
        return f"unknown job {attempt.name!r} in this process", True
    except Exception as exc:  # noqa: BLE001 - an import error fails the attempt, not the worker
        log.exception("job %s: cannot load the handler for %r", attempt.job_id, attempt.name)
        return f"{type(exc).__name__}: {exc}", False

    def call() -> None:
        token = _running.set(running)
        try:
            handler(platform, **attempt.args)
        finally:
            _running.reset(token)

    try:
        _call_with_deadline(call, attempt.timeout)
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
        row = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == "queued", *owner)
            .values(
                state="running",
                attempts=Job.attempts + 1,
                worker=worker,
                started_at=now,
                heartbeat_at=now,
                finished_at=None,
            )
            .returning(Job.name, Job.args, Job.attempts, Job.max_attempts, Job.timeout_seconds)
            .execution_options(synchronize_session=False)
        ).first()
    if row is None:
        return None
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
