"""The ``rq`` backend: job ids go on a Redis queue; ``mlplatform worker`` (:func:`run_worker`) runs them.

``redis`` and ``rq`` are imported only when this backend is used.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from mlplatform.core.errors import ConfigError
from mlplatform.core.jobs.queue import HandlerRef, JobQueue, RQOptions
from mlplatform.core.jobs.recovery import recover_orphaned_jobs
from mlplatform.core.jobs.runner import run_job

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue

    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.jobs")

#: What RQ stores with each job and imports in the worker: :func:`_perform_rq_job` by the name the
#: package re-exports it under. It is data in Redis, shared by every version of the platform that
#: talks to the queue, so it stays put when this module moves (tests/jobs/test_rq.py checks it).
RQ_JOB_FUNCTION = "mlplatform.core.jobs._perform_rq_job"

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
        # Fresh ids reach Redis from one background thread, so a request that enqueues does
        # not wait for RQ's round trips. The row is committed first: an id lost with this
        # process is dispatched again by recovery (queued, never claimed, unknown to RQ).
        self._outbox: queue.SimpleQueue[tuple[str, int, int] | None] = queue.SimpleQueue()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._sender: threading.Thread | None = None

    @property
    def worker_name(self) -> str:
        return f"rq:{self._worker_name}" if self._worker_name else f"rq-caller:{socket.gethostname()}:{os.getpid()}"

    def ping(self) -> None:
        self.redis.ping()

    def close(self) -> None:
        self.wait_dispatched(10)
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(10)
        self.redis.close()

    def wait_dispatched(self, timeout: float) -> bool:
        """Wait until every freshly enqueued id is in Redis; False if some still are not after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _dispatch(self, job_id: str, *, timeout: int, max_attempts: int, fresh: bool = False) -> None:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job as RQJob

        if fresh:
            with self._idle:
                self._in_flight += 1
                if self._sender is None or not self._sender.is_alive():
                    self._sender = threading.Thread(target=self._send, name="mlplatform-rq-dispatch", daemon=True)
                    self._sender.start()
            self._outbox.put((job_id, timeout, max_attempts))
            return
        try:
            # A recovered job still sits in RQ's started registry under this id: drop that copy
            # so RQ's own clean-up cannot later mistake the new run for an abandoned one.
            RQJob.fetch(job_id, connection=self.redis).delete()
        except NoSuchJobError:
            pass
        self._put_on_queue((job_id, timeout, max_attempts))

    def _send(self) -> None:
        while (item := self._outbox.get()) is not None:
            batch = [item]
            stopping = False
            while True:  # whatever else is waiting goes in the same round trip
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            try:
                self._put_on_queue(*batch)
            except Exception:  # noqa: BLE001 - the rows stay queued; recovery dispatches them again
                log.exception("jobs %s could not be put on the RQ queue; recovery will retry", [b[0] for b in batch])
            finally:
                with self._idle:
                    self._in_flight -= len(batch)
                    self._idle.notify_all()
            if stopping:
                return

    def _put_on_queue(self, *jobs: tuple[str, int, int]) -> None:
        """Each ``(job id, timeout, max attempts)`` as an RQ job, all in one MULTI/EXEC round trip."""
        with self.redis.pipeline() as pipe:
            for job_id, timeout, max_attempts in jobs:
                retries = sum(self.backoff(n) for n in range(1, max_attempts))
                self.rq_queue.enqueue_call(
                    RQ_JOB_FUNCTION,
                    args=(job_id,),
                    job_id=job_id,
                    description=f"mlplatform job {job_id}",
                    # The attempts enforce their own timeouts; this only stops a worker stuck outside them.
                    timeout=int(max_attempts * timeout + retries + 60),
                    result_ttl=600,
                    failure_ttl=7 * 24 * 3600,
                    pipeline=pipe,
                )
            pipe.execute()

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
