"""The SLO guard under synthetic gateway traffic, beyond the error rate of test_rollout.py: a slow
new version (latency p99), an alert rule firing on the deployment, a breach during the guard
period after the rollout completed, and a guard that reads the captured Parquet records because
its process served nothing (an rq worker's view). Each ends ``rolled_back`` with what the
guard measured, the traffic back on version 1, the transition audited and the channel told."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlplatform.core.gateway import Gateway
from mlplatform.core.monitoring.window_job import compute_monitor_window
from mlplatform.core.monitoring.windows import parse_length, window_start
from mlplatform.core.platform import Platform
from mlplatform.core.services import promotions_guard
from mlplatform.core.services.promotions_rollout import promotion_step
from tests.alerting.conftest import Receiver
from tests.api_client import Api
from tests.conftest import deep_merge
from tests.promotions.conftest import (
    MODEL,
    MODEL_BASE,
    PROJECT,
    Traffic,
    add_version,
    papi_config,
    promote,
    serve_v1,
    settle,
    show,
    traffic_of,
)

# Answers like the sklearn versions, a quarter of a second late.
SLOW_SOURCE = """
import time


class Model:
    def predict(self, frame):
        time.sleep(0.25)
        return [int(x > 0.5) for x in frame["x1"]]
"""
CAPTURE = {"gateway": {"capture": {"enabled": True, "flush_interval": 0.1}}}
MANUAL = {"jobs": {"options": {"handlers": {"promotion_step": "tests.promotions.conftest:noop"}}}}
DEADLINE_S = 60


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def wait_for(predicate: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.05)
    return value


def running_step(api: Api, promotion_id: int, index: int) -> dict[str, Any] | None:
    body = show(api, promotion_id)
    return next((s for s in body["rollout"] if s["index"] == index and s["state"] == "running"), None)


def stop_after_rollback(senders: list[Traffic], settled: float, count: int = 20) -> None:
    """Keep the senders going until ``count`` requests were sent after ``settled`` (when the
    rollout's jobs were all done, so the rollback was committed and this process's gateway
    told), then stop them."""
    wait_for(
        lambda: sum(len(s.versions_sent_after(settled)) for s in senders) >= count, 30, "requests after the rollback"
    )
    for sender in senders:
        sender.stop()
    for sender in senders:
        assert sender.join(30)


def check_rolled_back(
    api: Api, body: dict[str, Any], receiver: Receiver, senders: list[Traffic], settled: float, *, kind: str, index: int
) -> dict[str, Any]:
    """What every guard rollback leaves: the failed step with the guard's figures, the traffic
    back on version 1 (and only version 1 answering), the audit trail and the webhook notice.
    Returns the failed step's ``measured``; prints how long detection and rollback took."""
    assert body["state"] == "rolled_back" and body["reason"].startswith("SLO breach: "), body["reason"]
    failed = next(s for s in body["rollout"] if s["state"] == "failed")
    assert (failed["kind"], failed["index"]) == (kind, index), failed
    measured = failed["measured"]
    assert measured["breaches"] and body["reason"] == "SLO breach: " + "; ".join(measured["breaches"])
    assert measured["new"]["version"] == 2 and measured["old"]["version"] == 1
    rollback = body["rollout"][-1]
    assert rollback["kind"] == "rollback" and rollback["state"] == "passed"
    assert (
        "traffic restored" in rollback["measured"]["traffic"]
        and rollback["measured"]["breaches"] == measured["breaches"]
    )
    assert traffic_of(api) == {1: 100, 2: 0}

    after = [v for sender in senders for v in sender.versions_sent_after(settled)]
    assert len(after) >= 20 and set(after) == {1}, sorted(set(after))  # every request sent after the rollback: v1

    events = api.get(f"/api/v1/projects/{PROJECT}/audit?resource_type=promotion&resource_id={body['id']}").json["items"]
    assert ("promotion.rolled_back", "system:slo-guard") in [(e["action"], e["actor"]) for e in events]
    rolled = next(e for e in events if e["action"] == "promotion.rolled_back")
    assert rolled["summary"]["measured"]["breaches"] == measured["breaches"]
    assert [n["status"] for n in body["notifications"]] == ["delivered"]
    notice = next(b for b in receiver.bodies() if b["labels"].get("kind") == "promotion_rollback")
    assert notice["labels"]["promotion"] == str(body["id"]) and notice["values"]["breaches"] == measured["breaches"]

    detected, finished = _ts(measured["detected_at"]), _ts(body["finished_at"])
    failures = sorted(at for sender in senders for at, _, version in sender.responses if version == -1)
    since = f"first failing request {detected - failures[0]:.3f}s" if failures else "no failing request"
    print(
        f"\n[{api.platform.db.dialect}] {kind} step {index}: breach detected {detected - _ts(failed['started_at']):.3f}s "
        f"into the step ({since} before), rolled back (committed) {finished - detected:.3f}s later; {measured['breaches'][0]}"
    )
    return measured


def test_latency_p99_breach_rolls_back(
    papi: Callable[..., Api], traffic: Callable[..., Traffic], receiver: Receiver, tmp_path: Path
) -> None:
    api = papi()
    serve_v1(api, tmp_path)
    add_version(api.platform, tmp_path, 2, source=SLOW_SOURCE)
    senders = [traffic(api, flag_every=None) for _ in range(4)]  # the slow version holds a sender 250 ms
    time.sleep(0.3)
    response = promote(api, 2, strategy="canary", steps=[50, 100], bake_seconds=30.0)
    assert response.status_code == 201, response.json
    body = settle(api, response.json["id"], DEADLINE_S)
    settled = time.time()
    stop_after_rollback(senders, settled)

    measured = check_rolled_back(api, body, receiver, senders, settled, kind="traffic", index=1)
    assert body["reason"].startswith("SLO breach: latency p99") and len(measured["breaches"]) == 1
    new, old = measured["new"], measured["old"]
    # judged once both had 100 answers (a p99 of fewer is the slowest single answer), within the first step's bake
    assert new["requests"] >= 100 and old["requests"] >= 100 and (new["errors"], old["errors"]) == (0, 0)
    assert new["latency_p99_ms"] >= 250.0 and new["latency_p99_ms"] > 1.5 * old["latency_p99_ms"]
    assert new["latency_p99_ms"] - old["latency_p99_ms"] > 50.0
    assert body["rollout"][1]["seconds"] < 30.0


def test_firing_alert_rule_rolls_back(
    papi: Callable[..., Api], traffic: Callable[..., Traffic], receiver: Receiver, tmp_path: Path
) -> None:
    # The guard's own error and latency checks are out of the way: only the alert can roll back.
    guard = {"error_rate_margin": 1.0, "latency_p99_margin_ms": 60_000}
    api = papi({**CAPTURE, "monitoring": {"window": "2s"}, "promotion": {"guard": guard}})
    serve_v1(api, tmp_path)
    add_version(api.platform, tmp_path, 2, flaky=True)  # fails the one request in five that is flagged
    rule = {
        "name": "canary errors",
        "metric": "error_rate",
        "feature": "",
        "comparison": ">",
        "threshold": 0.05,
        "model": MODEL,
        "environment": "production",
    }
    response = api.post(f"/api/v1/projects/{PROJECT}/alert-rules", json=rule)
    assert response.status_code == 201, response.json
    sender = traffic(api)
    time.sleep(0.3)
    response = promote(api, 2, strategy="canary", steps=[50, 100], bake_seconds=30.0)
    assert response.status_code == 201, response.json
    promotion_id = response.json["id"]

    # The monitoring job computes a 2-second window of step 1 (v2 takes 50%), as the scheduler would
    # once the window closed: its error rate breaches the rule, the alert fires, the guard sees it.
    wait_for(lambda: running_step(api, promotion_id, 1), DEADLINE_S, "step 1")
    length = parse_length("2s")
    start = window_start(dt.datetime.now(dt.UTC), length) + length
    wait_for(lambda: dt.datetime.now(dt.UTC) >= start + length, 10, "the window to end")
    deployment_id = api.get(f"{MODEL_BASE}/deployments/production").json["id"]

    def firing() -> list[dict[str, Any]]:
        # Captured records land within a flush interval or so (later on a loaded machine), and
        # recomputing a window is idempotent: compute it again until its records are in.
        compute_monitor_window(api.platform, deployment_id, start.isoformat())
        return api.get(f"/api/v1/projects/{PROJECT}/alerts?state=firing").json["items"]

    alerts = wait_for(firing, 30, "the alert to fire")
    assert len(alerts) == 1 and alerts[0]["value"] > 0.05, alerts

    body = settle(api, promotion_id, DEADLINE_S)
    settled = time.time()
    stop_after_rollback([sender], settled)
    measured = check_rolled_back(api, body, receiver, [sender], settled, kind="traffic", index=1)
    assert measured["breaches"] == ["alert firing on the deployment: canary errors"]
    (seen,) = measured["alerts"]
    assert (seen["id"], seen["rule"]) == (alerts[0]["id"], "canary errors") and seen["value"] > 0.05
    assert measured["new"]["error_rate"] > 0.0  # the errors were there; the margin let them through
    assert body["rollout"][1]["seconds"] < 30.0


def test_breach_in_the_guard_period_after_completion_rolls_back(
    papi: Callable[..., Api], traffic: Callable[..., Traffic], receiver: Receiver, tmp_path: Path
) -> None:
    # Version 1 is deployed by hand: its promotion would hold a guard period of its own.
    environments = [{"name": "staging", "target": "local"}, {"name": "production", "target": "local"}]
    api = papi({"environments": environments, "promotion": {"retire_previous": True, "guard": {"period": 60}}})
    add_version(api.platform, tmp_path, 1)
    assert api.put(f"{MODEL_BASE}/deployments/production", json={"version": 1}).status_code == 202
    assert api.platform.jobs.wait_idle(DEADLINE_S) and traffic_of(api) == {1: 100}
    add_version(api.platform, tmp_path, 2, flaky=True)
    sender = traffic(api, flag_every=None)  # no flagged input yet: version 2 answers everything
    time.sleep(0.3)
    response = promote(api, 2, strategy="canary", steps=[50, 100], bake_seconds=1.0)
    assert response.status_code == 201, response.json
    promotion_id = response.json["id"]

    body = wait_for(
        lambda: (b := show(api, promotion_id))["state"] not in ("approved", "rolling_out") and b,
        DEADLINE_S,
        "the rollout",
    )
    assert body["state"] == "completed" and body["guard_until"] is not None, body
    assert traffic_of(api) == {1: 0, 2: 100}  # version 1 is kept until the guard period passes
    wait_for(lambda: running_step(api, promotion_id, 3), 10, "the guard step")
    sender.flag_every = 5  # the input shifts after the rollout: version 2 fails one request in five
    body = settle(api, promotion_id, DEADLINE_S)
    settled = time.time()
    stop_after_rollback([sender], settled)

    measured = check_rolled_back(api, body, receiver, [sender], settled, kind="guard", index=3)
    assert [(s["kind"], s["state"]) for s in body["rollout"]] == [
        ("prepare", "passed"),
        ("traffic", "passed"),
        ("traffic", "passed"),
        ("guard", "failed"),
        ("rollback", "passed"),
    ]
    assert body["reason"].startswith("SLO breach: error rate") and body["guard_until"] is None
    # measured rates are rounded to 4 places: a breach just over the 0.02 margin shows as 0.02
    assert (
        measured["new"]["errors"] >= 1
        and measured["new"]["error_rate"] >= 0.02
        and measured["old"]["error_rate"] == 0.0
    )
    actions = [
        e["action"]
        for e in api.get(f"/api/v1/projects/{PROJECT}/audit?resource_type=promotion&resource_id={promotion_id}").json[
            "items"
        ]
    ]
    assert actions[:4] == ["promotion.request", "promotion.rolling_out", "promotion.completed", "promotion.rolled_back"]


@pytest.fixture
def worker_platform(receiver: Receiver) -> Iterator[Callable[[Api, dict[str, Any]], Platform]]:
    """``worker_platform(api, overrides)``: a second Platform on the API's database and artifact
    store, as an rq worker process has: it runs jobs and serves no predictions, so its guard
    has no in-memory outcomes and reads the captured records."""
    built: list[Platform] = []

    def make(api: Api, overrides: dict[str, Any]) -> Platform:
        where = {"data_dir": str(api.platform.data_dir), "database": {"url": api.platform.database_url}}
        built.append(Platform(deep_merge(papi_config(receiver, overrides), where)))
        return built[-1]

    yield make
    for platform in built:
        platform.close()


def test_guard_in_a_process_that_serves_nothing_reads_the_captured_records(
    papi: Callable[..., Api],
    traffic: Callable[..., Traffic],
    worker_platform: Callable[..., Platform],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    api = papi({**CAPTURE, **MANUAL})  # this process serves; its queue leaves promotion steps alone
    worker = worker_platform(api, CAPTURE)  # ... and the worker runs them
    serve_v1(api, tmp_path)
    add_version(api.platform, tmp_path, 2, flaky=True)
    sender = traffic(api, rows=3)  # three rows a request: capture writes a Parquet row per input row
    time.sleep(0.3)
    response = promote(api, 2, strategy="canary", steps=[20, 50, 100], bake_seconds=30.0)
    assert response.status_code == 201, response.json
    promotion_id = response.json["id"]
    promotion_step(worker, promotion_id, 0)  # prepare, then the worker's queue runs the next steps
    assert worker.jobs.wait_idle(DEADLINE_S)
    settled = time.time()
    body = show(api, promotion_id)
    stop_after_rollback([sender], settled)

    measured = check_rolled_back(api, body, receiver, [sender], settled, kind="traffic", index=1)
    assert measured["source"] == "capture" and measured["breaches"][0].startswith("error rate")
    assert (
        measured["new"]["requests"] >= 10 and measured["new"]["error_rate"] >= 0.02 and measured["old"]["errors"] == 0
    )
    assert body["rollout"][1]["seconds"] < 30.0

    # Once everything is written, the captured figures are the client's, counted in requests (not rows).
    assert api.platform.shared("gateway", lambda: Gateway(api.platform)).capture.flush(30)  # the senders stopped
    deployment_id = api.get(f"{MODEL_BASE}/deployments/production").json["id"]
    with worker.db.read() as session:
        again = promotions_guard.measure(
            worker,
            session,
            project=PROJECT,
            model=MODEL,
            environment="production",
            deployment_id=deployment_id,
            new_version=2,
            old_version=1,
            since=dt.datetime.fromisoformat(body["started_at"]),
        )
    answered = [version for _, _, version in sender.responses if version in (2, -1)]
    assert again.source == "capture"
    assert (again.new.requests, again.new.errors) == (len(answered), answered.count(-1))
