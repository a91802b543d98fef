"""Time series of one deployment's monitor points, bucketed and aggregated in SQL.

A query names a metric, any number of features (none: every feature of the metric), a
half-open range ``[start, end)``, a bucket width ``step``, an aggregate and optionally one
model version. Buckets are aligned to the Unix epoch (a 1h bucket starts on the hour, UTC);
a point belongs to the bucket its ``window_start`` falls in. Only buckets with points are
returned. ``last`` is the value of the latest window in the bucket. Without a version,
points of several versions in one window are aggregated together.

``window_start`` is stored as epoch seconds, so the bucket is ``window_start / step`` in
integer arithmetic on both databases (one SQL text for both), read from the covering index
``ix_monitor_points_series`` (deployment, metric, feature, window_start, value, version) by
range, without touching the table. Which statement depends on the step:

- a step longer than the monitoring window: ``GROUP BY feature, bucket``;
- a step no longer than the window, so a bucket holds at most one window: the points as
  they are, in index order, when no bucket gets two (one version, or a version asked for);
  else ``GROUP BY feature, window_start``, in index order too (no sort). Either falls back
  to grouping by bucket if two windows share a bucket after all (points stored under a
  shorter window length).

A series is kept as two columns (bucket starts in seconds, values) and
:meth:`SeriesResult.to_json` writes the response without building a Python object per
point: a month of 5-minute buckets is 8,640 points.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
import math
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from sqlalchemy import BigInteger, ColumnElement, Double, Integer, func, literal_column, select, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.orm import Session

from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.models import Project
from mlplatform.core.db.monitoring import EPOCH, MonitorPoint
from mlplatform.core.db.registry import RegisteredModel
from mlplatform.core.errors import NotFound, Unprocessable
from mlplatform.core.monitoring.windows import parse_length
from mlplatform.core.services.alerting import known_metrics
from mlplatform.core.services.registry import version_in

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

AGGREGATES = ("avg", "min", "max", "sum", "count", "last")
STEP_PATTERN = re.compile(r"^(\d{1,9})([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_STEP = 1
MAX_BUCKETS = 10_000
MAX_FEATURES = 100
DEFAULT_RANGE = dt.timedelta(days=1)
#: The earliest time a ``datetime`` holds, in UTC.
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, eq=False)
class Series:
    """One feature's points as two columns: bucket starts (int64 seconds since the epoch)
    and values (float64; NaN where a bucket has no finite value)."""

    feature: str
    times: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls, feature: str) -> Series:
        return cls(feature, np.empty(0, np.int64), np.empty(0, np.float64))

    @property
    def points(self) -> list[tuple[dt.datetime, float | None]]:
        """``(bucket start, value or None)`` pairs, for callers that want objects (the portal)."""
        return [
            (EPOCH + dt.timedelta(seconds=t), v if math.isfinite(v) else None)
            for t, v in zip(self.times.tolist(), self.values.tolist(), strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "points": [{"time": t.isoformat(), "value": v} for t, v in self.points]}

    def points_json(self) -> bytes:
        """``to_dict()["points"]`` as JSON without a Python object per point: the times and
        the values are each encoded as one array (orjson writes NaN as null) and spliced."""
        if not len(self.times):
            return b"[]"
        times = np.datetime_as_string(self.times.astype("datetime64[s]"), unit="s").tolist()
        values = orjson.dumps(self.values, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(",")
        # '[{"time":"<t>+00:00","value":<v>},{"time":"...' (numbers and null hold no comma)
        pairs = map('+00:00","value":'.join, zip(times, values, strict=True))
        return ('[{"time":"' + '},{"time":"'.join(pairs) + "}]").encode()


@dataclass(frozen=True)
class SeriesResult:
    """What a query answered: the resolved range and step (seconds), the version asked for
    (its number; None: every version), and one series per feature."""

    name: str
    agg: str
    step: int
    start: dt.datetime
    end: dt.datetime
    series: list[Series]
    version: int | None = None

    def head(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agg": self.agg,
            "step": self.step,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "version": self.version,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.head(), "series": [s.to_dict() for s in self.series]}

    def to_json(self) -> bytes:
        """``orjson.dumps(self.to_dict())``, several times faster on long series."""
        series = b",".join(
            b'{"feature":%s,"points":%s}' % (orjson.dumps(s.feature), s.points_json()) for s in self.series
        )
        return orjson.dumps(self.head())[:-1] + b',"series":[' + series + b"]}"


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
    return deployment_for(session, project, model, environment)[1]


def deployment_for(session: Session, project: str, model: str, environment: str) -> tuple[int, int]:
    """``(model id, deployment id)`` of ``model``'s deployment in ``environment``; ``NotFound``
    naming what is missing."""
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
    return int(found[1]), int(found[2])


def version_filter(session: Session, model_id: int, ref: str) -> tuple[int, int]:
    """``(version id, number)`` of the version ``ref`` names in the model: a number, ``v<N>``,
    ``latest`` or an alias (the registry's rules); ``Unprocessable`` naming ``version``."""
    model = session.get(RegisteredModel, model_id)
    assert model is not None
    try:
        version = version_in(session, model, ref)
    except NotFound as error:
        raise Unprocessable(str(error), errors={"version": [str(error)]}) from None
    return version.id, version.version


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
    version: tuple[int, int] | None = None,
) -> SeriesResult:
    """Bucketed series of metric ``name``, one per feature (in the order asked, each once).

    ``version`` (``(id, number)``, see :func:`version_filter`) keeps that version's points
    only. ``end`` defaults to now and ``start`` to a day before ``end``. Raises ``Unprocessable``
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
    if start is None:  # a day before end, or as far back as datetime goes
        start = end - DEFAULT_RANGE if end - EARLIEST >= DEFAULT_RANGE else EARLIEST
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

    window_start = type_coerce(MonitorPoint.window_start, BigInteger)  # epoch seconds, as stored
    conditions = [
        MonitorPoint.deployment_id == deployment_id,
        MonitorPoint.metric == name,
        window_start >= _ceil_seconds(start),
        window_start < _ceil_seconds(end),
    ]
    if wanted:
        conditions.append(MonitorPoint.feature.in_(wanted))
    if version is not None:
        conditions.append(MonitorPoint.version_id == version[0])
    bucket = window_start // _inline(seconds)
    found = None
    if seconds <= window_seconds(platform):
        # A bucket holds at most one window, and usually one point (one version, or a version
        # asked for): read the points in index order as they are, or else aggregate per window
        # (no sort either). ``count`` is never read raw: a NULL point counts 0.
        if agg != "count":
            found = _fetch(session, None, bucket, window_start, conditions, seconds)
        if found is None:
            found = _fetch(session, agg, bucket, window_start, conditions, seconds)
    if found is None:  # coarser buckets, or windows shorter than the step (stored under another config)
        found = _fetch(session, agg, bucket, bucket, conditions, seconds, shared=True)
    assert found is not None
    series = [found.get(feature) or Series.empty(feature) for feature in wanted]
    series += [found[feature] for feature in found if feature not in wanted]
    return SeriesResult(name, agg, seconds, start, end, series, version[1] if version else None)


def _fetch(
    session: Session,
    agg: str | None,
    bucket: ColumnElement[int],
    group: ColumnElement[int],
    conditions: list[ColumnElement[bool]],
    seconds: int,
    *,
    shared: bool = False,
) -> dict[str, Series] | None:
    """The series by feature: ``agg`` of the points of each ``(feature, group)``, or with
    ``agg`` None each point (ordered by ``group``). Unless buckets may be ``shared`` by
    several rows, None as soon as two rows of a feature fall in one bucket."""
    columns = [MonitorPoint.value] if agg is None else aggregate(session.get_bind().dialect.name, agg)
    statement = select(MonitorPoint.feature, bucket.label("bucket"), *columns).where(*conditions)
    if agg is not None:
        statement = statement.group_by(MonitorPoint.feature, group)
    found: dict[str, Series] = {}
    with _collector_paused():
        # A Core connection: rows as plain tuples, no ORM loading per row.
        rows = session.connection().execute(statement.order_by(MonitorPoint.feature, group)).all()
        for feature, group_rows in itertools.groupby(rows, key=operator.itemgetter(0)):  # ordered by feature
            _features, buckets, results, *_helpers = zip(*group_rows, strict=True)
            index = np.array(buckets, dtype=np.int64)
            if not shared and len(index) > 1 and not np.all(np.diff(index) > 0):
                return None
            found[feature] = Series(feature, index * seconds, np.array(results, dtype=np.float64))  # None -> NaN
        del rows  # freed here, while the collector is paused
    return found


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while a month of rows is alive: a collection then would move
    them all to the older generations (they are freed by reference counting right after),
    and every few queries a full collection of the process (tens of ms) would follow."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def window_seconds(platform: Platform) -> int:
    """The configured monitoring window, in seconds."""
    return int(parse_length(platform.config["monitoring"]["window"]).total_seconds())


# --- per dialect --------------------------------------------------------------------------


def _ceil_seconds(moment: dt.datetime) -> int:
    """Whole seconds since the epoch, rounded up: for a whole-second ``x``, ``x >= moment``
    exactly when ``x >= _ceil_seconds(moment)`` (and the same for ``<``)."""
    delta = moment - EPOCH
    return delta.days * 86400 + delta.seconds + (1 if delta.microseconds else 0)


def _inline(seconds: int) -> ColumnElement[int]:
    # Inline, not a bound parameter: GROUP BY repeats the expression, and PostgreSQL only
    # matches it to the SELECT column when both are the same text (not $1 and $2).
    return literal_column(str(int(seconds)), Integer)


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
    return [MonitorPoint.value.expression, func.max(type_coerce(MonitorPoint.window_start, BigInteger))]


LAST: dict[str, Callable[[], list[ColumnElement[Any]]]] = {"postgresql": _last_postgresql, "sqlite": _last_sqlite}
