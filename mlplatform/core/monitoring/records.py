"""The record layout: how inference records are kept in the artifact store.

One layout for both writers, the gateway's capture and the events route::

    monitoring/<project>/<model>/<environment>/<YYYY-MM-DD>/<HH>/<uuid>.parquet

``YYYY-MM-DD/HH`` is the UTC hour of the records' ``timestamp`` (a writer splits a batch
that spans hours). Files are written once and never changed. Columns (Parquet, one row per
prediction):

===================  ================================  ======================================
column               type                              meaning
===================  ================================  ======================================
request_id           string, not null                  joins late labels (``monitor_labels``)
timestamp            timestamp[ms, tz=UTC], not null   when the prediction was made
version              int32, null                       model version number; null: the
                                                       deployment's main version when the
                                                       window is computed
inputs.<feature>     one column per input feature      typed by the signature: number ->
                                                       float64, integer -> int64, boolean ->
                                                       bool, string and datetime -> string
output               float64 | int64 | bool | string   the prediction (JSON text when not a
                                                       scalar; null when the model failed)
latency_ms           float64, null                     gateway: time to answer the request
status               int16, null                       gateway: the HTTP status answered
error                string, optional column           gateway: the model's error message
source               string                            ``gateway`` | ``events``
violations           list<string>, optional column     schema problems found on ingest:
                                                       ``type:<f>``, ``null:<f>``, ``unknown:<f>``
===================  ================================  ======================================

A value that had the wrong type is stored as null and named in ``violations`` (it is not a
missing value). Readers accept files without ``violations``, ``latency_ms``, ``status``,
``error`` or ``source`` (absent means null), and the inputs as one ``inputs`` struct column
too. The gateway's capture (:mod:`mlplatform.core.capture`) writes through ``write_records``.

Once an hour is closed its files are merged into one ``compacted-<gen>-<id>.parquet`` that
names, in its Parquet metadata, the files it replaces (:mod:`.compaction`). ``read_hour``
is the one reader of an hour folder: it reads merged files newest first, skips every file a
merged file it read names, and lists again (up to ``READ_ATTEMPTS`` times) when a listed file
vanished before it was opened or when a compaction finished while it read, so each row is
read exactly once whatever a concurrent compaction is doing.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlplatform.core.errors import ArtifactNotFound, Conflict
from mlplatform.core.monitoring.windows import hours_between

if TYPE_CHECKING:
    from mlplatform.core.backends import ArtifactStore

ROOT = "monitoring"
TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")
BASE_FIELDS = {
    "request_id": pa.string(),
    "timestamp": TIMESTAMP_TYPE,
    "version": pa.int32(),
    "latency_ms": pa.float64(),
    "status": pa.int16(),
    "source": pa.string(),
    "violations": pa.list_(pa.string()),
}
INPUT_PREFIX = "inputs."
MERGED_PREFIX = "compacted-"
REPLACES_KEY = b"mlplatform.replaces"  # Parquet metadata of a merged file: JSON list of file names
READ_ATTEMPTS = 5
_MS_PER_HOUR = 3_600_000


def deployment_prefix(project: str, model: str, environment: str) -> str:
    return f"{ROOT}/{project}/{model}/{environment}/"


def hour_prefix(project: str, model: str, environment: str, hour: dt.datetime) -> str:
    return f"{deployment_prefix(project, model, environment)}{hour:%Y-%m-%d}/{hour:%H}/"


def write_records(store: ArtifactStore, project: str, model: str, environment: str, table: pa.Table) -> list[str]:
    """Write ``table`` (the layout above) as one Parquet file per UTC hour it spans; returns
    the paths written. The table must already be valid: ``timestamp`` not null."""
    if table.num_rows == 0:
        return []
    hours = pc.divide(table.column("timestamp").cast(pa.int64()), _MS_PER_HOUR).to_numpy()
    paths = []
    for hour in np.unique(hours):
        part = table if hours[0] == hours[-1] == hour else table.filter(pa.array(hours == hour))
        start = dt.datetime.fromtimestamp(int(hour) * 3600, dt.UTC)
        path = f"{hour_prefix(project, model, environment, start)}{uuid.uuid4().hex}.parquet"
        buffer = io.BytesIO()
        pq.write_table(part, buffer, compression="zstd")
        size = buffer.tell()
        buffer.seek(0)
        store.put(path, buffer, size)
        paths.append(path)
    return paths


@dataclass
class WindowRecords:
    """One window's records, flattened: the base columns and one array per input feature."""

    table: pa.Table  # base columns (BASE_FIELDS + output), every file unified
    features: dict[str, pa.ChunkedArray] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def filter(self, mask: pa.Array) -> WindowRecords:
        return WindowRecords(self.table.filter(mask), {k: v.filter(mask) for k, v in self.features.items()})


def read_window(
    store: ArtifactStore, project: str, model: str, environment: str, start: dt.datetime, end: dt.datetime
) -> WindowRecords:
    """Every record with ``start <= timestamp < end``, read from the hour folders the window
    overlaps. Files written with other types for a column are unified: numbers become float64
    unless every file has the same type; a column that is a string anywhere becomes string."""
    parts: list[pa.Table] = []
    for hour in hours_between(start, end):
        snapshot = read_hour(store, hour_prefix(project, model, environment, hour))
        parts.extend(snapshot.tables[path] for path in snapshot.live)
    if not parts:
        return WindowRecords(_empty_base())
    table = concat(parts)
    ts = table.column("timestamp")
    low, high = pa.scalar(start, TIMESTAMP_TYPE), pa.scalar(end, TIMESTAMP_TYPE)
    bounds = pc.min_max(ts)
    first, last = bounds["min"].as_py(), bounds["max"].as_py()
    if first is None or last is None or not (first >= start and last < end) or ts.null_count:
        # an hour holds other windows than this one
        table = table.filter(pc.and_(pc.greater_equal(ts, low), pc.less(ts, high)))
    base = [name for name in table.column_names if not name.startswith(INPUT_PREFIX)]
    features = {
        name[len(INPUT_PREFIX) :]: table.column(name) for name in table.column_names if name.startswith(INPUT_PREFIX)
    }
    return WindowRecords(table.select(base), features)


@dataclass
class HourSnapshot:
    """One consistent read of an hour folder: every Parquet file ``listed``, the ``live``
    ones whose rows count (merged files newest first, then parts in path order) with their
    rows flattened in ``tables``, and the newest merged file's ``generation`` (0: none)."""

    listed: list[str]
    live: list[str]
    tables: dict[str, pa.Table]
    generation: int


def read_hour(store: ArtifactStore, prefix: str) -> HourSnapshot:
    """The records of the hour folder ``prefix``, each row once (see the module doc).

    A store's listing is not a snapshot (a folder or a bucket is listed bit by bit), so after
    reading, the folder is listed again: if a file read is gone or a merged file appeared, a
    compaction ran meanwhile and the read starts over."""
    for _attempt in range(READ_ATTEMPTS):
        listed = _listing(store, prefix)
        try:
            snapshot = _read_listed(store, listed)
        except ArtifactNotFound:  # replaced and deleted between the listing and the read
            continue
        again = set(_listing(store, prefix))
        if set(listed) <= again and not any(_name(p).startswith(MERGED_PREFIX) for p in again - set(listed)):
            return snapshot
    raise Conflict(f"the records of {prefix} changed under {READ_ATTEMPTS} reads in a row; try again")


def _listing(store: ArtifactStore, prefix: str) -> list[str]:
    return [
        info.path
        for info in store.list(prefix)
        if info.path.endswith(".parquet") and "/" not in info.path[len(prefix) :]
    ]


def _read_listed(store: ArtifactStore, listed: list[str]) -> HourSnapshot:
    merged = sorted((p for p in listed if _name(p).startswith(MERGED_PREFIX)), key=merged_generation, reverse=True)
    replaced: set[str] = set()
    live: list[str] = []
    tables: dict[str, pa.Table] = {}
    for path in merged:
        if _name(path) in replaced:
            continue
        with store.open(path) as stream:
            table = read_parquet(stream)
        replaced.update(json.loads((table.schema.metadata or {}).get(REPLACES_KEY, b"[]")))
        live.append(path)
        tables[path] = _flatten(table)
    for path in listed:
        if path in tables or _name(path) in replaced or _name(path).startswith(MERGED_PREFIX):
            continue
        with store.open(path) as stream:
            tables[path] = _flatten(read_parquet(stream))
        live.append(path)
    return HourSnapshot(listed, live, tables, max(map(merged_generation, merged), default=0))


def merged_generation(path: str) -> int:
    """``.../compacted-000003-<id>.parquet`` -> 3 (0 for anything else)."""
    name = _name(path)
    if not name.startswith(MERGED_PREFIX):
        return 0
    number = name[len(MERGED_PREFIX) :].split("-", 1)[0]
    return int(number) if number.isdigit() else 0


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def read_parquet(stream: Any) -> pa.Table:
    """Input string columns stay dictionary-encoded, as Parquet stores them: counting
    categories is then a ``bincount`` of the indices."""
    data = pa.BufferReader(stream.read())
    schema = pq.read_schema(data)
    strings = [f.name for f in schema if f.name.startswith(INPUT_PREFIX) and pa.types.is_string(f.type)]
    data.seek(0)
    return pq.read_table(data, read_dictionary=strings or None)


def _empty_base() -> pa.Table:
    return pa.table(
        {name: pa.array([], type) for name, type in BASE_FIELDS.items()} | {"output": pa.array([], pa.float64())}
    )


def _flatten(table: pa.Table) -> pa.Table:
    """The ``inputs`` struct as ``inputs.<feature>`` columns, missing base columns as nulls."""
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    for name in table.column_names:
        column = table.column(name)
        if name == "inputs" and pa.types.is_struct(column.type):
            for index in range(column.type.num_fields):
                child = (
                    pc.struct_field(column, index)
                    if column.num_chunks
                    else pa.chunked_array([], column.type.field(index).type)
                )
                columns[INPUT_PREFIX + column.type.field(index).name] = child
        elif name == "outputs" and "output" not in table.column_names:
            columns["output"] = column
        else:
            columns[name] = column
    for name, type in BASE_FIELDS.items():
        if name not in columns:
            columns[name] = pa.nulls(table.num_rows, type)
        elif name == "timestamp" and columns[name].type != TIMESTAMP_TYPE:
            columns[name] = pc.cast(columns[name], TIMESTAMP_TYPE)
    if "output" not in columns:
        columns["output"] = pa.nulls(table.num_rows, pa.float64())
    return pa.table(columns)


def concat(parts: list[pa.Table]) -> pa.Table:
    """Flattened tables as one, each column cast to the type every part casts to."""
    if len(parts) == 1:
        return parts[0]
    names: dict[str, None] = {}
    for part in parts:
        names.update(dict.fromkeys(part.column_names))
    types = {name: unify_types([p.schema.field(name).type for p in parts if name in p.column_names]) for name in names}
    aligned = []
    for part in parts:
        columns = {
            name: part.column(name).cast(types[name])
            if name in part.column_names
            else pa.nulls(part.num_rows, types[name])
            for name in names
        }
        aligned.append(pa.table(columns))
    return pa.concat_tables(aligned)


def unify_types(types: Iterable[pa.DataType]) -> pa.DataType:
    """One type every given type casts to: itself if all agree, float64 for mixed numbers,
    string otherwise (null columns take the other files' type)."""
    distinct = {t for t in types if not pa.types.is_null(t)}
    if not distinct:
        return pa.null()
    if len(distinct) == 1:
        return distinct.pop()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in distinct):
        return pa.float64()
    if all(pa.types.is_list(t) for t in distinct):
        return pa.list_(pa.string())
    return pa.string()
