"""Time series of one deployment's monitor points, bucketed and aggregated in SQL.

A query names a metric, any number of features (none: every feature of the metric), a
half-open range ``[start, end)``, a bucket width ``step`` and an aggregate. Buckets are
aligned to the Unix epoch (a 1h bucket starts on the hour, UTC); a point belongs to the
bucket its ``window_start`` falls in. Only buckets with points are returned. ``last`` is the
value of the latest window in the bucket. Points of several versions in one window are
aggregated together.

Bucketing has one function per dialect (PostgreSQL, SQLite); both read the series index
``ix_monitor_points_series`` (deployment, metric, feature, window_start) by range.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, ColumnElement, Double, Integer, cast, extract, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.orm import Session

from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.models import Project
from mlplatform.core.db.monitoring import MonitorPoint
from mlplatform.core.db.registry import RegisteredModel
from mlplatform.core.errors import NotFound, Unprocessable
from mlplatform.core.services.alerting import known_metrics

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

AGGREGATES = ("avg", "min", "max", "sum", "count", "last")
STEP_PATTERN = re.compile(r"^(\d{1,9})([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_STEP = 1
MAX_BUCKETS = 10_000
MAX_FEATURES = 100
DEFAULT_RANGE = dt.timedelta(days=1)


@dataclass(frozen=True)
class Series:
    feature: str
    points: list[tuple[dt.datetime, float | None]]

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "points": [{"time": t.isoformat(), "value": v} for t, v in self.points]}


@dataclass(frozen=True)
class SeriesResult:
    """What a query answered: the resolved range and step (seconds), and one series per feature."""

    name: str
    agg: str
    step: int
    start: dt.datetime
    end: dt.datetime
    series: list[Series]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agg": self.agg,
            "step": self.step,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "series": [s.to_dict() for s in self.series],
        }


def parse_step(text: str) -> int:
    """Seconds in ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"``; ``Unprocessable`` naming ``step`` otherwise."""
    match = STEP_PATTERN.match(text or "")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)] if match else 0
    if seconds < MIN_STEP:
        raise Unprocessable(
            f"bad step {text!r}", errors={"step": ["a positive number and a unit s, m, h or d, e.g. 5m or 1h"]}
        )
    return seconds


def deployment_id_for(session: Session, project: str, model: str, environment: str) -> int:
    """The id of ``model``'s deployment in ``environment``; ``NotFound`` naming what is missing."""
    found = session.execute(
        select(Project.id, RegisteredModel.id, Deployment.id)
        .select_from(Project)
        .outerjoin(RegisteredModel, (RegisteredModel.project_id == Project.id) & (RegisteredModel.name == model))
        .outerjoin(Deployment, (Deployment.model_id == RegisteredModel.id) & (Deployment.environment == environment))
        .where(Project.name == project)
    ).first()
    if found is None:
        raise NotFound(f"project {project!r} does not exist")
    if found[1] is None:
        raise NotFound(f"model {model!r} does not exist in project {project!r}")
    if found[2] is None:
        raise NotFound(f"model {model!r} is not deployed to {environment!r}")
    return int(found[2])


def query(
    session: Session,
    platform: Platform,
    deployment_id: int,
    *,
    name: str,
    features: Sequence[str] = (),
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    step: str = "1h",
    agg: str = "avg",
) -> SeriesResult:
    """Bucketed series of metric ``name``, one per feature (in the order asked, each once).

    ``end`` defaults to now and ``start`` to a day before ``end``. Raises ``Unprocessable``
    naming ``name``, ``agg``, ``step``, ``start`` or ``feature`` for an unknown metric or
    aggregate, a bad step, an empty range, more than ``MAX_BUCKETS`` buckets or more than
    ``MAX_FEATURES`` features.
    """
    metrics = known_metrics(platform)
    if name not in metrics:
        raise Unprocessable(
            f"unknown metric {name!r}", errors={"name": [f"unknown metric {name!r}; known: {', '.join(metrics)}"]}
        )
    if agg not in AGGREGATES:
        raise Unprocessable(f"unknown aggregate {agg!r}", errors={"agg": [f"must be one of: {', '.join(AGGREGATES)}"]})
    seconds = parse_step(step)
    end = end or dt.datetime.now(dt.UTC)
    start = start or end - DEFAULT_RANGE
    if start >= end:
        raise Unprocessable("start must be before end", errors={"start": ["must be before end"]})
    if (end - start).total_seconds() / seconds > MAX_BUCKETS:
        raise Unprocessable(
            f"more than {MAX_BUCKETS} buckets",
            errors={"step": [f"too small for this range: more than {MAX_BUCKETS} buckets"]},
        )
    wanted = list(dict.fromkeys(features))
    if len(wanted) > MAX_FEATURES:
        raise Unprocessable(f"more than {MAX_FEATURES} features", errors={"feature": [f"at most {MAX_FEATURES}"]})

    dialect = session.get_bind().dialect.name
    bucket = BUCKET[dialect](MonitorPoint.window_start, seconds).label("bucket")
    statement = (
        select(MonitorPoint.feature, bucket, *aggregate(dialect, agg))
        .where(
            MonitorPoint.deployment_id == deployment_id,
            MonitorPoint.metric == name,
            MonitorPoint.window_start >= start,
            MonitorPoint.window_start < end,
        )
        .group_by(MonitorPoint.feature, bucket)
        .order_by(MonitorPoint.feature, bucket)
    )
    if wanted:
        statement = statement.where(MonitorPoint.feature.in_(wanted))
    by_feature: dict[str, list[tuple[dt.datetime, float | None]]] = {feature: [] for feature in wanted}
    for feature, index, result, *_helpers in session.execute(statement):
        time = dt.datetime.fromtimestamp(int(index) * seconds, dt.UTC)
        number = None if result is None or not math.isfinite(result) else float(result)
        by_feature.setdefault(feature, []).append((time, number))
    series = [Series(feature, points) for feature, points in by_feature.items()]
    return SeriesResult(name, agg, seconds, start, end, series)


# --- per dialect --------------------------------------------------------------------------


def _bucket_postgresql(column: Any, seconds: int) -> ColumnElement[int]:
    """The bucket number (seconds since the epoch // ``seconds``) on PostgreSQL."""
    return cast(func.floor(extract("epoch", column) / _inline(seconds)), BigInteger)


def _bucket_sqlite(column: Any, seconds: int) -> ColumnElement[int]:
    """The bucket number on SQLite: ``strftime('%s')`` reads the stored UTC text (any SQLite 3)."""
    return cast(func.strftime("%s", column), Integer) // _inline(seconds)


def _inline(seconds: int) -> ColumnElement[int]:
    # Inline, not a bound parameter: GROUP BY repeats the expression, and PostgreSQL only
    # matches it to the SELECT column when both are the same text (not $1 and $2).
    return literal_column(str(int(seconds)), Integer)


BUCKET: dict[str, Callable[[Any, int], ColumnElement[int]]] = {
    "postgresql": _bucket_postgresql,
    "sqlite": _bucket_sqlite,
}


def aggregate(dialect: str, agg: str) -> list[ColumnElement[Any]]:
    """The columns computing ``agg`` of ``value`` on ``dialect``: the value first, then any
    helper column the dialect needs (ignored by the caller)."""
    if agg == "last":
        return LAST[dialect]()
    functions: dict[str, Callable[[Any], ColumnElement[Any]]] = {
        "avg": func.avg,
        "min": func.min,
        "max": func.max,
        "sum": func.sum,
        "count": func.count,
    }
    return [functions[agg](MonitorPoint.value)]


def _last_postgresql() -> list[ColumnElement[Any]]:
    ordered = func.array_agg(
        aggregate_order_by(MonitorPoint.value, MonitorPoint.window_start.desc()), type_=ARRAY(Double)
    )
    return [ordered[1]]


def _last_sqlite() -> list[ColumnElement[Any]]:
    # SQLite documents that a bare column in a query with one max() comes from the row holding the max.
    return [MonitorPoint.value.expression, func.max(MonitorPoint.window_start)]


LAST: dict[str, Callable[[], list[ColumnElement[Any]]]] = {"postgresql": _last_postgresql, "sqlite": _last_sqlite}
