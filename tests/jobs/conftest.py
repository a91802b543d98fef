"""Fixtures for the job tests: a platform per backend, a private RQ queue, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.core.db.models import Job
from mlplatform.core.platform import Platform
from tests.conftest import service_missing
from tests.jobs.handlers import HANDLERS

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("MLPLATFORM_TEST_REDIS", "redis://127.0.0.1:6379/0")

# Short intervals so that a dead worker is noticed within seconds.
FAST = {"retry_backoff": 0.01, "heartbeat_interval": 0.2, "stale_after": 1.5, "handlers": HANDLERS}


def enqueue(platform: Platform, name: str, args: dict[str, Any], **kwargs: Any) -> str:
    with platform.db.write() as session:
        return platform.jobs.enqueue(session, name, args, **kwargs)


def load(platform: Platform, job_id: str) -> Job | None:
    with platform.db.read() as session:
        return session.get(Job, job_id)


def wait_for(predicate: Callable[[], Any], timeout: float, message: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.1)


@pytest.fixture
def redis_client() -> Iterator[Any]:
    from redis import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        client.close()
        service_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture
def rq_options(redis_client: Any) -> Iterator[dict[str, Any]]:
    """Options for a queue of this test's own; every Redis key it leaves is deleted afterwards."""
    queue = f"mlp-test-{uuid.uuid4().hex[:10]}"
    yield {"url": REDIS_URL, "queue": queue, "recovery_interval": 0.3, **FAST}
    job_ids = [
        key.decode().split(":", 2)[2]
        for key in redis_client.scan_iter("rq:job:*")
        if (redis_client.hget(key, "origin") or b"").decode() == queue
    ]
    for pattern in [f"*{queue}*", *(f"*{job_id}*" for job_id in job_ids)]:
        keys = list(redis_client.scan_iter(pattern))
        if keys:
            redis_client.delete(*keys)
    for registry in ("rq:workers", "rq:queues"):
        members = [member for member in redis_client.smembers(registry) if queue.encode() in member]
        if members:
            redis_client.srem(registry, *members)


@pytest.fixture
def start_worker(tmp_path: Path, new_database_url: Any) -> Iterator[Callable[[Platform, str], subprocess.Popen[bytes]]]:
    """Start ``mlplatform worker --name NAME`` on the platform's database and queue, as its own process.

    Depends on ``new_database_url`` so that the workers stop before the test databases are dropped.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(platform: Platform, name: str) -> subprocess.Popen[bytes]:
        config_path = tmp_path / "worker.yaml"
        if not config_path.exists():
            config = {
                "data_dir": str(tmp_path / "worker-data"),
                "database": {"url": platform.database_url},
                "jobs": platform.config["jobs"],
                "logging": {"level": "DEBUG"},
            }
            config_path.write_text(yaml.safe_dump(config))
        env = {key: value for key, value in os.environ.items() if not key.startswith("MLPLATFORM")}
        env.update(MLPLATFORM_CONFIG=str(config_path), PYTHONPATH=str(REPO_ROOT))
        log = open(tmp_path / f"worker-{name}.log", "wb")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(
            [sys.executable, "-c", "from mlplatform.cli import main; main()", "worker", "--name", name],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
