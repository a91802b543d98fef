"""What the monitoring page draws, built from the time-series service.

- ``heat_map``: drift per feature (rows) per window bucket (columns), one drift metric, each
  cell coloured by how its score compares with the metric's threshold (``level`` 0-4; the
  ``<metric>_drifted`` flag forces at least 3) or marked as having no data.
- ``chart_config``: the line charts (drift and missing-value rate per feature, volume,
  latency p50/p99, error rate) as JSON for ``portal.js``, rendered into the page.

The range ends at the latest computed window (so old data still shows) and is split into at
most ``MAX_COLUMNS`` buckets, each a whole number of monitoring windows.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mlplatform.core.db.monitoring import OVERALL, MonitorWindow
from mlplatform.core.monitoring.drift_window import DriftSuite
from mlplatform.core.monitoring.windows import EPOCH, as_utc, parse_length
from mlplatform.core.services import timeseries

RANGES: dict[str, dt.timedelta] = {
    "6h": dt.timedelta(hours=6),
    "24h": dt.timedelta(days=1),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
DEFAULT_RANGE = "24h"
MAX_COLUMNS = 48


@dataclass(frozen=True)
class DriftMetricInfo:
    name: str
    threshold: float
    higher_is_drift: bool

    @property
    def worst(self) -> str:
        """The aggregate that keeps the worst score of a bucket."""
        return "max" if self.higher_is_drift else "min"

    def level(self, value: float | None, drifted: float | None) -> int:
        """-1 without data; 0-4 from far below the threshold to twice past it."""
        if value is None:
            return -1
        if self.higher_is_drift:
            ratio = value / self.threshold if self.threshold > 0 else 0.0
        else:
            ratio = self.threshold / value if value > 0 else math.inf
        level = 0 if ratio < 0.25 else 1 if ratio < 0.5 else 2 if ratio < 1 else 3 if ratio < 2 else 4
        return max(level, 3) if drifted and drifted >= 1 else level


@dataclass(frozen=True)
class Cell:
    value: float | None
    level: int


@dataclass(frozen=True)
class HeatMap:
    metric: DriftMetricInfo
    columns: list[dt.datetime]
    rows: list[tuple[str, list[Cell]]]


@dataclass(frozen=True)
class Span:
    """The range shown: ``[start, end)`` in buckets of ``step`` seconds."""

    start: dt.datetime
    end: dt.datetime
    step: int

    @property
    def columns(self) -> list[dt.datetime]:
        count = int((self.end - self.start).total_seconds()) // self.step
        return [self.start + dt.timedelta(seconds=i * self.step) for i in range(count)]


def drift_metrics(platform: Any) -> list[DriftMetricInfo]:
    """The enabled drift metrics with their project-wide thresholds."""
    suite = DriftSuite.from_config(platform)
    return [
        DriftMetricInfo(
            m.name, float(suite.thresholds.get(m.name, m.default_threshold)), bool(getattr(m, "higher_is_drift", True))
        )
        for m in suite.metrics
    ]


def span(session: Session, platform: Any, deployment_id: int, range_name: str) -> Span:
    """Buckets of whole windows covering ``range_name`` up to the latest computed window."""
    window = int(parse_length(platform.config["monitoring"]["window"]).total_seconds())
    length = RANGES.get(range_name, RANGES[DEFAULT_RANGE])
    step = max(window, math.ceil(length.total_seconds() / MAX_COLUMNS / window) * window)
    latest = session.scalar(
        select(func.max(MonitorWindow.window_end)).where(MonitorWindow.deployment_id == deployment_id)
    )
    end = as_utc(latest) if latest is not None else dt.datetime.now(dt.UTC)
    end_s = math.ceil((end - EPOCH).total_seconds() / step) * step
    start_s = end_s - math.ceil(length.total_seconds() / step) * step
    return Span(EPOCH + dt.timedelta(seconds=start_s), EPOCH + dt.timedelta(seconds=end_s), step)


def _series(
    session: Session,
    platform: Any,
    deployment_id: int,
    view: Span,
    name: str,
    agg: str,
    features: list[str] | None = None,
) -> dict[str, dict[dt.datetime, float | None]]:
    result = timeseries.query(
        session,
        platform,
        deployment_id,
        name=name,
        features=features or [],
        start=view.start,
        end=view.end,
        step=f"{view.step}s",
        agg=agg,
    )
    return {s.feature: dict(s.points) for s in result.series}


def heat_map(session: Session, platform: Any, deployment_id: int, view: Span, metric: DriftMetricInfo) -> HeatMap:
    scores = _series(session, platform, deployment_id, view, metric.name, metric.worst)
    flags = _series(session, platform, deployment_id, view, f"{metric.name}_drifted", "max")
    columns = view.columns
    rows = []
    for feature in sorted(f for f in scores if f != OVERALL):
        values, drifted = scores[feature], flags.get(feature, {})
        rows.append((feature, [Cell(values.get(c), metric.level(values.get(c), drifted.get(c))) for c in columns]))
    return HeatMap(metric, columns, rows)


def _points(points: dict[dt.datetime, float | None]) -> list[list[Any]]:
    return [[int(t.timestamp() * 1000), v] for t, v in sorted(points.items())]


def chart_config(
    session: Session, platform: Any, deployment_id: int, view: Span, metric: DriftMetricInfo
) -> dict[str, Any]:
    """Every line chart of the page, with its series, as ``portal.js`` draws them."""

    def per_feature(name: str, agg: str) -> list[dict[str, Any]]:
        found = _series(session, platform, deployment_id, view, name, agg)
        return [{"label": f, "points": _points(p)} for f, p in sorted(found.items()) if f != OVERALL and p]

    def overall(name: str, agg: str, label: str) -> list[dict[str, Any]]:
        found = _series(session, platform, deployment_id, view, name, agg, [OVERALL]).get(OVERALL, {})
        return [{"label": label, "points": _points(found)}] if found else []

    charts = [
        {
            "key": "drift",
            "title": f"Drift ({metric.name}) per feature",
            "series": per_feature(metric.name, metric.worst),
            "threshold": metric.threshold,
        },
        {
            "key": "missing",
            "title": "Missing-value rate per feature",
            "series": per_feature("missing_rate", "max"),
            "percent": True,
        },
        {"key": "volume", "title": "Volume (rows)", "series": overall("row_count", "sum", "rows"), "bars": True},
        {
            "key": "latency",
            "title": "Latency (ms)",
            "series": overall("latency_p50", "avg", "p50") + overall("latency_p99", "max", "p99"),
        },
        {"key": "errors", "title": "Error rate", "series": overall("error_rate", "max", "error rate"), "percent": True},
    ]
    return {
        "step_ms": view.step * 1000,
        "start_ms": int(view.start.timestamp() * 1000),
        "end_ms": int(view.end.timestamp() * 1000),
        "charts": charts,
    }
