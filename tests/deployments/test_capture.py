"""Inference capture: Parquet files in the record layout, sampling, a full buffer that drops."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mlplatform.core.capture import Capture, CaptureRecord
from tests.api_client import Api
from tests.deployments.conftest import ROWS, add_version, deploy, predict


def read_captured(api: Api, prefix: str = "monitoring/acme/churn/staging/") -> list:
    store = api.platform.artifact_store
    tables = []
    for info in store.list(prefix):
        with store.open(info.path) as stream:
            tables.append(pq.read_table(stream))
    return tables


def test_gateway_writes_parquet_records(dapi: Callable[..., Api], tmp_path: Path) -> None:
    api = dapi({"gateway": {"capture": {"flush_interval": 60}}})
    add_version(api.platform, tmp_path, 1)
    add_version(api.platform, tmp_path, 2, signature=None)  # no signature: the model itself rejects bad input
    deploy(api, 1)
    assert predict(api, {"instances": ROWS}, headers={"X-Request-ID": "r-ok"}).status_code == 200
    assert predict(api, {"instances": [{"x1": "bad", "x2": 1.0}]}).status_code == 422  # not validated: not captured
    gateway = api.app.extensions["mlplatform_gateway"]
    assert gateway.capture.flush(10)

    tables = read_captured(api)
    assert len(tables) == 1
    path = next(iter(api.platform.artifact_store.list("monitoring/"))).path
    now = dt.datetime.now(dt.UTC)
    assert path.startswith(f"monitoring/acme/churn/staging/{now:%Y-%m-%d}/") and path.endswith(".parquet")
    table = tables[0]
    assert {
        "request_id",
        "timestamp",
        "version",
        "output",
        "latency_ms",
        "status",
        "source",
        "error",
        "inputs.x1",
        "inputs.x2",
    } <= set(table.column_names)
    rows = table.to_pylist()
    assert [(r["request_id"], r["version"], r["status"], r["output"], r["inputs.x1"]) for r in rows] == [
        ("r-ok", 1, 200, 0, 0.0),
        ("r-ok", 1, 200, 1, 1.1),
    ]
    assert rows[0]["latency_ms"] > 0 and rows[0]["source"] == "gateway" and rows[0]["error"] is None

    deploy(api, 2)
    response = predict(api, {"instances": [{"x1": "high", "x2": 1.0}]}, headers={"X-Request-ID": "r-err"})
    assert response.status_code == 422, response.json
    assert gateway.capture.flush(10)
    errors = [r for t in read_captured(api) for r in t.to_pylist() if r["request_id"] == "r-err"]
    assert len(errors) == 1 and errors[0]["status"] == 422 and errors[0]["output"] is None
    assert "failed on this batch" in errors[0]["error"] and errors[0]["version"] == 2


def test_sampling_and_disabled(dapi: Callable[..., Api], tmp_path: Path) -> None:
    api = dapi({"gateway": {"capture": {"sample_rate": 0.0}}})
    add_version(api.platform, tmp_path, 1)
    deploy(api, 1)
    for _ in range(5):
        assert predict(api, {"instances": ROWS}).status_code == 200
    assert api.app.extensions["mlplatform_gateway"].capture.flush(10)
    assert read_captured(api) == []


def record(index: int, when: dt.datetime | None = None) -> CaptureRecord:
    import pandas as pd

    frame = pd.DataFrame({"x1": [float(index)], "tag": ["a"]})
    return CaptureRecord(
        "acme", "churn", "staging", 1, f"r{index}", when or dt.datetime.now(dt.UTC), 1.5, 200, None, frame, [[0.1, 0.9]]
    )


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_full_buffer_drops_and_counts(dapi: Callable[..., Api]) -> None:
    api = dapi()
    capture = Capture(api.platform.artifact_store, buffer_size=3, flush_interval=60)
    capture._ensure_thread = lambda: None  # type: ignore[method-assign]  # nothing drains: the buffer fills
    accepted = [capture.submit(record(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False] and capture.dropped == 2
    del capture._ensure_thread  # the writer may run again
    assert capture.flush(10)
    rows = [r for t in read_captured(api) for r in t.to_pylist()]
    assert sorted(r["request_id"] for r in rows) == ["r0", "r1", "r2"]
    assert rows[0]["output"] == "[0.1, 0.9]"  # not a scalar: JSON text
    capture.close()
    assert capture.submit(record(9)) is False

    gateway = api.app.extensions["mlplatform_gateway"]
    gateway.capture.dropped = 7
    assert "mlplatform_capture_dropped_total 7.0" in api.get("/api/v1/metrics").get_data(as_text=True)


def test_records_split_by_hour(tmp_path: Path) -> None:
    from mlplatform.plugins.local_storage import LocalArtifactStore

    store = LocalArtifactStore({"root": str(tmp_path)}, None)
    capture = Capture(store, flush_interval=0.05)
    base = dt.datetime(2026, 1, 2, 3, 59, 59, tzinfo=dt.UTC)
    capture.submit(record(1, base))
    capture.submit(record(2, base + dt.timedelta(seconds=2)))
    assert capture.flush(10)
    paths = sorted(info.path for info in store.list("monitoring/"))
    assert [p.rsplit("/", 1)[0] for p in paths] == [
        "monitoring/acme/churn/staging/2026-01-02/03",
        "monitoring/acme/churn/staging/2026-01-02/04",
    ]
    capture.close()


def test_flush_returns_under_steady_traffic(tmp_path: Path) -> None:
    """A flush writes what was submitted before it, even when records arrive during every write."""
    from mlplatform.plugins.local_storage import LocalArtifactStore

    arrivals = itertools.count(100)

    class ArrivingStore(LocalArtifactStore):
        def put(self, path: str, stream: Any, size: int | None = None) -> Any:
            capture.submit(record(next(arrivals)))  # traffic never stops while we write
            return super().put(path, stream, size)

    store = ArrivingStore({"root": str(tmp_path)}, None)
    capture = Capture(store, flush_interval=60)
    capture.submit(record(1))
    assert capture.flush(10)
    written = {r["request_id"] for info in store.list("monitoring/") for r in _rows(store, info.path)}
    assert "r1" in written
    capture.close()


def _rows(store: Any, path: str) -> list[dict]:
    with store.open(path) as stream:
        return pq.read_table(stream).to_pylist()
