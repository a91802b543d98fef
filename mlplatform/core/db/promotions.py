"""Promotions: a model version moving into an environment, as a persisted state machine.

``promotions`` holds one request and where it stands (``state``, ``revision`` for
compare-and-set, the checks' results, the traffic it started from); ``promotion_approvals``
the maintainers' votes, one per person; ``promotion_steps`` each rollout step with its
timings and what the SLO guard measured.

At most one promotion per model and environment is active (pending_approval, approved,
rolling_out): ``active_key`` is ``"<model_id>:<environment>"`` while it is, NULL after, and
unique, so the database refuses a second one even when two requests race.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Double, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlplatform.core.db.base import Base, JSONText, UTCDateTime, intpk, name_str, timestamp

ACTIVE_STATES = ("pending_approval", "approved", "rolling_out")
FINAL_STATES = ("completed", "rejected", "rolled_back", "failed", "expired")
PROMOTION_STATES = ACTIVE_STATES + FINAL_STATES
STRATEGIES = ("direct", "canary", "blue_green")


class Promotion(Base):
    __tablename__ = "promotions"

    id: Mapped[intpk]
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(63))
    strategy: Mapped[str] = mapped_column(String(20))
    steps: Mapped[Any] = mapped_column(JSONText())  # traffic percentages, ending at 100
    bake_seconds: Mapped[float] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # why the last transition happened
    revision: Mapped[int] = mapped_column(Integer, default=1)  # compare-and-set on every transition
    active_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    required_approvals: Mapped[int] = mapped_column(Integer, default=0)
    requested_by: Mapped[name_str]
    step_index: Mapped[int] = mapped_column(Integer, default=-1)  # last step started; -1 before the rollout
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id", ondelete="SET NULL"))
    previous_weights: Mapped[Any | None] = mapped_column(JSONText())  # {version_id: weight} before traffic moved
    checks: Mapped[Any] = mapped_column(JSONText(), default=dict)  # {phase: [result, ...]}
    settings: Mapped[Any] = mapped_column(JSONText(), default=dict)  # the promotion config in force
    notifications: Mapped[Any] = mapped_column(JSONText(), default=list)
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # first traffic moved
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    guard_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_promotions_model_env", "model_id", "environment"),)


class PromotionApproval(Base):
    __tablename__ = "promotion_approvals"

    id: Mapped[intpk]
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id", ondelete="CASCADE"), index=True)
    username: Mapped[name_str]
    decision: Mapped[str] = mapped_column(String(10))  # approve | reject
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[timestamp]

    __table_args__ = (
        UniqueConstraint("promotion_id", "username", name="uq_promotion_approvals_promotion_id_username"),
    )


class PromotionStep(Base):
    """One step of a rollout: ``prepare`` (deploy at 0%, smoke test), ``traffic`` (a weight
    and its bake), ``guard`` (the watch after completion) or ``rollback``."""

    __tablename__ = "promotion_steps"

    id: Mapped[intpk]
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    weight: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))  # running | passed | failed
    message: Mapped[str] = mapped_column(Text, default="")
    measured: Mapped[Any] = mapped_column(JSONText(), default=dict)
    started_at: Mapped[timestamp]
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("promotion_id", "index", name="uq_promotion_steps_promotion_id_index"),)
