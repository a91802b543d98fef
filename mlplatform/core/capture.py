"""Inference capture: the gateway hands each sampled request here without waiting.

``Capture.submit`` appends a record to a bounded buffer (``gateway.capture.buffer_size``) and
returns at once; when the buffer is full the record is dropped and counted (``dropped``),
so a slow artifact store never slows a prediction. A background thread drains the buffer and,
every ``flush_interval`` seconds (sooner when a batch is large), writes one Parquet file per
deployment and UTC hour through ``mlplatform.core.monitoring.records`` (the one record
layout, shared with the events route)::

    monitoring/<project>/<model>/<env>/<YYYY-MM-DD>/<HH>/<uuid>.parquet

(merged into one file per hour once the hour's windows are closed:
:mod:`mlplatform.core.monitoring.compaction`).

One row per input row: ``request_id``, ``timestamp`` (ms, UTC), ``version``, ``inputs.<column>``
(one per input column), ``output`` (the row's prediction; null on error; JSON text when not
a scalar), ``latency_ms`` (of the whole request), ``status`` (the HTTP status answered),
``source`` (``gateway``) and ``error`` (the model's error message, or null).

The thread starts on the first record and stops after a minute without any, so an idle
platform holds no thread. Writing failures are logged and counted (``failed_batches``),
never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlplatform.core.backends import ArtifactStore

log = logging.getLogger("mlplatform.capture")

MAX_BATCH_RECORDS = 5000
IDLE_EXIT_S = 60.0
INPUT_PREFIX = "inputs."
SOURCE = "gateway"
FIXED_COLUMNS = ("request_id", "timestamp", "version", "output", "latency_ms", "status", "error")


@dataclass(slots=True)
class CaptureRecord:
    """One request as the gateway saw it. ``inputs`` is the validated DataFrame (not copied:
    the gateway never changes it after handing it over); ``outputs`` one value per row."""

    project: str
    model: str
    environment: str
    version: int | None
    request_id: str
    timestamp: dt.datetime
    latency_ms: float
    status: int  # the HTTP status answered
    error: str | None
    inputs: Any
    outputs: list[Any] | None


class Capture:
    """The bounded buffer and its writer thread; see the module docstring. Thread-safe.

    ``submit`` only appends to a deque: it never wakes the writer per record (a thread
    switch per request would cost more than the rest of capture). The writer wakes every
    ``flush_interval``, when the buffer is half full, or when ``flush``/``close`` asks.
    """

    def __init__(
        self,
        store: ArtifactStore,
        *,
        buffer_size: int = 10000,
        flush_interval: float = 5.0,
        sample_rate: float = 1.0,
        enabled: bool = True,
    ) -> None:
        self.store = store
        self.enabled = enabled and sample_rate > 0
        self.sample_rate = sample_rate
        self.flush_interval = flush_interval
        self.buffer_size = buffer_size
        self.dropped = 0
        self.written_files = 0
        self.failed_batches = 0
        self._buffer: deque[CaptureRecord] = deque()
        self._wake_at = max(1, min(buffer_size // 2, MAX_BATCH_RECORDS))
        self._wake = threading.Event()
        self._flushes: list[threading.Event] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @classmethod
    def from_config(cls, store: ArtifactStore, config: Mapping[str, Any]) -> Capture:
        """From the ``gateway.capture`` config section."""
        return cls(
            store,
            buffer_size=config["buffer_size"],
            flush_interval=config["flush_interval"],
            sample_rate=config["sample_rate"],
            enabled=config["enabled"],
        )

    def sampled(self) -> bool:
        """Whether to capture this request (``sample_rate`` honoured). Cheap: call it first."""
        return self.enabled and (self.sample_rate >= 1.0 or random.random() < self.sample_rate)

    def submit(self, record: CaptureRecord) -> bool:
        """Buffer ``record`` without blocking. False (and ``dropped`` + 1) when the buffer is full."""
        if self._closed:
            return False
        size = len(self._buffer)
        if size >= self.buffer_size:
            with self._lock:
                self.dropped += 1
            return False
        self._buffer.append(record)
        if self._thread is None:  # read after the append: see _run's idle exit
            self._ensure_thread()
        elif size + 1 == self._wake_at:
            self._wake.set()
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything submitted so far; False if that took longer than ``timeout``."""
        done = threading.Event()
        with self._lock:
            self._flushes.append(done)
        self._ensure_thread()
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is buffered and stop the thread. Later records are dropped."""
        self._closed = True
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join(timeout)

    # --- the writer thread ------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mlplatform-capture", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        idle = 0.0
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._lock:
                flushes, self._flushes = self._flushes, []
            wrote = False
            # Only what is buffered now: under steady traffic the buffer never empties, and
            # a flush must still return once the records submitted before it are written.
            remaining = len(self._buffer)
            while remaining > 0:
                batch = [self._buffer.popleft() for _ in range(min(remaining, MAX_BATCH_RECORDS))]
                remaining -= len(batch)
                self._write(batch)
                wrote = True
            for done in flushes:
                done.set()
            idle = 0.0 if wrote else idle + self.flush_interval
            if self._closed:
                with self._lock:
                    self._thread = None
                return
            if idle >= IDLE_EXIT_S:
                with self._lock:
                    # submit() appends before it looks at the thread, so a record is never stranded for long.
                    if not self._buffer and not self._flushes:
                        self._thread = None
                        return

    def _write(self, records: list[CaptureRecord]) -> None:
        from mlplatform.core.monitoring.records import write_records

        groups: dict[tuple[str, str, str], list[CaptureRecord]] = defaultdict(list)
        for record in records:
            groups[(record.project, record.model, record.environment)].append(record)
        for (project, model, env), group in groups.items():
            try:
                self.written_files += len(write_records(self.store, project, model, env, to_table(group)))
            except Exception:  # noqa: BLE001 - capture never takes the gateway down
                self.failed_batches += 1
                log.exception("writing %d captured requests of %s/%s/%s failed", len(group), project, model, env)


def to_table(records: list[CaptureRecord]) -> Any:
    """A ``pyarrow.Table`` of ``records`` in the record layout, one row per input row."""
    import pandas as pd
    import pyarrow as pa

    columns: dict[str, list[Any]] = {name: [] for name in FIXED_COLUMNS}
    frames = []
    for record in records:
        frame = record.inputs if record.inputs is not None else pd.DataFrame(index=[0])
        count = len(frame)
        outputs = record.outputs if record.outputs is not None and len(record.outputs) == count else [None] * count
        columns["request_id"] += [record.request_id] * count
        columns["timestamp"] += [record.timestamp] * count
        columns["version"] += [record.version] * count
        columns["latency_ms"] += [record.latency_ms] * count
        columns["status"] += [record.status] * count
        columns["error"] += [record.error] * count
        columns["output"] += list(outputs)
        frames.append(frame)
    # One concat per batch is several times cheaper than reading each small frame's columns.
    inputs = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    arrays = {
        "request_id": pa.array(columns["request_id"], pa.string()),
        "timestamp": pa.array(columns["timestamp"], pa.timestamp("ms", tz="UTC")),
        "version": pa.array(columns["version"], pa.int32()),
        "output": _array(columns["output"]),
        "latency_ms": pa.array(columns["latency_ms"], pa.float64()),
        "status": pa.array(columns["status"], pa.int16()),
        "source": pa.array([SOURCE] * len(inputs), pa.string()),
        "error": pa.array(columns["error"], pa.string()),
    }
    for name in inputs.columns:
        try:
            array = pa.Array.from_pandas(inputs[name])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            array = _array(inputs[name].tolist())
        arrays[f"{INPUT_PREFIX}{name}"] = _array(array.to_pylist()) if pa.types.is_nested(array.type) else array
    return pa.table(arrays)


def _array(values: list[Any]) -> Any:
    """A typed Arrow array; JSON text when the values are not scalars of one type."""
    import pyarrow as pa

    try:
        array = pa.array(values)
        if not pa.types.is_nested(array.type):
            return array
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        pass
    return pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string())
