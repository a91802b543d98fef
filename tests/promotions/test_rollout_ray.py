"""The canary of test_rollout.py once more, on real Ray Serve: production's deployment target is
``ray_serve`` (a local cluster, ``tests/ray_fixtures.py``), each version its own Serve
application, and the gateway splits synthetic traffic between them."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api_client import Api
from tests.promotions.conftest import MODEL_BASE, Traffic, add_version, promote, serve_v1, settle, traffic_of
from tests.ray_fixtures import RAY_MARKS

pytestmark = RAY_MARKS

RAY = {
    "deployment_targets": [
        {
            "name": "ray",
            "backend": "ray_serve",
            "options": {"num_replicas": 1, "num_cpus": 0.25, "max_constructor_retries": 2},
        }
    ],
    "environments": [
        {"name": "staging", "target": "local"},
        {"name": "production", "target": "ray", "promotion_only": True},
    ],
    # The guard period is 0: v1's application goes once v2 has all traffic. The guard's latency
    # check is set aside here (test_guard.py covers it): on a loaded 2-core machine a new Ray
    # application's first answers (cold handle and replica) are slow enough, next to the warm
    # old version, to roll back a healthy canary. Its error check stays on.
    "promotion": {"retire_previous": True, "guard": {"latency_p99_margin_ms": 60_000}},
}
DEADLINE_S = 120
BAKE_S = 3.0


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


@pytest.mark.parametrize("db_kind", ["postgresql"])  # once, on the production database
def test_canary_on_ray_serve(
    serve_apps: set[str], papi: Callable[..., Api], traffic: Callable[..., Traffic], tmp_path: Path
) -> None:
    from ray import serve

    api = papi(RAY)
    serve_v1(api, tmp_path)
    assert traffic_of(api) == {1: 100}
    assert {"acme-churn-v1"} <= set(serve.status().applications) - serve_apps
    add_version(api.platform, tmp_path, 2)
    # Three senders: while one waits out version 2's first answer (a cold handle and replica,
    # seconds on a loaded machine), the others keep the step's sample coming.
    senders = [traffic(api) for _ in range(3)]
    time.sleep(0.3)
    response = promote(api, 2, strategy="canary", steps=[10, 50, 100], bake_seconds=BAKE_S)
    assert response.status_code == 201, response.json
    promotion_id = response.json["id"]
    body = settle(api, promotion_id, DEADLINE_S)
    completed_at = time.time()  # every job of the rollout is done: its changes are committed and seen here
    deadline = time.monotonic() + 30
    while sum(len(s.versions_sent_after(completed_at)) for s in senders) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    for sender in senders:
        sender.stop()
    for sender in senders:
        assert sender.join(30)

    assert body["state"] == "completed", (body["reason"], body["rollout"])
    assert [(s["kind"], s["weight"], s["state"]) for s in body["rollout"]] == [
        ("prepare", 0, "passed"),
        ("traffic", 10, "passed"),
        ("traffic", 50, "passed"),
        ("traffic", 100, "passed"),
    ]
    # each step set the gateway's weights ...
    events = api.get(f"{MODEL_BASE}/deployments/production").json["events"]
    moves = [
        e["details"]["weights"] for e in reversed(events) if e["message"].startswith(f"promotion {promotion_id} step")
    ]
    assert moves == [{"1": 90, "2": 10}, {"1": 50, "2": 50}, {"2": 100}]
    # ... and the answers followed them: v2's share of each step within 4.5 standard deviations
    # (requests sent from half a second into the step and answered before it ended)
    requests = [(sent, *r) for s in senders for sent, r in zip(s.sent, s.responses, strict=True)]
    steps = {s["index"]: s for s in body["rollout"]}
    for index, expected in ((1, 0.10), (2, 0.50)):
        step = steps[index]
        assert step["seconds"] >= BAKE_S and step["measured"]["source"] == "gateway"
        start, end = _ts(step["started_at"]) + 0.5, _ts(step["finished_at"])
        seen = [version for sent, done, _, version in requests if sent >= start and done < end]
        share = seen.count(2) / len(seen)
        tolerance = 4.5 * math.sqrt(expected * (1 - expected) / len(seen))
        assert len(seen) >= 30 and abs(share - expected) <= tolerance, (index, share, len(seen))
        assert step["measured"]["new"]["requests"] > 0 and step["measured"]["old"]["version"] == 1
    # every answer came from Ray Serve, and once the promotion completed only v2 answers
    assert {status for _, _, status, _ in requests} == {200}
    after = [version for s in senders for version in s.versions_sent_after(completed_at)]
    assert len(after) >= 20 and set(after) == {2}

    # v1 was retired after the (zero) guard period: its deployment row and its Serve application are gone
    assert traffic_of(api) == {2: 100}
    assert set(serve.status().applications) - serve_apps == {"acme-churn-v2"}
    predicted = api.post(
        f"{MODEL_BASE}/deployments/production/predict",
        json={"instances": [{"x1": 1.0, "x2": 0.5}]},
    )
    assert predicted.status_code == 200 and predicted.json["version"] == 2
