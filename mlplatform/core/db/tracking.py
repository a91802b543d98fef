"""Experiment tracking tables: experiments, runs, params, metrics, latest_metrics, tags.

Shapes chosen for ingest speed and search:

- ``metrics`` is append-only and written with Core ``executemany``: plain column types only
  (no TypeDecorator runs per row), ``timestamp`` in milliseconds since the epoch like MLflow,
  and ``value`` NULL for NaN (SQLite turns NaN into NULL anyway; ±Inf are stored as is).
- ``latest_metrics`` keeps one row per (run, key), upserted in the log transaction, so search
  and ordering join one row per run and key instead of scanning history.
- Keys and values are unbounded ``String``/``Text``: the limits live in config
  (``tracking.limits``) and may be raised without a migration. Param and tag values are
  not indexed (PostgreSQL refuses B-tree entries over ~2.7 kB); search reaches them through
  the (run_id, key) primary key of the runs it is already looking at.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlplatform.core.db.base import Base, JSONText, UTCDateTime, intpk, name_str, timestamp

EXPERIMENT_STAGES = ("active", "archived", "deleted")
RUN_STAGES = ("active", "deleted")
RUN_STATUSES = ("running", "finished", "failed", "killed")
TERMINAL_STATUSES = ("finished", "failed", "killed")

# SQLite: store these tables in their primary key's B-tree (WITHOUT ROWID), so a search join
# on (run_id, key) is one lookup instead of an index lookup plus a table lookup.
CLUSTERED = {"sqlite_with_rowid": False}


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[intpk]
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[name_str]
    description: Mapped[str] = mapped_column(Text, default="")
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[timestamp]
    created_by: Mapped[name_str]
    updated_at: Mapped[timestamp]
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The stage a delete found (active or archived), so restore returns the experiment there.
    stage_before_delete: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_experiments_project_id_name"),)


class ExperimentTag(Base):
    __tablename__ = "experiment_tags"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    name: Mapped[name_str]
    status: Mapped[str] = mapped_column(String(20), default="running")
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="active")
    start_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    user: Mapped[name_str]
    source_git_commit: Mapped[str | None] = mapped_column(String(64))
    source_entry_point: Mapped[str | None] = mapped_column(String(1000))
    parent_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    artifact_prefix: Mapped[str] = mapped_column(String(500))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_runs_experiment_id_start_time", "experiment_id", "start_time"),
        Index("ix_runs_project_id_start_time", "project_id", "start_time"),
    )


class Param(Base):
    """Write-once per (run, key)."""

    __tablename__ = "params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (CLUSTERED,)


class RunTag(Base):
    """Last write wins per (run, key)."""

    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (CLUSTERED,)


class Metric(Base):
    """Append-only history. ``value`` NULL is NaN; ``timestamp`` is milliseconds since the epoch.

    ``run_id`` has no foreign key: PostgreSQL would check it per point (half the cost of a
    batch). Logging locks the run's row instead, and purging deletes a run's points itself
    (``services.tracking``)."""

    __tablename__ = "metrics"

    id: Mapped[intpk]
    run_id: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String())
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Double())

    __table_args__ = (Index("ix_metrics_run_id_key_step", "run_id", "key", "step"),)


class LatestMetric(Base):
    """The latest point of each (run, key): max step wins, then the latest timestamp."""

    __tablename__ = "latest_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Double())

    __table_args__ = (Index("ix_latest_metrics_key_value", "key", "value"), CLUSTERED)


class RunIdempotencyKey(Base):
    """A log batch's ``Idempotency-Key``: a replay returns ``response`` instead of logging again."""

    __tablename__ = "run_idempotency_keys"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[Any] = mapped_column(JSONText(), nullable=True)
    created_at: Mapped[timestamp]
