"""Logging one batch of params, metrics and tags to a run, all or nothing, fast.

The wire format of a batch (``POST .../runs/{run}/log``, and the first batch of a new run)::

    {"params": {"lr": "0.01"},                      # write-once per run and key
     "metrics": [{"key": "loss", "value": 0.5, "step": 3, "timestamp": 1700000000000}],
     "tags": {"team": "ml"}}                        # last write wins

Metric values are numbers or one of the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
(JSON cannot carry those floats); ``step`` defaults to 0 and ``timestamp`` (milliseconds since
the epoch) to now. Param values may be strings, numbers or booleans and are stored as text.

Parsing is a plain loop over the decoded JSON (no schema library per item). The writes are
in ``tracking_writes`` (one statement per batch on PostgreSQL). Logging params to an
existing run first reads the stored ones (params are write-once).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.tracking import TERMINAL_STATUSES, RunIdempotencyKey
from mlplatform.core.errors import Conflict, InvalidInput
from mlplatform.core.services.tracking_writes import params_table, write_batch

DEFAULT_LIMITS = {
    "max_metrics_per_batch": 1000,
    "max_params_per_batch": 100,
    "max_tags_per_batch": 100,
    "max_key_length": 250,
    "max_param_value_length": 6000,
    "max_tag_value_length": 8000,
}
WIRE_SPECIALS = {"NaN": None, "Infinity": math.inf, "-Infinity": -math.inf}
INT64 = 2**63
IDEMPOTENCY_KEY_LENGTH = 250

idempotency_table: Table = RunIdempotencyKey.__table__  # type: ignore[assignment]


def to_wire(value: float | None) -> float | str:
    """A stored metric value as JSON can carry it: NaN (stored as NULL) and ±Inf become strings."""
    if value is None or value != value:
        return "NaN"
    if value == math.inf:
        return "Infinity"
    if value == -math.inf:
        return "-Infinity"
    return value


@dataclass
class Batch:
    """A validated batch. ``metrics`` rows are (key, value, step, timestamp); value None is NaN."""

    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float | None, int, int]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.params or self.metrics or self.tags)


@dataclass
class LogResult:
    run_id: str
    metrics: int
    params: int
    tags: int

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "metrics": self.metrics, "params": self.params, "tags": self.tags}


def _limit_error(what: str, count: int, limit_name: str, limit: int) -> InvalidInput:
    return InvalidInput(
        f"{what}: {count} is over the limit of {limit} (tracking.limits.{limit_name})",
        errors={"limit": [limit_name], limit_name: [f"at most {limit}"]},
    )


def _check_key(section: str, where: str, key: Any, max_key: int) -> str:
    """``where`` locates the item: ``[3]`` for a list index, ``'lr'`` for a mapping key."""
    if type(key) is not str or not key:
        raise InvalidInput(
            f"{section}{where}: key must be a non-empty string",
            errors={section: {where.strip("[]"): {"key": ["non-empty string"]}}},
        )
    if len(key) > max_key:
        raise _limit_error(f"{section}{where}: key length", len(key), "max_key_length", max_key)
    return key


def _text_values(
    section: str, raw: Any, max_count: int, count_limit: str, max_value: int, value_limit: str, max_key: int
) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{section} must be an object of key: value", errors={section: ["object of key: value"]})
    if len(raw) > max_count:
        raise _limit_error(f"{section} in one batch", len(raw), count_limit, max_count)
    parsed: dict[str, str] = {}
    for key, value in raw.items():
        _check_key(section, f" {key[:40]!r}" if isinstance(key, str) else f" {key!r}", key, max_key)
        if isinstance(value, str):
            text = value
        elif isinstance(value, (bool, int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
            text = str(value)
        else:
            raise InvalidInput(
                f"{section} {key!r}: value must be a string or a number", errors={section: {key: ["string or number"]}}
            )
        if len(text) > max_value:
            raise _limit_error(f"{section} {key!r} value length", len(text), value_limit, max_value)
        parsed[key] = text
    return parsed


def parse_batch(body: Any, limits: Mapping[str, int] | None = None) -> Batch:
    """Validate a decoded JSON batch against ``limits`` (``tracking.limits``); raise
    ``InvalidInput`` naming the field or the limit. Nothing is written on any error."""
    lim = {**DEFAULT_LIMITS, **(limits or {})}
    if body is None:
        return Batch()
    if not isinstance(body, Mapping):
        raise InvalidInput("a batch is an object with params, metrics and tags")
    max_key = lim["max_key_length"]
    params = _text_values(
        "params",
        body.get("params"),
        lim["max_params_per_batch"],
        "max_params_per_batch",
        lim["max_param_value_length"],
        "max_param_value_length",
        max_key,
    )
    tags = _text_values(
        "tags",
        body.get("tags"),
        lim["max_tags_per_batch"],
        "max_tags_per_batch",
        lim["max_tag_value_length"],
        "max_tag_value_length",
        max_key,
    )
    raw_metrics = body.get("metrics") or []
    if not isinstance(raw_metrics, list):
        raise InvalidInput("metrics must be a list", errors={"metrics": ["list of {key, value, step, timestamp}"]})
    if len(raw_metrics) > lim["max_metrics_per_batch"]:
        raise _limit_error(
            "metrics in one batch", len(raw_metrics), "max_metrics_per_batch", lim["max_metrics_per_batch"]
        )
    now = int(time.time() * 1000)
    metrics: list[tuple[str, float | None, int, int]] = []
    append = metrics.append
    for index, item in enumerate(raw_metrics):
        if type(item) is not dict:
            raise InvalidInput(f"metrics[{index}] must be an object", errors={"metrics": {str(index): ["object"]}})
        key: str = item.get("key")  # type: ignore[assignment]  # checked on the next line
        if type(key) is not str or not key or len(key) > max_key:
            _check_key("metrics", f"[{index}]", key, max_key)
        value: Any = item.get("value")
        kind = type(value)
        if kind is float:
            number: float | None = None if value != value else value
        elif kind is int:
            number = float(value)
        elif kind is str and value in WIRE_SPECIALS:
            number = WIRE_SPECIALS[value]
        else:
            raise InvalidInput(
                f"metrics[{index}] ({key}): value must be a number or one of 'NaN', 'Infinity', '-Infinity'",
                errors={"metrics": {str(index): {"value": ["number, 'NaN', 'Infinity' or '-Infinity'"]}}},
            )
        step = item.get("step", 0)
        if type(step) is not int or not -INT64 <= step < INT64:
            raise InvalidInput(
                f"metrics[{index}] ({key}): step must be a 64-bit integer",
                errors={"metrics": {str(index): {"step": ["integer"]}}},
            )
        stamp = item.get("timestamp")
        if stamp is None:
            stamp = now
        elif type(stamp) is not int or not 0 <= stamp < INT64:
            raise InvalidInput(
                f"metrics[{index}] ({key}): timestamp must be milliseconds since the epoch",
                errors={"metrics": {str(index): {"timestamp": ["integer milliseconds"]}}},
            )
        append((key, number, step, stamp))
    return Batch(params, metrics, tags)


class RunState(NamedTuple):
    """What writing a batch needs to know about its run."""

    id: str
    status: str
    lifecycle_stage: str


def _dialect_insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _claim_idempotency_key(session: Session, run_id: str, key: str, request_hash: str) -> dict[str, Any] | None:
    """Claim ``key`` for this run; return the stored response if an earlier call claimed it.

    ``ON CONFLICT DO NOTHING`` makes a concurrent duplicate wait for the first transaction and
    then see its row, on PostgreSQL as well as SQLite (whose writers are serialised anyway)."""
    if len(key) > IDEMPOTENCY_KEY_LENGTH:
        raise InvalidInput(
            f"Idempotency-Key is longer than {IDEMPOTENCY_KEY_LENGTH} characters",
            errors={"Idempotency-Key": ["too long"]},
        )
    claim = (
        _dialect_insert(session, idempotency_table)
        .values(run_id=run_id, key=key, request_hash=request_hash, response=None, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(idempotency_table.c.key)
    )
    if session.execute(claim).first() is not None:
        return None
    stored_hash, response = session.execute(
        select(idempotency_table.c.request_hash, idempotency_table.c.response).where(
            idempotency_table.c.run_id == run_id, idempotency_table.c.key == key
        )
    ).one()
    if stored_hash != request_hash:
        raise Conflict(f"Idempotency-Key {key!r} was already used for a different batch on this run")
    return response


def log_batch(
    session: Session,
    run: RunState,
    batch: Batch,
    *,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> tuple[LogResult, bool]:
    """Write ``batch`` to the existing ``run`` in the caller's transaction. Returns (result, replayed).

    Refuses (409) a deleted run, metrics for a run that is not running, and a param whose
    stored value differs (naming the key). Same-value params are accepted and not rewritten.
    """
    if run.lifecycle_stage == "deleted":
        raise Conflict(f"run {run.id!r} is deleted: restore it before logging to it")
    if idempotency_key:
        stored = _claim_idempotency_key(session, run.id, idempotency_key, request_hash)
        if stored is not None:
            return LogResult(**stored), True
    if batch.metrics and run.status in TERMINAL_STATUSES:
        raise Conflict(f"run {run.id!r} is {run.status}: set its status to running to log more metrics")
    if not batch.empty:
        write_batch(session, run.id, batch, _new_params(session, run.id, batch.params))
    result = LogResult(run.id, len(batch.metrics), len(batch.params), len(batch.tags))
    if idempotency_key:
        session.execute(
            idempotency_table.update()
            .where(idempotency_table.c.run_id == run.id, idempotency_table.c.key == idempotency_key)
            .values(response=result.to_dict())
        )
    return result, False


def _new_params(session: Session, run_id: str, params: dict[str, str]) -> dict[str, str]:
    """Params not yet logged; raise Conflict naming the first key logged with another value."""
    if not params:
        return {}
    existing = dict(
        session.connection()
        .execute(
            select(params_table.c.key, params_table.c.value).where(
                params_table.c.run_id == run_id, params_table.c.key.in_(list(params))
            )
        )
        .all()
    )
    for key, value in params.items():
        if key in existing and existing[key] != value:
            raise Conflict(
                f"param {key!r} is already logged with value {existing[key]!r}; params are write-once (got {value!r})",
                errors={"params": {key: ["already logged with a different value"]}},
            )
    return {k: v for k, v in params.items() if k not in existing}
