"""The events route: JSON, Parquet and Arrow IPC records with invalid ones, and labels."""

from __future__ import annotations

import datetime as dt
import io

import pyarrow as pa
import pyarrow.parquet as pq

from mlplatform.core.db.monitoring import MonitorLabel
from mlplatform.core.monitoring.records import WindowRecords, read_window
from tests.monitoring.conftest import WINDOW, Monitored


def stored(monitored: Monitored) -> WindowRecords:
    records = read_window(
        monitored.api.platform.artifact_store, "p1", "churn", "production", WINDOW, WINDOW + dt.timedelta(hours=1)
    )
    return records


def test_json_records_valid_invalid_and_violations(monitored: Monitored) -> None:
    t = WINDOW.isoformat()
    body = {
        "records": [
            {"timestamp": t, "inputs": {"age": 30, "income": 1.5, "plan": "pro"}, "output": "stay", "request_id": "r1"},
            {"inputs": {"age": 30}},  # no timestamp
            "not an object",
            {"timestamp": "2999-01-01T00:00:00", "inputs": {"age": 1}},
            {"timestamp": t, "inputs": {"age": [1, 2]}},
            {"timestamp": t, "inputs": {"age": 1}, "version": 7},
            {"timestamp": t, "inputs": {"age": "old", "colour": "red"}, "output": "churn"},
            {"timestamp": WINDOW.timestamp() + 60, "inputs": {"age": 41}, "typo": 1},
        ]
    }
    response = monitored.api.post(monitored.events, json=body)
    assert response.status_code == 200, response.json
    assert response.json["accepted"] == 2 and response.json["rejected"] == 6
    reasons = {e["index"]: e["reason"] for e in response.json["errors"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 7]
    assert "timestamp" in reasons[1] and "not an object" in reasons[2] and "future" in reasons[3]
    assert "not a scalar" in reasons[4] and "version 7" in reasons[5] and "typo" in reasons[7]

    records = stored(monitored)
    assert records.num_rows == 2
    assert records.features["age"].to_pylist() == [30.0, None]  # "old" had the wrong type
    assert records.table.column("violations").to_pylist()[1] == ["type:age", "unknown:colour"]
    assert records.table.column("request_id").to_pylist()[0] == "r1"


def _bulk(rows: int = 1000) -> pa.Table:
    start = int(WINDOW.timestamp() * 1000)
    return pa.table(
        {
            "timestamp": pa.array([start + i for i in range(rows)], pa.timestamp("ms")),
            "request_id": [f"b{i}" for i in range(rows)],
            "output": ["stay"] * rows,
            "age": [float(i % 90) for i in range(rows)],
            "income": [1000.0] * rows,
            "plan": ["basic"] * rows,
        }
    )


def test_parquet_body_with_invalid_rows(monitored: Monitored) -> None:
    table = _bulk()
    timestamps = table.column("timestamp").to_pylist()
    timestamps[3] = None
    timestamps[7] = dt.datetime(2999, 1, 1)
    table = table.set_column(0, "timestamp", pa.array(timestamps, pa.timestamp("ms")))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    response = monitored.api.post(
        monitored.events, data=buffer.getvalue(), headers={"Content-Type": "application/vnd.apache.parquet"}
    )
    assert response.status_code == 200, response.json
    assert response.json == {
        "accepted": 998,
        "rejected": 2,
        "errors": [
            {"index": 3, "reason": "timestamp is missing or not a valid time"},
            {"index": 7, "reason": "timestamp is in the future"},
        ],
    }
    records = stored(monitored)
    assert records.num_rows == 998 and set(records.features) == {"age", "income", "plan"}


def test_arrow_ipc_stream_and_type_violations(monitored: Monitored) -> None:
    table = _bulk(10).set_column(5, "plan", pa.array([1] * 10))  # plan is a string feature
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    response = monitored.api.post(
        monitored.events, data=sink.getvalue(), headers={"Content-Type": "application/vnd.apache.arrow.stream"}
    )
    assert response.status_code == 200 and response.json["accepted"] == 10
    records = stored(monitored)
    assert records.features["plan"].null_count == 10
    assert records.table.column("violations").to_pylist()[0] == ["type:plan"]


def test_bad_bodies(monitored: Monitored) -> None:
    api = monitored.api
    assert api.post(monitored.events, json={"records": [], "labels": []}).status_code == 400
    assert (
        api.post(monitored.events, data=b"xx", headers={"Content-Type": "application/vnd.apache.parquet"}).status_code
        == 400
    )
    assert api.post(monitored.events, data=b"a,b", headers={"Content-Type": "text/csv"}).status_code == 400
    assert (
        api.post("/api/v1/projects/p1/models/churn/deployments/staging/events", json={"records": []}).status_code == 404
    )


def test_labels_upsert_and_reasons(monitored: Monitored) -> None:
    labels = [
        {"request_id": "r1", "label": "stay"},
        {"request_id": "r2", "label": None},
        {"label": "x"},
        {"request_id": "r1", "label": "churn"},
    ]
    response = monitored.api.post(monitored.events, json={"labels": labels})
    assert response.status_code == 200
    assert response.json["accepted"] == 2 and response.json["rejected"] == 2
    with monitored.api.platform.db.read() as session:
        assert [(label.request_id, label.label) for label in session.query(MonitorLabel)] == [("r1", "churn")]


def test_developer_may_send_viewer_may_not(monitored: Monitored) -> None:
    api = monitored.api
    api.user("dev", role="developer", project="p1")
    api.user("viewer", role="viewer", project="p1")
    body = {"records": [{"timestamp": WINDOW.isoformat(), "inputs": {"age": 1}}]}
    assert api.post(monitored.events, json=body, token="dev").status_code == 200
    assert api.post(monitored.events, json=body, token="viewer").status_code == 403
