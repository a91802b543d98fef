"""Deployments: one per model and environment, serving one or more versions by traffic weight.

``deployment_versions`` holds what the gateway routes to (weights sum to 100 across the
versions serving); ``deployment_events`` is the history shown on a version's lineage and
the portal (deployed, healthy, failed with the target's error, traffic moved, retired).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlplatform.core.db.base import Base, JSONText, UTCDateTime, intpk, name_str, timestamp

DEPLOYMENT_STATUSES = ("pending", "deploying", "healthy", "failed", "retired")


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[intpk]
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    status_message: Mapped[str] = mapped_column(Text, default="")
    revision: Mapped[int] = mapped_column(Integer, default=1)  # bumped on every change: the ETag
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]
    updated_by: Mapped[name_str]

    __table_args__ = (UniqueConstraint("model_id", "environment", name="uq_deployments_model_id_environment"),)


class DeploymentVersion(Base):
    __tablename__ = "deployment_versions"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    weight: Mapped[int] = mapped_column(Integer)  # percent of gateway traffic, 0-100
    target_ref: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    status_message: Mapped[str] = mapped_column(Text, default="")
    deployed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class DeploymentEvent(Base):
    __tablename__ = "deployment_events"

    id: Mapped[intpk]
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[Any] = mapped_column(JSONText(), default=dict)
    actor: Mapped[name_str]
    occurred_at: Mapped[timestamp]
