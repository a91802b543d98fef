"""Event bodies -> a validated record table (the :mod:`.records` layout) and reasons.

Two inputs, one result:

- ``records_from_json(records, ...)``: ``[{"timestamp", "inputs": {...}, "output",
  "request_id"?, "version"?, "latency_ms"?, "status"?}]``, checked value by value;
- ``records_from_arrow(table, ...)``: a Parquet or Arrow IPC body with columns ``timestamp``,
  ``request_id``?, ``output``?, ``version``?, ``latency_ms``?, ``status``? and one column per
  input feature (every other column), checked column by column.

``timestamp`` is an ISO 8601 string (naive = UTC), epoch seconds, or an Arrow timestamp.
A record is **rejected** (counted, with the first ``MAX_REASONS`` reasons by index) when it
cannot be stored: no valid timestamp, a timestamp more than ``FUTURE_TOLERANCE`` ahead, an
unknown model version, a bad ``request_id``, ``inputs`` not an object of scalars. A record is
**accepted with violations** when it can be stored but breaks the schema (the version's
signature, else the reference profile): a value of the wrong type (stored as null), a null
in a non-nullable feature, a feature the schema does not know. Those are data-quality
figures of its window, not ingest errors.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.core.monitoring.records import INPUT_PREFIX, TIMESTAMP_TYPE

MAX_REASONS = 100
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
MAX_REQUEST_ID = 100


def request_id_or_new(given: str | None) -> str:
    """A caller's ``X-Request-ID`` when a label can name it later (1 to ``MAX_REQUEST_ID``
    printable ASCII characters), else a fresh one (the response carries it)."""
    if given and len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex


RECORD_KEYS = {"timestamp", "inputs", "output", "request_id", "version", "latency_ms", "status"}
BASE_COLUMNS = ("timestamp", "request_id", "output", "version", "latency_ms", "status")
ARROW_TYPES = {
    "number": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "datetime": pa.string(),
}


@dataclass(frozen=True)
class FeatureSpec:
    type: str  # a signature type: integer | number | boolean | string | datetime
    nullable: bool = True


@dataclass(frozen=True)
class InputSchema:
    """What the inputs should look like; ``features`` empty means unknown (types inferred)."""

    features: Mapping[str, FeatureSpec] = field(default_factory=dict)
    output_type: str | None = None

    @classmethod
    def build(cls, signature: Mapping[str, Any] | None, profile: Mapping[str, Any] | None) -> InputSchema:
        """From the version's signature; without one, from the reference profile's kinds."""
        outputs = (signature or {}).get("outputs") or []
        output_type = outputs[0].get("type") if outputs else None
        if signature and signature.get("inputs"):
            from mlplatform.core.signature import normalize_type

            specs = {
                item["name"]: FeatureSpec(normalize_type(item.get("type")), bool(item.get("nullable", False)))
                for item in signature["inputs"]
            }
            return cls(specs, normalize_type(output_type) if output_type else None)
        if profile:
            kinds = {"numerical": "number", "categorical": "string"}
            specs = {name: FeatureSpec(kinds[p["kind"]]) for name, p in profile.get("features", {}).items()}
            return cls(specs, output_type)
        return cls({}, output_type)


@dataclass
class IngestResult:
    """Valid records as a table in the record layout, and what was rejected and why."""

    table: pa.Table | None
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    def reject(self, index: int, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REASONS:
            self.errors.append({"index": index, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "errors": self.errors}


# --- JSON records -------------------------------------------------------------------------------


def records_from_json(
    records: Any, schema: InputSchema, versions: set[int], *, now: dt.datetime, source: str = "events"
) -> IngestResult:
    """Check each record; the valid ones become one table. See the module doc for the rules."""
    result = IngestResult(None)
    if not isinstance(records, list):
        result.reject(0, "'records' must be a list")
        return result
    latest_ms = _ms(now + FUTURE_TOLERANCE)
    rows: list[tuple[str, int, int | None, Any, float | None, int | None]] = []
    inputs: list[Mapping[str, Any]] = []
    for index, record in enumerate(records):
        reason, row = _check_record(record, versions, latest_ms)
        if reason:
            result.reject(index, reason)
        else:
            assert row is not None
            rows.append(row)
            inputs.append(record["inputs"])
    if rows:
        columns, violations = _typed_inputs(inputs, schema)
        request_ids, timestamps, versions_col, outputs, latencies, statuses = zip(*rows, strict=False)
        result.table = _table(
            request_ids=pa.array(request_ids, pa.string()),
            timestamps=pa.array(timestamps, pa.int64()).cast(TIMESTAMP_TYPE),
            versions=pa.array(versions_col, pa.int32()),
            features=columns,
            output=_output_array(list(outputs), schema.output_type),
            latency=pa.array(latencies, pa.float64()),
            status=pa.array(statuses, pa.int16()),
            source=source,
            violations=violations,
        )
    return result


def _check_record(record: Any, versions: set[int], latest_ms: int) -> tuple[str | None, Any]:
    if not isinstance(record, Mapping):
        return "record is not an object", None
    unknown = set(record) - RECORD_KEYS
    if unknown:
        return f"unknown field(s): {', '.join(sorted(map(str, unknown)))}", None
    ts = timestamp_ms(record.get("timestamp"))
    if ts is None:
        return "timestamp is missing or not an ISO 8601 string or epoch seconds", None
    if ts > latest_ms:
        return "timestamp is in the future", None
    request_id = record.get("request_id")
    if request_id is None:
        request_id = uuid.uuid4().hex
    elif not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID:
        return f"request_id must be a string of 1 to {MAX_REQUEST_ID} characters", None
    version = record.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version not in versions):
        return f"version {version!r} is not a version of this model", None
    values = record.get("inputs")
    if not isinstance(values, Mapping) or not values:
        return "inputs must be a non-empty object", None
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            return "input names must be non-empty strings", None
        if value is not None and not isinstance(value, (str, int, float, bool)):
            return f"inputs.{name} is not a scalar (string, number, boolean or null)", None
    output = record.get("output")
    if output is not None and not isinstance(output, (str, int, float, bool)):
        output = json.dumps(output, sort_keys=True, default=str)
    latency = record.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float)) or not latency >= 0):
        return "latency_ms must be a non-negative number", None
    status = record.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599):
        return "status must be an HTTP status code", None
    return None, (request_id, ts, version, output, latency, status)


def timestamp_ms(value: Any) -> int | None:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return _ms(parsed)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(round(value * 1000))
    return None


def _ms(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(round(value.timestamp() * 1000))


_PY_CHECKS = {
    "number": lambda v: v.__class__ in (int, float),
    "integer": lambda v: v.__class__ is int or (v.__class__ is float and v.is_integer()),
    "boolean": lambda v: v.__class__ is bool,
    "string": lambda v: v.__class__ is str,
    "datetime": lambda v: v.__class__ is str,
}


def _typed_inputs(
    inputs: list[Mapping[str, Any]], schema: InputSchema
) -> tuple[dict[str, pa.Array], list[list[str] | None]]:
    names: dict[str, None] = dict.fromkeys(schema.features)
    for values in inputs:
        names.update(dict.fromkeys(values))
    violations: list[list[str] | None] = [None] * len(inputs)

    def flag(row: int, code: str) -> None:
        if violations[row] is None:
            violations[row] = []
        violations[row].append(code)  # type: ignore[union-attr]

    columns: dict[str, pa.Array] = {}
    for name in names:
        spec = schema.features.get(name)
        values = [row.get(name) for row in inputs]
        if spec is None:
            if schema.features:
                for row, value in enumerate(values):
                    if value is not None:
                        flag(row, f"unknown:{name}")
            columns[name] = _inferred_array(values)
            continue
        check = _PY_CHECKS[spec.type]
        for row, value in enumerate(values):
            if value is None or (value.__class__ is float and math.isnan(value)):
                values[row] = None
                if not spec.nullable:
                    flag(row, f"null:{name}")
            elif not check(value):
                values[row] = None
                flag(row, f"type:{name}")
        columns[name] = pa.array(values, ARROW_TYPES[spec.type])
    return columns, violations


def _inferred_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _output_array(outputs: list[Any], output_type: str | None) -> pa.Array:
    if output_type in ARROW_TYPES:
        try:
            return pa.array(outputs, ARROW_TYPES[output_type])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    try:
        return pa.array(outputs) if any(v is not None for v in outputs) else pa.nulls(len(outputs), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in outputs], pa.string()
        )


# --- Arrow tables (Parquet and IPC bodies) ------------------------------------------------------


def records_from_arrow(
    table: pa.Table, schema: InputSchema, versions: set[int], *, now: dt.datetime, source: str = "events"
) -> IngestResult:
    """Check a columnar batch; rows with a problem are dropped and reported by row index."""
    result = IngestResult(None)
    n = table.num_rows
    if "timestamp" not in table.column_names:
        for index in range(n):
            result.reject(index, "timestamp is missing")
        return result
    bad = np.zeros(n, dtype=bool)
    reasons: dict[str, np.ndarray] = {}

    def mark(mask: np.ndarray, reason: str) -> None:
        mask = mask & ~bad
        if mask.any():
            reasons[reason] = mask
            bad[mask] = True

    timestamps = _arrow_timestamps(table.column("timestamp"))
    ts_values = timestamps.cast(pa.int64()).fill_null(0).to_numpy()
    mark(~timestamps.is_valid().to_numpy(zero_copy_only=False), "timestamp is missing or not a valid time")
    mark(ts_values > _ms(now + FUTURE_TOLERANCE), "timestamp is in the future")

    request_ids = _request_ids(table, n, mark)
    versions_col = pa.nulls(n, pa.int32())
    if "version" in table.column_names:
        column = table.column("version")
        if pa.types.is_integer(column.type):
            version_values = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
            present = column.is_valid().to_numpy(zero_copy_only=False)
            known = np.isin(np.nan_to_num(version_values, nan=-1).astype(np.int64), list(versions))
            mark(present & ~known, "version is not a version of this model")
            versions_col = column.cast(pa.int32())
        else:
            mark(np.ones(n, dtype=bool), "version column must hold integers")
    latency = _optional_numeric(table, "latency_ms", pa.float64(), mark)
    status = _optional_numeric(table, "status", pa.int16(), mark)

    feature_names = [name for name in table.column_names if name not in BASE_COLUMNS]
    if not feature_names:
        mark(np.ones(n, dtype=bool), "no input feature columns")
    for reason, mask in reasons.items():
        for index in np.flatnonzero(mask)[: MAX_REASONS - len(result.errors)]:
            result.errors.append({"index": int(index), "reason": reason})
    result.errors.sort(key=lambda e: e["index"])
    result.rejected = int(bad.sum())
    if result.rejected == n:
        return result
    keep = pa.array(~bad) if result.rejected else None

    def kept(column: Any) -> Any:
        return column if keep is None else column.filter(keep)

    features, violations = _typed_columns(
        {name: kept(table.column(name)) for name in feature_names}, schema, n - result.rejected
    )
    output = (
        kept(table.column("output")) if "output" in table.column_names else pa.nulls(n - result.rejected, pa.float64())
    )
    result.table = _table(
        request_ids=kept(request_ids),
        timestamps=kept(timestamps),
        versions=kept(versions_col),
        features=features,
        output=output,
        latency=kept(latency),
        status=kept(status),
        source=source,
        violations=violations,
    )
    return result


def _arrow_timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Any timestamp, ISO 8601 string or epoch-seconds column as timestamp[ms, UTC]; values
    that cannot be read become null."""
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            column = pc.assume_timezone(column, "UTC")
        return column.cast(TIMESTAMP_TYPE)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        ms = pc.round(pc.multiply(column.cast(pa.float64()), 1000.0))
        valid = pc.is_finite(ms)
        return pc.if_else(valid, ms, None).cast(pa.int64()).cast(TIMESTAMP_TYPE)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            return pc.cast(column, pa.timestamp("ms", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = [timestamp_ms(v) for v in column.to_pylist()]
            return pa.chunked_array([pa.array(values, pa.int64()).cast(TIMESTAMP_TYPE)])
    return pa.chunked_array([pa.nulls(len(column), TIMESTAMP_TYPE)])


def _request_ids(table: pa.Table, n: int, mark: Any) -> pa.ChunkedArray:
    prefix = uuid.uuid4().hex
    generated = pc.binary_join_element_wise(prefix, pa.array(np.arange(n)).cast(pa.string()), "-")
    if "request_id" not in table.column_names:
        return pa.chunked_array([generated])
    column = table.column("request_id")
    if not pa.types.is_string(column.type):
        try:
            column = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            mark(np.ones(n, dtype=bool), "request_id column must hold strings")
            return pa.chunked_array([generated])
    lengths = pc.utf8_length(column).fill_null(1).to_numpy(zero_copy_only=False)
    mark((lengths < 1) | (lengths > MAX_REQUEST_ID), f"request_id must be a string of 1 to {MAX_REQUEST_ID} characters")
    return pc.coalesce(column, generated)


def _optional_numeric(table: pa.Table, name: str, type: pa.DataType, mark: Any) -> Any:
    n = table.num_rows
    if name not in table.column_names:
        return pa.nulls(n, type)
    column = table.column(name)
    try:
        return column.cast(type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        mark(np.ones(n, dtype=bool), f"{name} column must hold numbers")
        return pa.nulls(n, type)


def _typed_columns(
    columns: dict[str, Any], schema: InputSchema, n: int
) -> tuple[dict[str, Any], list[list[str] | None] | None]:
    """Columns cast to the schema's types; values that do not fit become null and violations."""
    flags: list[tuple[str, np.ndarray]] = []
    typed: dict[str, Any] = {}
    for name, spec in schema.features.items():
        if name not in columns and not spec.nullable:
            flags.append((f"null:{name}", np.ones(n, dtype=bool)))
    for name, column in columns.items():
        spec = schema.features.get(name)
        if spec is None:
            if schema.features:
                flags.append((f"unknown:{name}", column.is_valid().to_numpy(zero_copy_only=False)))
            typed[name] = column
            continue
        column, wrong = _cast_column(column, spec.type)
        if wrong is not None:
            flags.append((f"type:{name}", wrong))
        if not spec.nullable:
            missing = ~column.is_valid().to_numpy(zero_copy_only=False)
            if wrong is not None:
                missing &= ~wrong
            flags.append((f"null:{name}", missing))
        typed[name] = column
    flags = [(code, mask) for code, mask in flags if mask.any()]
    if not flags:
        return typed, None
    rows: list[list[str] | None] = [None] * n
    for code, mask in flags:
        for row in np.flatnonzero(mask):
            existing = rows[row]
            if existing is None:
                rows[row] = [code]
            else:
                existing.append(code)
    return typed, rows


def _cast_column(column: Any, type_name: str) -> tuple[Any, np.ndarray | None]:
    """``(column as the type's Arrow type, mask of values of the wrong type or None)``."""
    target = ARROW_TYPES[type_name]
    kind = column.type
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if type_name == "number" and numeric:
        column = column.cast(pa.float64())
        return pc.if_else(pc.is_nan(column), None, column), None
    if type_name == "integer" and pa.types.is_integer(kind):
        return column.cast(pa.int64()), None
    if type_name in ("string", "datetime") and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return column.cast(pa.string()), None
    if type_name in ("string", "datetime") and pa.types.is_dictionary(kind):
        return column.cast(pa.string()), None
    if type_name == "boolean" and pa.types.is_boolean(kind):
        return column, None
    if pa.types.is_null(kind):
        return pa.nulls(len(column), target), None
    # A column of another type: check value by value (rare, so plain Python is fine).
    check = _PY_CHECKS[type_name]
    values = column.to_pylist()
    wrong = np.zeros(len(values), dtype=bool)
    for row, value in enumerate(values):
        if value is None or (value.__class__ is float and math.isnan(value)):
            values[row] = None
        elif not check(value):
            values[row] = None
            wrong[row] = True
    return pa.array(values, target), wrong


def _table(
    *,
    request_ids: Any,
    timestamps: Any,
    versions: Any,
    features: dict[str, Any],
    output: Any,
    latency: Any,
    status: Any,
    source: str,
    violations: list[list[str] | None] | None,
) -> pa.Table:
    n = len(timestamps)
    columns = {
        "request_id": _array(request_ids),
        "timestamp": _array(timestamps),
        "version": _array(versions),
        "output": _array(output),
        "latency_ms": _array(latency),
        "status": _array(status),
        "source": pa.repeat(pa.scalar(source, pa.string()), n),
        "violations": pa.nulls(n, pa.list_(pa.string()))
        if violations is None
        else pa.array(violations, pa.list_(pa.string())),
    }
    columns.update({INPUT_PREFIX + name: _array(column) for name, column in features.items()})
    return pa.table(columns)


def _array(value: Any) -> pa.Array:
    return value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
