"""The inline backend and the job runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path
from typing import Any

import pytest

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Job
from mlplatform.core.errors import ConfigError
from mlplatform.core.jobs import HANDLERS as BUILT_IN
from mlplatform.core.jobs import InlineJobQueue, run_job, run_worker
from mlplatform.core.platform import Platform
from tests.jobs.conftest import FAST, enqueue, load
from tests.jobs.handlers import runs


@pytest.fixture
def platform(make_platform: Any, db_kind: str) -> Platform:
    return make_platform({"jobs": {"backend": "inline", "options": {"workers": 2, **FAST}}}, db=db_kind)


def insert(platform: Platform, name: str, args: dict[str, Any], **columns: Any) -> str:
    """A Job row written directly, not dispatched: stands for state left by another process."""
    job = Job(
        id=f"job-{name}-{utcnow().timestamp()}",
        name=name,
        args=args,
        **{"state": "queued", "attempts": 0, "max_attempts": 3, "timeout_seconds": 60, **columns},
    )
    with platform.db.write() as session:
        session.add(job)
    return job.id


def test_a_job_runs_after_commit_and_its_row_mirrors_it(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    assert isinstance(platform.jobs, InlineJobQueue)
    with platform.db.write() as session:
        job_id = platform.jobs.enqueue(session, "test.record", {"path": str(path)}, project="p1")
        assert platform.jobs.wait_idle(0), "dispatched before the transaction committed"
    assert platform.jobs.wait_idle(30)
    job = load(platform, job_id)
    assert job is not None
    assert (job.state, job.attempts, job.error, job.project, job.name) == ("succeeded", 1, None, "p1", "test.record")
    assert job.worker is not None and job.worker.startswith("inline:")
    assert job.started_at is not None and job.finished_at is not None and job.finished_at >= job.started_at
    assert runs(path) == ["ran"]


def test_a_rolled_back_transaction_leaves_no_row_and_runs_nothing(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="caller failed"):
        with platform.db.write() as session:
            job_id = platform.jobs.enqueue(session, "test.record", {"path": str(path)})
            raise RuntimeError("caller failed")
    assert platform.jobs.wait_idle(30)
    assert load(platform, job_id) is None
    assert runs(path) == []


def test_a_failing_job_is_retried_until_it_succeeds(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    job_id = enqueue(platform, "test.flaky", {"path": str(path), "failures": 2}, max_attempts=3)
    assert platform.jobs.wait_idle(30)
    job = load(platform, job_id)
    assert job is not None
    assert (job.state, job.attempts, job.error) == ("succeeded", 3, None)
    assert len(runs(path)) == 3


def test_a_job_out_of_attempts_fails_with_its_error(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    job_id = enqueue(platform, "test.fail", {"path": str(path), "message": "no model"}, max_attempts=2)
    assert platform.jobs.wait_idle(30)
    job = load(platform, job_id)
    assert job is not None
    assert (job.state, job.attempts, job.error) == ("failed", 2, "ValueError: no model")
    assert job.finished_at is not None
    assert len(runs(path)) == 2


def test_running_a_finished_job_again_is_a_no_op(platform: Platform, tmp_path: Path) -> None:
    done, failed = tmp_path / "done", tmp_path / "failed"
    done_id = enqueue(platform, "test.record", {"path": str(done)})
    failed_id = enqueue(platform, "test.fail", {"path": str(failed), "message": "x"}, max_attempts=1)
    assert platform.jobs.wait_idle(30)
    assert run_job(platform, done_id) == "succeeded"
    assert run_job(platform, failed_id) == "failed"
    platform.jobs._dispatch(done_id, timeout=60, max_attempts=3)  # a duplicate delivery
    assert platform.jobs.wait_idle(30)
    assert (runs(done), runs(failed)) == (["ran"], ["run"])
    assert [load(platform, i).attempts for i in (done_id, failed_id)] == [1, 1]  # type: ignore[union-attr]


def test_a_handler_can_end_its_job_in_its_own_last_transaction(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    job_id = enqueue(platform, "test.succeed_in", {"path": str(path)})
    assert platform.jobs.wait_idle(30)
    job = load(platform, job_id)
    assert job is not None and (job.state, job.attempts, job.error) == ("succeeded", 1, None)
    assert job.finished_at is not None
    assert runs(path) == ["run", "state in the handler's transaction: succeeded"]  # one commit for both


def test_a_success_rolled_back_with_the_handler_is_not_recorded(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    job_id = enqueue(platform, "test.succeed_in", {"path": str(path), "roll_back_first": True})
    assert platform.jobs.wait_idle(30)
    job = load(platform, job_id)
    assert job is not None and (job.state, job.attempts) == ("succeeded", 2)  # the first attempt failed
    assert runs(path).count("run") == 2


def test_succeed_in_outside_a_job_does_nothing(platform: Platform, tmp_path: Path) -> None:
    from mlplatform.core.jobs import succeed_in

    job_id = insert(platform, "test.record", {"path": str(tmp_path / "runs")}, state="running", worker="w", attempts=1)
    with platform.db.write() as session:
        succeed_in(session)
    assert load(platform, job_id).state == "running"  # type: ignore[union-attr]


def test_a_job_owned_by_a_live_worker_is_not_run_again(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    now = utcnow()
    job_id = insert(
        platform,
        "test.record",
        {"path": str(path)},
        state="running",
        attempts=1,
        worker="inline:elsewhere:1",
        started_at=now,
        heartbeat_at=now,
    )
    assert run_job(platform, job_id) == "running"
    assert platform.jobs.recover() == []
    assert runs(path) == []


def test_a_timed_out_attempt_in_a_pool_thread_fails(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    job_id = enqueue(platform, "test.sleep", {"path": str(path), "seconds": 3}, timeout=1, max_attempts=1)
    assert platform.jobs.wait_idle(30)
    job = load(platform, job_id)
    assert job is not None
    assert (job.state, job.attempts, job.error) == ("failed", 1, "JobTimeout: timed out after 1s")


def test_a_timed_out_attempt_in_the_main_thread_is_interrupted(platform: Platform, tmp_path: Path) -> None:
    """The path an rq worker takes: SIGALRM stops the handler, then the outer alarm is restored."""
    path = tmp_path / "runs"
    job_id = insert(platform, "test.sleep", {"path": str(path), "seconds": 30}, timeout_seconds=1, max_attempts=2)
    outer_handler = signal.getsignal(signal.SIGALRM)
    assert run_job(platform, job_id) == "failed"
    assert signal.getsignal(signal.SIGALRM) is outer_handler
    job = load(platform, job_id)
    assert job is not None
    assert (job.state, job.attempts, job.error) == ("failed", 2, "JobTimeout: timed out after 1s")
    assert runs(path) == ["start", "start"]  # never "end": the sleeps were interrupted


def test_an_orphaned_job_is_run_again(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    long_ago = utcnow() - dt.timedelta(hours=1)
    job_id = insert(
        platform,
        "test.record",
        {"path": str(path)},
        state="running",
        attempts=1,
        worker="inline:dead-host:1",
        started_at=long_ago,
        heartbeat_at=long_ago,
    )
    assert platform.jobs.recover() == [job_id]
    assert platform.jobs.wait_idle(30)
    job = load(platform, job_id)
    assert job is not None
    assert (job.state, job.attempts, job.error) == ("succeeded", 2, None)
    assert runs(path) == ["ran"]


def test_an_orphaned_job_out_of_attempts_fails(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    long_ago = utcnow() - dt.timedelta(hours=1)
    job_id = insert(
        platform,
        "test.record",
        {"path": str(path)},
        state="running",
        attempts=2,
        max_attempts=2,
        worker="inline:dead-host:1",
        started_at=long_ago,
        heartbeat_at=long_ago,
    )
    assert platform.jobs.recover() == [job_id]
    assert platform.jobs.wait_idle(30)
    job = load(platform, job_id)
    assert job is not None
    assert (job.state, job.error) == ("failed", "worker inline:dead-host:1 stopped during attempt 2")
    assert runs(path) == []


def test_a_queued_job_nobody_holds_is_dispatched_again(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    job_id = insert(platform, "test.record", {"path": str(path)}, created_at=utcnow() - dt.timedelta(hours=1))
    fresh_id = insert(platform, "test.record", {"path": str(tmp_path / "fresh")})
    assert platform.jobs.recover() == [job_id]  # the fresh one may still be on its way
    assert platform.jobs.wait_idle(30)
    assert load(platform, job_id).state == "succeeded"  # type: ignore[union-attr]
    assert load(platform, fresh_id).state == "queued"  # type: ignore[union-attr]


def test_an_unknown_job_name_is_refused(platform: Platform) -> None:
    with platform.db.write() as session:
        with pytest.raises(ValueError, match="unknown job 'nope'"):
            platform.jobs.enqueue(session, "nope", {})


def test_handlers_are_a_table_per_queue(make_platform: Any, tmp_path: Path) -> None:
    platform = make_platform({"jobs": {"backend": "inline", "options": FAST}})
    other = make_platform()
    platform.jobs.handlers["test.local"] = lambda platform, path: Path(path).write_text(type(platform).__name__)
    job_id = enqueue(platform, "test.local", {"path": str(tmp_path / "local")})
    assert platform.jobs.wait_idle(30)
    assert load(platform, job_id).state == "succeeded"  # type: ignore[union-attr]
    assert (tmp_path / "local").read_text() == "Platform"
    assert set(other.jobs.handlers) == set(BUILT_IN)


@pytest.mark.parametrize(
    ("options", "path", "message"),
    [
        ({"workers": 0}, "jobs.options.workers", "greater than or equal to 1"),
        ({"bogus": 1}, "jobs.options.bogus", "unknown key"),
        ({"handlers": {"x": "no-colon"}}, "jobs.options.handlers.x.value", "module:function"),
        ({"heartbeat_interval": 10, "stale_after": 15}, "jobs.options.stale_after", "twice heartbeat_interval"),
    ],
)
def test_bad_inline_options_name_their_key(
    make_platform: Any, options: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        make_platform({"jobs": {"backend": "inline", "options": options}})
    assert caught.value.path == path


def test_the_worker_command_needs_the_rq_backend(make_platform: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        run_worker(make_platform())
    assert caught.value.path == "jobs.backend"


def test_a_job_waits_for_a_pause_in_requests(make_platform: Any, tmp_path: Path) -> None:
    """Inline jobs share the server's interpreter: one enqueued while a request is served waits."""
    path = tmp_path / "runs"
    options = {**FAST, "quiet_before_start": 0.2, "max_start_delay": 60}
    platform = make_platform({"jobs": {"backend": "inline", "options": options}})
    queue = platform.jobs
    queue.request_started()
    job_id = enqueue(platform, "test.record", {"path": str(path)})
    assert not queue.wait_idle(0.5)
    assert runs(path) == [] and load(platform, job_id).state == "queued"  # type: ignore[union-attr]
    queue.request_finished()
    assert queue.wait_idle(30)
    assert runs(path) == ["ran"]


def test_under_unbroken_requests_a_job_starts_after_max_start_delay(make_platform: Any, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    options = {**FAST, "quiet_before_start": 60, "max_start_delay": 0.3}
    platform = make_platform({"jobs": {"backend": "inline", "options": options}})
    platform.jobs.request_started()
    try:
        enqueue(platform, "test.record", {"path": str(path)})
        assert platform.jobs.wait_idle(30)
        assert runs(path) == ["ran"]
    finally:
        platform.jobs.request_finished()


def test_closing_the_queue_releases_jobs_waiting_for_a_pause(make_platform: Any, tmp_path: Path) -> None:
    path = tmp_path / "runs"
    options = {**FAST, "quiet_before_start": 60, "max_start_delay": 60}
    platform = make_platform({"jobs": {"backend": "inline", "options": options}})
    platform.jobs.request_started()
    job_id = enqueue(platform, "test.record", {"path": str(path)})
    platform.jobs.close()  # at once, not after a minute: the waiting job stays queued for recovery
    assert runs(path) == [] and load(platform, job_id).state == "queued"  # type: ignore[union-attr]


def test_every_api_request_is_counted_once_even_when_it_fails(make_api: Any) -> None:
    api = make_api({"jobs": {"backend": "inline", "options": FAST}})
    queue = api.platform.jobs
    assert isinstance(queue, InlineJobQueue)
    assert api.get("/api/v1/health").status_code == 200
    assert api.get("/api/v1/projects/nope").status_code == 404
    assert api.call("GET", "/api/v1/projects", token=None).status_code == 401
    assert queue._requests_in_flight == 0 and queue._last_request_at > 0
