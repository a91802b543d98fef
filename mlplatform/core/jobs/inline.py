"""The ``inline`` backend: jobs run on a thread pool in the server process (the embedded default)."""

from __future__ import annotations

import logging
import os
import socket
import threading
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
        try:
            run_job(self.platform, job_id, worker=self.worker_name)
        except Exception:  # noqa: BLE001 - the row stays active and recovery retries it
            log.exception("job %s could not be run", job_id)

    def _settle(self, job_id: str) -> None:
        with self._idle:
            self._pending.discard(job_id)
            self._idle.notify_all()
