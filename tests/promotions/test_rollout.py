"""Rollouts under synthetic gateway traffic: a canary's traffic shares at each step, an
automatic rollback on a 20% error rate (with its audit trail and webhook notification),
blue/green with a smoke test, and rollback by hand."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

from tests.alerting.conftest import Receiver
from tests.api_client import Api
from tests.promotions.conftest import (
    MODEL_BASE,
    PROMOTIONS,
    Traffic,
    add_version,
    promote,
    serve_v1,
    settle,
    show,
    traffic_of,
)

ROWS = [{"x1": 0.0, "x2": 1.0}, {"x1": 1.1, "x2": 0.1}]


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def test_canary_moves_traffic_step_by_step(
    papi: Callable[..., Api], traffic: Callable[..., Traffic], tmp_path: Path
) -> None:
    api = papi()
    serve_v1(api, tmp_path)
    add_version(api.platform, tmp_path, 2)
    sender = traffic(api)
    time.sleep(0.3)
    response = promote(api, 2, strategy="canary", steps=[10, 50, 100], bake_seconds=2.0)
    assert response.status_code == 201, response.json
    assert (response.json["state"], response.json["steps"]) == ("approved", [10, 50, 100])
    body = settle(api, response.json["id"])
    completed_at = time.time()
    time.sleep(0.5)
    sender.stop()
    assert body["state"] == "completed", body
    assert traffic_of(api) == {1: 0, 2: 100}  # the old version stays deployed at 0%: an instant way back

    steps = {s["index"]: s for s in body["rollout"]}
    assert [(s["kind"], s["weight"], s["state"]) for s in body["rollout"]] == [
        ("prepare", 0, "passed"),
        ("traffic", 10, "passed"),
        ("traffic", 50, "passed"),
        ("traffic", 100, "passed"),
    ]
    for index, expected, tolerance in ((1, 0.10, 0.07), (2, 0.50, 0.12)):
        step = steps[index]
        assert step["seconds"] >= 2.0 and step["measured"]["source"] == "gateway"
        seen = sender.versions_between(_ts(step["started_at"]) + 0.1, _ts(step["finished_at"]))
        share = seen.count(2) / len(seen)
        assert len(seen) > 50 and abs(share - expected) <= tolerance, (index, share, len(seen))
        assert step["measured"]["new"]["requests"] > 0 and step["measured"]["old"]["version"] == 1
    # The last step moves traffic after its pre-traffic checks (a few hundred ms into the step on
    # a busy 2-core machine); once the promotion has completed, only the new version answers.
    after = sender.versions_between(completed_at, time.time())
    assert after and set(after) == {2}
    # every flagged request (x2 < 0) is fine for sklearn versions: no errors, no rollback
    assert {status for _, status, _ in sender.responses} == {200}


def test_error_rate_rolls_back_within_one_step(
    papi: Callable[..., Api], traffic: Callable[..., Traffic], receiver: Receiver, tmp_path: Path
) -> None:
    api = papi()
    serve_v1(api, tmp_path)
    add_version(api.platform, tmp_path, 2, flaky=True)  # fails on the one request in five that is flagged
    sender = traffic(api)
    time.sleep(0.3)
    response = promote(api, 2, strategy="canary", steps=[20, 50, 100], bake_seconds=10.0)
    assert response.status_code == 201, response.json
    body = settle(api, response.json["id"])
    time.sleep(0.5)
    sender.stop()

    assert body["state"] == "rolled_back", body
    assert body["reason"].startswith("SLO breach: error rate")
    assert traffic_of(api) == {1: 100, 2: 0}
    failed_step = next(s for s in body["rollout"] if s["kind"] == "traffic")
    assert (failed_step["index"], failed_step["weight"], failed_step["state"]) == (1, 20, "failed")
    assert failed_step["seconds"] < 10.0  # within the first step's bake
    measured = failed_step["measured"]
    # judged as soon as v2 had min_requests (10) answers: any error rate above 0% + 2% is a breach
    assert (
        measured["new"]["requests"] >= 10 and measured["new"]["errors"] >= 1 and measured["new"]["error_rate"] >= 0.02
    )
    assert measured["old"]["error_rate"] == 0.0 and measured["breaches"][0].startswith("error rate")
    rollback = body["rollout"][-1]
    assert rollback["kind"] == "rollback" and "traffic restored" in rollback["measured"]["traffic"]

    # detection and rollback time: the first failing request -> the last answer from v2, as the client saw them
    first_failure = min(at for at, status, _ in sender.responses if status != 200)
    last_new = max(at for at, _, version in sender.responses if version in (2, -1))  # -1: v2 failed the request
    rolled_back_at = _ts(body["finished_at"])
    after = [v for at, _, v in sender.responses if at > last_new]
    assert len(after) > 10 and set(after) == {1}
    print(
        f"\n[{api.platform.db.dialect}] first failing request -> rollback committed {rolled_back_at - first_failure:.3f}s, "
        f"-> last answer from v2 {last_new - first_failure:.3f}s; judged after {measured['new']['requests']} requests to v2"
    )
    assert last_new - first_failure < 5.0

    # audited, and the alert channel was told
    events = api.get(f"/api/v1/projects/acme/audit?resource_type=promotion&resource_id={body['id']}").json["items"]
    actions = [(e["action"], e["actor"]) for e in events]
    assert ("promotion.rolled_back", "system:slo-guard") in actions
    assert [a for a, _ in actions][:3] == ["promotion.request", "promotion.rolling_out", "promotion.rolled_back"]
    assert body["notifications"] == [
        {**body["notifications"][0], "channel": "hook", "event": "rolled_back", "status": "delivered"}
    ]
    (notice,) = receiver.bodies()
    assert notice["title"].startswith(f"promotion {body['id']} rolled back: churn v2 in production")
    assert notice["labels"]["kind"] == "promotion_rollback" and notice["severity"] == "critical"
    assert notice["values"]["new"]["error_rate"] >= 0.02 and notice["values"]["breaches"]


def test_blue_green_smoke_tests_through_the_gateway(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi()
    serve_v1(api, tmp_path)
    add_version(api.platform, tmp_path, 2, input_example=ROWS)
    add_version(api.platform, tmp_path, 3, flaky=True, input_example=[{"x1": 1.0, "x2": -1.0}])
    add_version(api.platform, tmp_path, 4)  # no input example

    body = settle(api, promote(api, 2, strategy="blue_green").json["id"])
    assert body["state"] == "completed", body
    smoke = body["rollout"][0]["measured"]["smoke_test"]
    assert (smoke["status"], smoke["rows"], smoke["predictions"], smoke["version"]) == (200, 2, 2, 2)
    assert traffic_of(api) == {1: 0, 2: 100}

    body = settle(api, promote(api, 3, strategy="blue_green").json["id"])
    assert body["state"] == "failed" and "smoke test of version 3 failed" in body["reason"], body
    assert traffic_of(api)[2] == 100 and traffic_of(api).get(3, 0) == 0
    body = settle(api, promote(api, 4, strategy="blue_green").json["id"])
    assert body["state"] == "failed" and "input_example" in body["reason"]


def test_rollback_by_hand_is_one_call(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi({"promotion": {"retire_previous": True}})
    serve_v1(api, tmp_path)
    add_version(api.platform, tmp_path, 2)
    body = settle(api, promote(api, 2, strategy="direct").json["id"])
    assert body["state"] == "completed" and traffic_of(api) == {2: 100}  # v1 retired after the (zero) guard period

    response = api.post(f"{PROMOTIONS}/{body['id']}/rollback", json={"reason": "customer complaints"})
    assert response.status_code == 200, response.json
    assert response.json["state"] == "rolled_back" and "customer complaints" in response.json["reason"]
    assert api.platform.jobs.wait_idle(30)
    assert traffic_of(api) == {1: 100}  # redeployed, since it had been retired
    predicted = api.post(f"{MODEL_BASE}/deployments/production/predict", json={"instances": ROWS})
    assert predicted.json["version"] == 1
    again = api.post(f"{PROMOTIONS}/{body['id']}/rollback", json={})
    assert again.status_code == 409 and "rolled_back" in again.json["message"]
    assert show(api, body["id"])["rollout"][-1]["kind"] == "rollback"
