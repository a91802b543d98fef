"""Inference capture: the gateway hands each sampled request here without waiting.

``Capture.submit`` puts a record on a bounded queue (``gateway.capture.buffer_size``) and
returns at once; when the queue is full the record is dropped and counted (``dropped``),
so a slow artifact store never slows a prediction. A background thread drains the queue and
writes a Parquet file per deployment and hour every ``flush_interval`` seconds (or sooner
when a batch is large) to the artifact store::

    monitoring/<project>/<model>/<env>/<YYYY-MM-DD>/<HH>/<uuid>.parquet   (UTC)

One Parquet row per input row, with columns:

- ``request_id`` (string), ``timestamp`` (timestamp[us, UTC]), ``version`` (int64, null when
  no version was chosen), ``status`` (``ok`` | ``error``), ``error`` (string or null),
  ``latency_ms`` (double, of the whole request), ``row`` (int32, the row's index in its request);
- ``prediction``: the model's output for the row (null on error);
- ``input.<column>``: one per input column.

A column whose values pyarrow cannot type consistently is written as JSON text. The thread
starts on the first record and stops after a minute without any, so an idle platform holds
no thread. Writing failures are logged and counted (``failed_batches``), never raised.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlplatform.core.backends import ArtifactStore

log = logging.getLogger("mlplatform.capture")

MAX_BATCH_RECORDS = 5000
IDLE_EXIT_S = 60.0
PREFIX = "monitoring"
FIXED_COLUMNS = ("request_id", "timestamp", "version", "status", "error", "latency_ms", "row", "prediction")


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
    status: str
    error: str | None
    inputs: Any
    outputs: list[Any] | None


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class Capture:
    """The bounded buffer and its writer thread; see the module docstring. Thread-safe."""

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
        self.dropped = 0
        self.written_files = 0
        self.failed_batches = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=buffer_size)
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
        """Queue ``record`` without blocking. False (and ``dropped`` + 1) when the buffer is full."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False
        if self._thread is None:
            self._ensure_thread()
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything submitted so far; False if that took longer than ``timeout``."""
        marker = _Flush()
        self._ensure_thread()
        self._queue.put(marker, timeout=timeout)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is buffered and stop the thread. Later records are dropped."""
        self._closed = True
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP, timeout=timeout)
            thread.join(timeout)

    # --- the writer thread ------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mlplatform-capture", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        pending: list[CaptureRecord] = []
        deadline = 0.0
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if pending else IDLE_EXIT_S
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, CaptureRecord):
                if not pending:
                    deadline = time.monotonic() + self.flush_interval
                pending.append(item)
                if len(pending) >= MAX_BATCH_RECORDS or time.monotonic() >= deadline:
                    self._write(pending)
                    pending = []
                continue
            if pending:  # the flush interval is up, or a flush or stop was asked for
                self._write(pending)
                pending = []
            if isinstance(item, _Flush):
                item.done.set()
            elif item is _STOP:
                with self._lock:
                    self._thread = None
                return
            elif item is None and timeout == IDLE_EXIT_S:
                with self._lock:
                    if self._queue.empty():  # submit() puts before it checks the thread
                        self._thread = None
                        return

    def _write(self, records: list[CaptureRecord]) -> None:
        groups: dict[tuple[str, ...], list[CaptureRecord]] = defaultdict(list)
        for record in records:
            stamp = record.timestamp.astimezone(dt.timezone.utc)
            key = (record.project, record.model, record.environment, stamp.strftime("%Y-%m-%d"), stamp.strftime("%H"))
            groups[key].append(record)
        for (project, model, env, day, hour), group in groups.items():
            path = f"{PREFIX}/{project}/{model}/{env}/{day}/{hour}/{uuid.uuid4().hex}.parquet"
            try:
                data = to_parquet(group)
                self.store.put(path, io.BytesIO(data), len(data))
                self.written_files += 1
            except Exception:  # noqa: BLE001 - capture never takes the gateway down
                self.failed_batches += 1
                log.exception("writing %d captured requests to %s failed", len(group), path)


def to_parquet(records: list[CaptureRecord]) -> bytes:
    """The Parquet bytes of ``records``, one row per input row (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list[Any]] = {name: [] for name in FIXED_COLUMNS}
    inputs: dict[str, list[Any]] = {}
    total = 0
    for record in records:
        frame = record.inputs
        count = len(frame) if frame is not None else 1
        outputs = record.outputs if record.outputs is not None and len(record.outputs) == count else [None] * count
        stamp = record.timestamp.astimezone(dt.timezone.utc)
        columns["request_id"] += [record.request_id] * count
        columns["timestamp"] += [stamp] * count
        columns["version"] += [record.version] * count
        columns["status"] += [record.status] * count
        columns["error"] += [record.error] * count
        columns["latency_ms"] += [record.latency_ms] * count
        columns["row"] += list(range(count))
        columns["prediction"] += list(outputs)
        if frame is not None:
            for name in frame.columns:
                values = inputs.setdefault(f"input.{name}", [None] * total)
                values += frame[name].tolist()
        total += count
        for values in inputs.values():
            values += [None] * (total - len(values))
    arrays = {
        "request_id": pa.array(columns["request_id"], pa.string()),
        "timestamp": pa.array(columns["timestamp"], pa.timestamp("us", tz="UTC")),
        "version": pa.array(columns["version"], pa.int64()),
        "status": pa.array(columns["status"], pa.string()),
        "error": pa.array(columns["error"], pa.string()),
        "latency_ms": pa.array(columns["latency_ms"], pa.float64()),
        "row": pa.array(columns["row"], pa.int32()),
        "prediction": _array(columns["prediction"]),
    }
    arrays.update({name: _array(values) for name, values in inputs.items()})
    sink = io.BytesIO()
    pq.write_table(pa.table(arrays), sink, compression="zstd")
    return sink.getvalue()


def _array(values: list[Any]) -> Any:
    """A typed Arrow array, or JSON text when the values do not share a type."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string())
