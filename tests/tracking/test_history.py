"""Metric history: paging, downsampling that keeps first/last/min/max, several runs and keys at once."""

from __future__ import annotations

import math
import random

import pytest

from mlplatform.core.errors import InvalidInput
from mlplatform.core.services.metric_history import downsample
from tests.api_client import Api
from tests.tracking.conftest import P, experiment, log, run


def test_downsample_keeps_first_last_min_max() -> None:
    rng = random.Random(7)
    for n in (5, 10, 101, 1000, 9999):
        points = [(i, i, rng.uniform(-1, 1)) for i in range(n)]
        points[n // 3] = (n // 3, 0, 50.0)
        points[2 * n // 3] = (2 * n // 3, 0, -50.0)
        for max_points in (4, 5, 10, 64, 500):
            kept = downsample(points, max_points)
            assert len(kept) <= max_points or len(kept) == n
            assert kept[0] == points[0] and kept[-1] == points[-1]
            values = [p[2] for p in kept]
            assert max(values) == 50.0 and min(values) == -50.0
            assert [p[0] for p in kept] == sorted(p[0] for p in kept)  # still in step order


def test_downsample_edge_cases() -> None:
    points = [(i, i, None if i % 2 else float(i)) for i in range(20)]  # NaN every other point
    kept = downsample(points, 6)
    assert kept[0] == points[0] and kept[-1] == points[-1] and len(kept) <= 6
    assert downsample([(0, 0, None)] * 10, 4)[0] == (0, 0, None)
    with_inf = [(i, i, 1.0) for i in range(100)]
    with_inf[40] = (40, 40, math.inf)
    assert (40, 40, math.inf) in downsample(with_inf, 10)
    assert downsample(points[:3], 4) == points[:3]
    with pytest.raises(InvalidInput):
        downsample(points, 3)


def test_history_is_ordered_by_step_and_paged(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    steps = list(range(250))
    random.Random(1).shuffle(steps)
    for chunk in range(0, 250, 100):
        log(
            api,
            r,
            metrics=[
                {"key": "loss/train", "value": s / 10, "step": s, "timestamp": s} for s in steps[chunk : chunk + 100]
            ],
        )
    log(api, r, metrics=[{"key": "loss/train", "value": -1, "step": 7, "timestamp": 9999}])  # a second point at step 7
    collected, token = [], None
    while True:
        query = {"page_size": 60, **({"page_token": token} if token else {})}
        page = api.get(f"{P}/runs/{r}/metrics/loss/train", query_string=query, token="viewer").json
        collected += page["items"]
        token = page["next_page_token"]
        if token is None:
            break
    assert [p["step"] for p in collected] == sorted([*range(250), 7])
    assert [p["value"] for p in collected if p["step"] == 7] == [0.7, -1.0]  # logging order within a step
    assert page["key"] == "loss/train" and page["run_id"] == r
    assert api.get(f"{P}/runs/{r}/metrics/nothing").json["items"] == []
    assert api.get(f"{P}/runs/{r}/metrics/loss/train", query_string={"page_token": "garbage"}).status_code == 400


def test_history_of_a_run_elsewhere_is_404(tracked: Api) -> None:
    """The run's project is checked in the same query as the points: another project's run
    (even one with points) and a missing run are 404, an empty series of a run is not."""
    api = tracked
    assert api.post("/api/v1/projects", json={"name": "p2"}).status_code == 201
    e2 = api.post("/api/v1/projects/p2/experiments", json={"name": "x"}).json["id"]
    body = {"metrics": [{"key": "m", "value": 1.0, "step": 0}]}
    stranger = api.post(f"/api/v1/projects/p2/experiments/{e2}/runs", json=body).json["id"]
    assert api.get(f"/api/v1/projects/p2/runs/{stranger}/metrics/m").json["items"][0]["value"] == 1.0
    assert api.get(f"{P}/runs/{stranger}/metrics/m").status_code == 404
    assert api.get(f"{P}/runs/{stranger}/metrics/m", query_string={"max_points": 10}).status_code == 404
    assert api.get(f"{P}/runs/{'0' * 32}/metrics/m").status_code == 404
    mine = run(api, experiment(api))["id"]
    assert api.get(f"{P}/runs/{mine}/metrics/m", query_string={"max_points": 10}).json["items"] == []


def test_history_downsampled_view(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    values = [math.sin(i / 50) for i in range(3000)]
    values[1234] = 99.0
    values[2345] = -99.0
    for chunk in range(0, 3000, 1000):
        log(
            api,
            r,
            metrics=[{"key": "acc", "value": values[i], "step": i, "timestamp": i} for i in range(chunk, chunk + 1000)],
        )
    page = api.get(f"{P}/runs/{r}/metrics/acc", query_string={"max_points": 100}).json
    points = page["items"]
    assert len(points) <= 100 and page["next_page_token"] is None
    assert points[0]["step"] == 0 and points[-1]["step"] == 2999
    assert {p["value"] for p in points} >= {99.0, -99.0}
    assert api.get(f"{P}/runs/{r}/metrics/acc", query_string={"max_points": 2}).status_code == 422


def test_compare_several_runs_and_keys(tracked: Api) -> None:
    api = tracked
    eid = experiment(api)
    a, b = run(api, eid)["id"], run(api, eid)["id"]
    for rid, scale in ((a, 1), (b, 2)):
        log(api, rid, metrics=[{"key": k, "value": i * scale, "step": i} for k in ("loss", "acc") for i in range(500)])
    body = api.post(
        f"{P}/metrics/history",
        json={"runs": [a, b], "keys": ["loss", "acc", "missing"], "max_points": 50},
        token="viewer",
    ).json
    assert [(s["run_id"], s["key"]) for s in body["series"]] == [(a, "loss"), (a, "acc"), (b, "loss"), (b, "acc")]
    for series in body["series"]:
        assert len(series["points"]) <= 50 and series["points"][0]["step"] == 0 and series["points"][-1]["step"] == 499
    full = api.post(f"{P}/metrics/history", json={"runs": [a], "keys": ["loss"], "max_points": None}).json
    assert len(full["series"][0]["points"]) == 500
    assert api.post(f"{P}/metrics/history", json={"runs": [a, "f" * 32], "keys": ["loss"]}).status_code == 404
