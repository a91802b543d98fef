"""The rq backend against the real Redis at 127.0.0.1:6379, with real worker processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from mlplatform.core.errors import ConfigError
from mlplatform.core.jobs import RQJobQueue
from mlplatform.core.platform import Platform
from tests.conftest import free_port
from tests.jobs.conftest import enqueue, load, wait_for
from tests.jobs.handlers import runs


def rq_platform(make_platform: Any, options: dict[str, Any], db: str) -> Platform:
    platform = make_platform({"jobs": {"backend": "rq", "options": options}}, db=db)
    assert isinstance(platform.jobs, RQJobQueue)
    return platform


def state_of(platform: Platform, job_id: str, *states: str) -> Any:
    job = load(platform, job_id)
    return job if job is not None and job.state in states else None


def test_a_job_is_put_on_the_queue_only_when_the_transaction_commits(
    make_platform: Any, rq_options: dict[str, Any], tmp_path: Path
) -> None:
    from rq.job import Job as RQJob

    platform = rq_platform(make_platform, rq_options, "sqlite")
    queue = platform.jobs
    assert isinstance(queue, RQJobQueue)
    with pytest.raises(RuntimeError):
        with platform.db.write() as session:
            dropped = queue.enqueue(session, "test.record", {"path": str(tmp_path / "x")})
            raise RuntimeError("caller failed")
    with platform.db.write() as session:
        job_id = queue.enqueue(session, "test.record", {"path": str(tmp_path / "x")}, timeout=30, max_attempts=2)
        assert queue.rq_queue.count == 0
    assert queue.wait_dispatched(10)  # fresh ids reach Redis from the dispatch thread, just after the commit
    assert queue.rq_queue.job_ids == [job_id]
    assert not RQJob.exists(dropped, connection=queue.redis)
    rq_job = RQJob.fetch(job_id, connection=queue.redis)
    assert rq_job.func_name == "mlplatform.core.jobs._perform_rq_job"
    assert rq_job.args == (job_id,)
    assert load(platform, dropped) is None
    assert load(platform, job_id).state == "queued"  # type: ignore[union-attr]
    queue.ping()


def test_jobs_committed_together_all_reach_the_queue_in_order(
    make_platform: Any, rq_options: dict[str, Any], tmp_path: Path
) -> None:
    """The dispatch thread sends whatever waits in its outbox in one MULTI/EXEC: none is lost or reordered."""
    from rq.job import Job as RQJob

    platform = rq_platform(make_platform, rq_options, "sqlite")
    queue = platform.jobs
    assert isinstance(queue, RQJobQueue)
    with platform.db.write() as session:
        job_ids = [
            queue.enqueue(session, "test.record", {"path": str(tmp_path / "x")}, timeout=10 + n, max_attempts=1)
            for n in range(20)
        ]
    assert queue.wait_dispatched(10)
    assert queue.rq_queue.job_ids == job_ids
    assert [RQJob.fetch(j, connection=queue.redis).timeout for j in job_ids] == [10 + n + 60 for n in range(20)]


def test_ping_fails_when_redis_is_unreachable(make_platform: Any, rq_options: dict[str, Any]) -> None:
    platform = rq_platform(make_platform, {**rq_options, "url": f"redis://127.0.0.1:{free_port()}/0"}, "sqlite")
    from redis.exceptions import ConnectionError as RedisConnectionError

    with pytest.raises(RedisConnectionError):
        platform.jobs.ping()


def test_a_bad_redis_url_names_its_key(make_platform: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        make_platform({"jobs": {"backend": "rq", "options": {"url": "http://127.0.0.1:6379"}}})
    assert caught.value.path == "jobs.options.url"


def test_a_worker_process_runs_jobs_and_retries(
    make_platform: Any, rq_options: dict[str, Any], start_worker: Any, db_kind: str, tmp_path: Path
) -> None:
    platform = rq_platform(make_platform, rq_options, db_kind)
    worker = start_worker(platform, f"{rq_options['queue']}-w1")
    record = enqueue(platform, "test.record", {"path": str(tmp_path / "record")})
    flaky = enqueue(platform, "test.flaky", {"path": str(tmp_path / "flaky"), "failures": 1}, max_attempts=2)
    for job_id in (record, flaky):
        wait_for(lambda job_id=job_id: state_of(platform, job_id, "succeeded", "failed"), 90, f"job {job_id} to finish")
    assert worker.poll() is None, (tmp_path / f"worker-{rq_options['queue']}-w1.log").read_text()
    done = load(platform, record)
    assert done is not None
    assert (done.state, done.attempts, done.worker) == ("succeeded", 1, f"rq:{rq_options['queue']}-w1")
    retried = load(platform, flaky)
    assert retried is not None
    assert (retried.state, retried.attempts) == ("succeeded", 2)
    assert runs(tmp_path / "record") == ["ran"]
    assert len(runs(tmp_path / "flaky")) == 2


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_is_rerun_by_another_worker(
    make_platform: Any, rq_options: dict[str, Any], start_worker: Any, tmp_path: Path
) -> None:
    platform = rq_platform(make_platform, rq_options, "postgresql")
    first, second = f"{rq_options['queue']}-first", f"{rq_options['queue']}-second"
    path = tmp_path / "runs"
    killed = start_worker(platform, first)
    job_id = enqueue(platform, "test.slow_first", {"path": str(path), "seconds": 600}, timeout=900, max_attempts=3)
    wait_for(lambda: runs(path), 90, "the first worker to start the job")
    running = load(platform, job_id)
    assert running is not None
    assert (running.state, running.attempts, running.worker) == ("running", 1, f"rq:{first}")

    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    start_worker(platform, second)
    job = wait_for(lambda: state_of(platform, job_id, "succeeded", "failed"), 120, "the job to be recovered")

    assert (job.state, job.attempts, job.worker, job.error) == ("succeeded", 2, f"rq:{second}", None)
    lines = runs(path)
    assert lines[0] == f"started {killed.pid}"
    assert [line.split()[0] for line in lines] == ["started", "started", "finished"]
    assert lines[1].split()[1] == lines[2].split()[1] != str(killed.pid)
    # RQ takes the job out of its started registry just after our handler has recorded success.
    registry = platform.jobs.rq_queue.started_job_registry  # type: ignore[attr-defined]
    wait_for(lambda: job_id not in registry.get_job_ids(), 30, "RQ to retire the job from its started registry")
