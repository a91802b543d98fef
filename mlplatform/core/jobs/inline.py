"""The ``inline`` backend: jobs run on a thread pool in the server process (the embedded default).

The jobs share the server's CPU and, through the GIL, its interpreter: a job that starts while
a request is being served makes that request wait. So a job starts only once this process has
served no request for ``quiet_before_start`` seconds, or after ``max_start_delay`` at most
(sustained traffic delays jobs by that much, never indefinitely). A running job is not paused.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mlplatform.core.jobs.queue import HandlerRef, InlineOptions, JobQueue
from mlplatform.core.jobs.runner import run_job

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.jobs")


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
        self.quiet_before_start: float = options["quiet_before_start"]
        self.max_start_delay: float = options["max_start_delay"]
        self._requests = threading.Condition()
        self._requests_in_flight = 0
        self._last_request_at = 0.0  # monotonic time the last request finished

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
        with self._requests:
            self._requests.notify_all()  # jobs waiting for a pause in requests give up: they stay queued
        self._pool.shutdown(wait=True, cancel_futures=True)

    def request_started(self) -> None:
        with self._requests:
            self._requests_in_flight += 1

    def request_finished(self) -> None:
        with self._requests:
            self._requests_in_flight -= 1
            self._last_request_at = time.monotonic()
            if self._requests_in_flight == 0:
                self._requests.notify_all()

    def _wait_for_quiet(self) -> bool:
        """True once no request has been served here for ``quiet_before_start`` seconds, or
        ``max_start_delay`` seconds from now; False if the queue closes meanwhile."""
        if self.quiet_before_start <= 0:
            return not self._closed
        deadline = time.monotonic() + self.max_start_delay
        with self._requests:
            while not self._closed:
                now = time.monotonic()
                if now >= deadline:
                    return True
                if self._requests_in_flight == 0:
                    quiet_for = now - self._last_request_at
                    if quiet_for >= self.quiet_before_start:
                        return True
                    self._requests.wait(min(self.quiet_before_start - quiet_for, deadline - now))
                else:
                    self._requests.wait(deadline - now)
        return False

    def _dispatch(self, job_id: str, *, timeout: int, max_attempts: int, fresh: bool = False) -> None:
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
        if not self._wait_for_quiet():
            return
        try:
            run_job(self.platform, job_id, worker=self.worker_name)
        except Exception:  # noqa: BLE001 - the row stays active and recovery retries it
            log.exception("job %s could not be run", job_id)

    def _settle(self, job_id: str) -> None:
        with self._idle:
            self._pending.discard(job_id)
            self._idle.notify_all()
