"""Windows: quality, drift, labels, serving figures, idempotent recomputation, the routes,
and the scheduler."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select, update

from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.monitoring import MonitorPoint, MonitorWindow
from mlplatform.core.monitoring.records import write_records
from mlplatform.core.monitoring.scheduler import close_due_windows
from mlplatform.core.monitoring.window_job import compute_monitor_window
from tests.api_client import Api
from tests.monitoring.conftest import WINDOW, Monitored, add_model, reference_frame

ROWS = 400


def upload_reference(monitored: Monitored, version: int = 1) -> None:
    frame = reference_frame(2000)
    response = monitored.api.put(
        f"{monitored.base}/versions/{version}/reference",
        data=frame.to_csv(index=False),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 201, response.json


def send_window(monitored: Monitored) -> None:
    """400 records: age shifted by 1.5 sd with 10% missing, income unshifted with 4 values
    out of range, plan with 10% of an unseen category; request ids r0..r399."""
    rng = np.random.default_rng(7)
    ages, incomes = rng.normal(55, 10, ROWS), rng.normal(50_000, 8_000, ROWS)
    incomes[:4] = 1e9
    records = []
    for i in range(ROWS):
        inputs: dict[str, Any] = {"age": None if i % 10 == 0 else float(ages[i]), "income": float(incomes[i])}
        inputs["plan"] = "vip" if i % 10 == 1 else ["basic", "plus", "pro"][i % 3]
        timestamp = (WINDOW + dt.timedelta(seconds=i)).isoformat()
        records.append(
            {
                "timestamp": timestamp,
                "inputs": inputs,
                "output": "churn" if i % 5 == 0 else "stay",
                "request_id": f"r{i}",
            }
        )
    response = monitored.api.post(monitored.events, json={"records": records})
    assert response.json["accepted"] == ROWS, response.json


def points(api: Api, deployment_id: int) -> list[tuple[Any, ...]]:
    with api.platform.db.read() as session:
        rows = session.execute(
            select(
                MonitorPoint.version_id,
                MonitorPoint.metric,
                MonitorPoint.feature,
                MonitorPoint.window_start,
                MonitorPoint.window_end,
                MonitorPoint.value,
            )
            .where(MonitorPoint.deployment_id == deployment_id)
            .order_by(MonitorPoint.metric, MonitorPoint.feature)
        ).all()
    return [tuple(r) for r in rows]


def by_key(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], float]:
    return {(r[1], r[2]): r[5] for r in rows}


def test_window_quality_drift_labels_and_recompute(monitored: Monitored) -> None:
    api = monitored.api
    upload_reference(monitored)
    send_window(monitored)
    labels = [
        {"request_id": f"r{i}", "label": ("churn" if i % 5 == 0 else "stay") if i % 10 else "other"} for i in range(100)
    ]
    assert api.post(monitored.events, json={"labels": labels}).json["accepted"] == 100

    result = compute_monitor_window(api.platform, monitored.deployment_id, WINDOW.isoformat())
    assert result["rows"] == ROWS
    first = points(api, monitored.deployment_id)
    values = by_key(first)
    assert values[("row_count", "")] == ROWS
    assert values[("missing_rate", "age")] == 0.1 and values[("missing_rate", "income")] == 0.0
    assert 0.01 <= values[("out_of_range_rate", "income")] < 0.02
    assert values[("unseen_category_rate", "plan")] == 0.1 and values[("unseen_categories", "plan")] == 1
    assert (
        values[("drifted", "age")] == 1.0
        and values[("ks_drifted", "age")] == 1.0
        and values[("psi_drifted", "age")] == 1.0
    )
    assert values[("drifted", "income")] == 0.0 and values[("psi", "income")] < 0.1
    assert values[("drifted_features", "")] >= 1 and values[("drift_share", "")] == values[("drifted_features", "")] / 3
    assert values[("prediction_share", "churn")] == 0.2 and values[("prediction_share", "stay")] == 0.8
    assert values[("labeled_count", "")] == 100 and values[("accuracy", "")] == 0.9
    assert 0 < values[("f1", "")] < 1
    assert ("psi", "@prediction") in values  # the reference has the output column
    assert all(r[0] == monitored.version_ids[1] and r[3] == WINDOW for r in first)

    compute_monitor_window(api.platform, monitored.deployment_id, WINDOW.isoformat())
    assert points(api, monitored.deployment_id) == first
    with api.platform.db.read() as session:
        windows = session.scalars(select(MonitorWindow)).all()
    assert [(w.window_start, w.row_count) for w in windows] == [(WINDOW, ROWS)]


def test_regression_labels_give_mae_and_rmse(api: Api) -> None:
    monitored = add_model(api, output_type="number")
    records = [
        {"timestamp": WINDOW.isoformat(), "inputs": {"age": 1.0}, "output": float(i), "request_id": f"q{i}"}
        for i in range(4)
    ]
    api.post(monitored.events, json={"records": records})
    api.post(
        monitored.events,
        json={"labels": [{"request_id": f"q{i}", "label": i + (1 if i % 2 else -3)} for i in range(4)]},
    )
    compute_monitor_window(api.platform, monitored.deployment_id, WINDOW.isoformat())
    values = by_key(points(api, monitored.deployment_id))
    assert values[("mae", "")] == 2.0 and values[("rmse", "")] == np.sqrt(5.0)
    assert values[("prediction_mean", "")] == 1.5 and values[("prediction_p50", "")] == 1.5


def test_gateway_rows_give_latency_and_error_rate(monitored: Monitored) -> None:
    api = monitored.api
    n = 100
    table = pa.table(
        {
            "request_id": [f"g{i}" for i in range(n)],
            "timestamp": pa.array([WINDOW] * n, pa.timestamp("ms", tz="UTC")),
            "version": pa.array([1] * n, pa.int32()),
            "output": ["stay"] * n,
            "latency_ms": [float(i + 1) for i in range(n)],
            "status": pa.array([500 if i < 5 else 200 for i in range(n)], pa.int16()),
            "source": ["gateway"] * n,
            "error": [None] * n,
            "inputs.age": [30.0] * n,
        }
    )
    write_records(api.platform.artifact_store, "p1", "churn", "production", table)
    compute_monitor_window(api.platform, monitored.deployment_id, WINDOW.isoformat())
    values = by_key(points(api, monitored.deployment_id))
    assert values[("error_rate", "")] == 0.05
    assert values[("latency_p50", "")] == 50.5 and 98 < values[("latency_p99", "")] <= 100
    assert values[("missing_rate", "plan")] == 1.0  # in the signature, never sent


def test_empty_window_records_zero_rows(monitored: Monitored) -> None:
    compute_monitor_window(monitored.api.platform, monitored.deployment_id, WINDOW.isoformat())
    assert [(r[1], r[5]) for r in points(monitored.api, monitored.deployment_id)] == [("row_count", 0.0)]


def test_summary_and_window_routes(monitored: Monitored) -> None:
    api = monitored.api
    url = f"{monitored.base}/deployments/production/monitoring"
    assert api.get(url).json["window"] is None
    upload_reference(monitored)
    send_window(monitored)
    api.user("dev", role="developer", project="p1")
    assert api.post(f"{url}/windows", json={"start": WINDOW.isoformat()}, token="dev").status_code == 403
    misaligned = api.post(f"{url}/windows", json={"start": (WINDOW + dt.timedelta(minutes=5)).isoformat()})
    assert misaligned.status_code == 400
    queued = api.post(f"{url}/windows", json={"start": WINDOW.isoformat()})
    assert queued.status_code == 202, queued.json
    assert queued.json["window_end"] == (WINDOW + dt.timedelta(hours=1)).isoformat()
    assert api.platform.jobs.wait_idle(30)

    summary = api.get(url, token="dev").json
    assert summary["window"]["start"] == WINDOW.isoformat() and summary["window"]["row_count"] == ROWS
    [version] = summary["versions"]
    assert (
        version["version"] == 1 and "age" in version["drifted_features"] and "income" not in version["drifted_features"]
    )
    assert version["overall"]["row_count"] == ROWS
    assert version["features"]["plan"]["unseen_category_rate"] == 0.1
    assert version["prediction"]["share"] == {"churn": 0.2, "stay": 0.8}


def test_canary_versions_are_computed_separately(api: Api) -> None:
    monitored = add_model(api, versions=2)
    records = [
        {"timestamp": WINDOW.isoformat(), "inputs": {"age": 1.0}, "version": 1},
        {"timestamp": WINDOW.isoformat(), "inputs": {"age": 2.0}},  # the main version: 2
        {"timestamp": WINDOW.isoformat(), "inputs": {"age": 3.0}, "version": 2},
    ]
    api.post(monitored.events, json={"records": records})
    compute_monitor_window(api.platform, monitored.deployment_id, WINDOW.isoformat())
    counts = {r[0]: r[5] for r in points(api, monitored.deployment_id) if r[1] == "row_count"}
    assert counts == {monitored.version_ids[1]: 1.0, monitored.version_ids[2]: 2.0}


def test_close_due_windows_enqueues_each_window_once(monitored: Monitored) -> None:
    platform = monitored.api.platform
    with platform.db.write() as session:
        session.execute(update(Deployment).values(created_at=WINDOW - dt.timedelta(minutes=30)))
    now = WINDOW + dt.timedelta(hours=1, minutes=2)
    enqueued = close_due_windows(platform, now=now)
    assert [start for _, start in enqueued] == [WINDOW - dt.timedelta(hours=1), WINDOW]
    assert platform.jobs.wait_idle(30)
    assert close_due_windows(platform, now=now) == []
    with platform.db.read() as session:
        assert len(session.scalars(select(MonitorWindow)).all()) == 2
    assert close_due_windows(platform, now=WINDOW + dt.timedelta(hours=1, seconds=30)) == []  # close_delay
