"""Monitoring and alerting tables (DESIGN §6, §7).

Raw inference records are not here: they go to the artifact store as Parquet files per
deployment and window. Here are the reference profiles, late labels (joined to records by
request id when a window is computed), the windows already computed, the per-window results
(``monitor_points``: one row per deployment, version, metric, feature and window), alert
rules, alerts and every notification sent for them, and the lease and record of each
compacted hour folder of records (``monitor_compactions``).

``monitor_points.window_start`` is stored as whole seconds since the Unix epoch (UTC): a
series query buckets it with integer arithmetic in SQL and never parses a date per row.
Python code sees an aware UTC ``datetime`` either way (``EpochSeconds``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Index, Integer, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlplatform.core.db.base import Base, JSONText, UTCDateTime, intpk, name_str, timestamp

OVERALL = ""  # the feature value of a monitor point about the whole window, not one feature
ALERT_STATES = ("firing", "resolved")
COMPARISONS = (">", ">=", "<", "<=")
SEVERITIES = ("info", "warning", "critical")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class EpochSeconds(TypeDecorator[dt.datetime]):
    """An aware UTC datetime stored as whole seconds since the Unix epoch (``BIGINT``).

    Window starts are whole seconds; a fraction is an error, not silently dropped. In SQL
    the column is a plain integer: ``window_start / 300`` is the 5-minute bucket."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> int | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value.microsecond:
            raise ValueError(f"{value.isoformat()} is not a whole second")
        return int((value - EPOCH).total_seconds())

    def process_result_value(self, value: int | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else EPOCH + dt.timedelta(seconds=int(value))


class ReferenceProfile(Base):
    """A version's reference data, profiled once: per-feature kind, quantile edges, min/max,
    category frequencies. Sorted numeric values (for KS) live in the artifact store beside
    the reference file, under ``artifact_prefix``."""

    __tablename__ = "reference_profiles"

    id: Mapped[intpk]
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), unique=True)
    source: Mapped[str] = mapped_column(String(50))  # "upload" | "run_artifact"
    artifact_prefix: Mapped[str] = mapped_column(String(1000))
    row_count: Mapped[int] = mapped_column(Integer)
    profile: Mapped[Any] = mapped_column(JSONText())
    created_at: Mapped[timestamp]
    created_by: Mapped[name_str]


class MonitorLabel(Base):
    """Ground truth that arrived after the prediction, joined by request id."""

    __tablename__ = "monitor_labels"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    label: Mapped[Any] = mapped_column(JSONText())
    received_at: Mapped[timestamp]


class MonitorWindow(Base):
    """A window that has been computed; recomputing it replaces its points (idempotent)."""

    __tablename__ = "monitor_windows"

    id: Mapped[intpk]
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    computed_at: Mapped[timestamp]

    __table_args__ = (
        UniqueConstraint("deployment_id", "window_start", name="uq_monitor_windows_deployment_id_window_start"),
    )


class MonitorPoint(Base):
    """One figure of one window: ``feature`` is ``OVERALL`` for figures of the whole window;
    ``version_id`` is the model version whose records it was computed from."""

    __tablename__ = "monitor_points"

    id: Mapped[intpk]
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    metric: Mapped[str] = mapped_column(String(100))
    feature: Mapped[str] = mapped_column(String(250), default=OVERALL)
    window_start: Mapped[dt.datetime] = mapped_column(EpochSeconds())
    window_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    value: Mapped[float | None] = mapped_column(Double)

    __table_args__ = (
        # Covering (value and version included): a series query, with or without a version
        # filter, reads a range of the index alone, no table lookups.
        Index("ix_monitor_points_series", "deployment_id", "metric", "feature", "window_start", "value", "version_id"),
        # Every point of one window: alert evaluation, the latest window for /metrics, recomputes.
        Index("ix_monitor_points_window", "deployment_id", "window_start"),
    )


class MonitorCompaction(Base):
    """One hour folder of records of a deployment: the lease of the compaction merging it
    (``leased_until``, None when none runs) and what its last compaction did."""

    __tablename__ = "monitor_compactions"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    hour_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    leased_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    compacted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    file: Mapped[str] = mapped_column(String(200), default="")  # the merged file's name; "" before the first
    files_merged: Mapped[int] = mapped_column(Integer, default=0)
    row_count: Mapped[int] = mapped_column(Integer, default=0)


class AlertRule(Base):
    __tablename__ = "alert_rules"

    id: Mapped[intpk]
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[name_str]
    model: Mapped[str | None] = mapped_column(String(250))  # None: every model of the project
    environment: Mapped[str | None] = mapped_column(String(63))  # None: every environment
    metric: Mapped[str] = mapped_column(String(100))
    feature: Mapped[str | None] = mapped_column(String(250))  # None: any feature
    comparison: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Double)
    for_windows: Mapped[int] = mapped_column(Integer, default=1)
    severity: Mapped[str] = mapped_column(String(20), default="warning")
    channels: Mapped[Any] = mapped_column(JSONText(), default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[timestamp]
    created_by: Mapped[name_str]
    updated_at: Mapped[timestamp]

    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_alert_rules_project_id_name"),)


class Alert(Base):
    """One rule firing for one deployment and feature; it stays one row until it resolves."""

    __tablename__ = "alerts"

    id: Mapped[intpk]
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    feature: Mapped[str] = mapped_column(String(250), default=OVERALL)
    state: Mapped[str] = mapped_column(String(20))
    value: Mapped[float | None] = mapped_column(Double)
    started_at: Mapped[timestamp]
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(250))
    details: Mapped[Any] = mapped_column(JSONText(), default=dict)


class AlertNotification(Base):
    __tablename__ = "alert_notifications"

    id: Mapped[intpk]
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(63))
    event: Mapped[str] = mapped_column(String(20))  # firing | resolved
    status: Mapped[str] = mapped_column(String(20))  # pending | delivered | failed
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[timestamp]
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
