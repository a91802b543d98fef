"""Compaction of record files: every row kept once, readers during a compaction, the lease,
recomputes after compaction, late records after compaction."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from mlplatform.core.backends import ArtifactInfo
from mlplatform.core.db.monitoring import MonitorCompaction, MonitorWindow
from mlplatform.core.monitoring import compaction
from mlplatform.core.monitoring.compaction import compact_hour, compact_hours, compact_window
from mlplatform.core.monitoring.records import (
    MERGED_PREFIX,
    hour_prefix,
    read_hour,
    read_window,
    write_records,
)
from mlplatform.core.monitoring.window_job import compute_monitor_window
from mlplatform.plugins.local_storage import LocalArtifactStore
from tests.monitoring.conftest import WINDOW, Monitored
from tests.monitoring.test_windows import points, upload_reference

PREFIX = hour_prefix("p1", "churn", "production", WINDOW)
HOUR = dt.timedelta(hours=1)
FLOAT = pa.float64()


def batch(ids: range, *, age: pa.DataType = FLOAT, plan: bool = True) -> pa.Table:
    """Records of the hour, ``r<i>`` for each id, one second apart."""
    n = len(ids)
    columns: dict[str, Any] = {
        "request_id": [f"r{i}" for i in ids],
        "timestamp": pa.array([WINDOW + dt.timedelta(seconds=i) for i in ids], pa.timestamp("ms", tz="UTC")),
        "output": ["stay"] * n,
        "source": ["events"] * n,
        "inputs.age": pa.array([i % 90 for i in ids], pa.int64()).cast(age),
    }
    if plan:
        columns["inputs.plan"] = ["basic", "pro"] * (n // 2) + ["plus"] * (n % 2)
    return pa.table(columns)


def files(store: Any) -> list[str]:
    return [info.path.rsplit("/", 1)[-1] for info in store.list(PREFIX)]


def ids(store: Any) -> list[str]:
    """Request ids of the hour as ``read_hour`` reads them (duplicates kept)."""
    snapshot = read_hour(store, PREFIX)
    return [i for path in snapshot.live for i in snapshot.tables[path].column("request_id").to_pylist()]


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    """Three small files of different shapes in one hour folder: ages as integers, ages as
    floats without ``plan``, and the older layout with the inputs as one struct column."""
    store = LocalArtifactStore({"root": str(tmp_path / "artifacts")})
    write_records(store, "p1", "churn", "production", batch(range(0, 100), age=pa.int64()))
    write_records(store, "p1", "churn", "production", batch(range(100, 150), plan=False))
    old = batch(range(150, 160))
    struct = pa.StructArray.from_arrays([old.column("inputs.age").combine_chunks()], names=["age"])
    old = old.drop_columns(["inputs.age", "inputs.plan"]).append_column("inputs", struct)
    buffer = io.BytesIO()
    pq.write_table(old, buffer)
    store.put(f"{PREFIX}old-layout.parquet", io.BytesIO(buffer.getvalue()), len(buffer.getvalue()))
    return store


EVERY_ID = sorted(f"r{i}" for i in range(160))


def test_compaction_keeps_every_row_once(store: LocalArtifactStore) -> None:
    end = WINDOW + HOUR
    before = read_window(store, "p1", "churn", "production", WINDOW, end)
    assert sorted(ids(store)) == EVERY_ID

    done = compact_hour(store, PREFIX, WINDOW)
    assert (done.merged, done.rows) == (3, 160)
    [merged] = files(store)
    assert merged == done.file and merged.startswith(f"{MERGED_PREFIX}000001-")
    after = read_window(store, "p1", "churn", "production", WINDOW, end)
    assert sorted(ids(store)) == EVERY_ID
    assert after.table.column("request_id").to_pylist() == before.table.column("request_id").to_pylist()
    for feature in ("age", "plan"):
        assert after.features[feature].to_pylist() == before.features[feature].to_pylist()
    assert after.features["age"].type == before.features["age"].type == pa.float64()

    # Idempotent: one file is left alone.
    again = compact_hour(store, PREFIX, WINDOW)
    assert (again.merged, again.file) == (0, None) and files(store) == [merged]

    # A late file is read beside the merged one, then merged with it into the next generation.
    write_records(store, "p1", "churn", "production", batch(range(160, 170)))
    assert sorted(ids(store)) == sorted(f"r{i}" for i in range(170))
    second = compact_hour(store, PREFIX, WINDOW)
    assert (second.merged, second.rows) == (2, 170)
    assert files(store) == [second.file] and second.file.startswith(f"{MERGED_PREFIX}000002-")
    assert sorted(ids(store)) == sorted(f"r{i}" for i in range(170))


class Spy:
    """An artifact store around ``inner`` that lets a test act at given moments."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.on_delete: Any = None
        self.on_open: Any = None
        self.listing_filter: Any = None

    def put(self, path: str, stream: IO[bytes], size: int | None = None) -> ArtifactInfo:
        return self.inner.put(path, stream, size)

    def open(self, path: str) -> IO[bytes]:
        if self.on_open is not None:
            self.on_open(path)
        return self.inner.open(path)

    def list(self, prefix: str = "") -> Iterator[ArtifactInfo]:
        found = list(self.inner.list(prefix))
        if self.listing_filter is not None:
            found, self.listing_filter = self.listing_filter(found), None  # only the next listing
        return iter(found)

    def delete(self, path: str) -> None:
        if self.on_delete is not None:
            self.on_delete(path)
        self.inner.delete(path)


def test_a_reader_at_every_step_of_a_compaction_sees_each_row_once(store: LocalArtifactStore) -> None:
    seen: list[list[str]] = []
    spy = Spy(store)
    spy.on_delete = lambda path: seen.append(sorted(ids(store)))  # merged file written, parts going
    compact_hour(spy, PREFIX, WINDOW)
    assert len(seen) == 3 and all(found == EVERY_ID for found in seen)


def test_a_file_deleted_between_listing_and_reading_makes_the_reader_list_again(store: LocalArtifactStore) -> None:
    spy = Spy(store)
    compacted: list[str] = []

    def compact_first(path: str) -> None:
        if not compacted:  # a compaction finishes after the reader listed the folder
            compacted.append(compact_hour(store, PREFIX, WINDOW).file or "")

    spy.on_open = compact_first
    assert sorted(ids(spy)) == EVERY_ID and compacted


def test_a_listing_that_missed_a_compaction_is_read_again(store: LocalArtifactStore) -> None:
    """A folder is listed bit by bit: a listing can miss the merged file written meanwhile and
    a part deleted meanwhile. The second listing shows the merged file: the read starts over."""
    first_part = sorted(files(store))[0]
    # The compaction has written its merged file and deleted one part so far.
    kept = {name for name in files(store) if name != first_part}
    interrupted = Spy(store)
    interrupted.delete = lambda path: store.delete(path) if path.endswith(first_part) else None  # type: ignore[method-assign]
    done = compact_hour(interrupted, PREFIX, WINDOW)
    assert set(files(store)) == kept | {done.file}
    reader = Spy(store)
    reader.listing_filter = lambda found: [i for i in found if MERGED_PREFIX not in i.path]  # missed the merged file
    assert sorted(ids(reader)) == EVERY_ID
    # A later compaction deletes the files the merged one replaced and is left alone.
    assert compact_hour(store, PREFIX, WINDOW).file is None and files(store) == [done.file]


def send(monitored: Monitored, ids: range) -> None:
    records = [
        {
            "timestamp": (WINDOW + dt.timedelta(seconds=i)).isoformat(),
            "inputs": {"age": float(20 + i % 50), "income": 50_000.0 + i, "plan": ["basic", "plus", "pro"][i % 3]},
            "output": "churn" if i % 5 == 0 else "stay",
            "request_id": f"r{i}",
        }
        for i in ids
    ]
    response = monitored.api.post(monitored.events, json={"records": records})
    assert response.json["accepted"] == len(ids), response.json


def row_count(monitored: Monitored) -> int:
    with monitored.api.platform.db.read() as session:
        return session.scalars(select(MonitorWindow.row_count)).one()


def test_recompute_after_compaction_gives_the_same_points(monitored: Monitored) -> None:
    platform = monitored.api.platform
    upload_reference(monitored)
    for start in range(0, 400, 100):
        send(monitored, range(start, start + 100))
    assert len(files(platform.artifact_store)) == 4
    # A window computed before its hour ended (plus close_delay) closes nothing.
    assert (
        compact_window(
            platform, monitored.deployment_id, "p1", "churn", "production", WINDOW, WINDOW + HOUR, now=WINDOW + HOUR
        )
        == []
    )

    first = compute_monitor_window(platform, monitored.deployment_id, WINDOW.isoformat())
    assert (first["rows"], first["compacted"]) == (400, 1)
    [merged] = files(platform.artifact_store)
    assert merged.startswith(MERGED_PREFIX)
    computed = points(monitored.api, monitored.deployment_id)

    again = compute_monitor_window(platform, monitored.deployment_id, WINDOW.isoformat())
    assert (again["rows"], again["compacted"]) == (400, 0)
    assert points(monitored.api, monitored.deployment_id) == computed
    with platform.db.read() as session:
        lease = session.scalars(select(MonitorCompaction)).one()
    assert (lease.file, lease.files_merged, lease.row_count, lease.leased_until) == (merged, 4, 400, None)


def test_late_records_after_compaction_are_counted(monitored: Monitored) -> None:
    platform = monitored.api.platform
    upload_reference(monitored)
    send(monitored, range(0, 100))
    send(monitored, range(100, 200))
    compute_monitor_window(platform, monitored.deployment_id, WINDOW.isoformat())
    assert row_count(monitored) == 200 and len(files(platform.artifact_store)) == 1

    send(monitored, range(200, 250))  # late: the window was computed and compacted
    assert platform.jobs.wait_idle(30)  # the events route queued the window again
    assert row_count(monitored) == 250
    recomputed = points(monitored.api, monitored.deployment_id)
    assert len(files(platform.artifact_store)) == 2  # compacted a moment ago: not again yet

    [done] = compact_hours(
        platform, monitored.deployment_id, "p1", "churn", "production", [WINDOW], min_interval=dt.timedelta(0)
    )
    assert (done.merged, done.rows) == (2, 250) and files(platform.artifact_store) == [done.file]
    compute_monitor_window(platform, monitored.deployment_id, WINDOW.isoformat())
    assert row_count(monitored) == 250
    assert points(monitored.api, monitored.deployment_id) == recomputed


def test_a_held_lease_skips_the_hour(monitored: Monitored) -> None:
    platform = monitored.api.platform
    send(monitored, range(0, 10))
    send(monitored, range(10, 20))
    now = dt.datetime.now(dt.UTC)
    with platform.db.write() as session:
        session.add(
            MonitorCompaction(
                deployment_id=monitored.deployment_id, hour_start=WINDOW, leased_until=now + dt.timedelta(minutes=5)
            )
        )
    args = (platform, monitored.deployment_id, "p1", "churn", "production", [WINDOW])
    [busy] = compact_hours(*args)
    assert busy.skipped and len(files(platform.artifact_store)) == 2
    with platform.db.write() as session:
        session.scalars(select(MonitorCompaction)).one().leased_until = now - compaction.LEASE  # its holder died
    [done] = compact_hours(*args)
    assert not done.skipped and done.merged == 2 and len(files(platform.artifact_store)) == 1
