"""Tables. Each issue adds its own; the shapes follow DESIGN §6."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mlplatform.core.db.base import Base, JSONText, UTCDateTime, intpk, name_str, timestamp

ROLES = ("viewer", "developer", "maintainer", "admin")


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[intpk]
    name: Mapped[name_str] = mapped_column(unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[timestamp]
    created_by: Mapped[name_str]


class User(Base):
    __tablename__ = "users"

    id: Mapped[intpk]
    username: Mapped[name_str] = mapped_column(unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(250), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[timestamp]


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[name_str]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[timestamp]
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Membership(Base):
    __tablename__ = "memberships"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[timestamp]


class AuditEvent(Base):
    """Append-only. ``prev_hash`` is the previous row's ``row_hash``; ``row_hash`` covers this row."""

    __tablename__ = "audit_events"

    id: Mapped[intpk]
    occurred_at: Mapped[timestamp]
    actor: Mapped[name_str]
    project: Mapped[str | None] = mapped_column(String(250), index=True)
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(100))
    resource_id: Mapped[str] = mapped_column(String(250))
    summary: Mapped[Any] = mapped_column(JSONText())
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_events_resource", "resource_type", "resource_id"),)


class Job(Base):
    """The platform's mirror of a queued job; the queue backend runs it by id."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    args: Mapped[Any] = mapped_column(JSONText())
    state: Mapped[str] = mapped_column(String(20), index=True)  # queued | running | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=600)
    project: Mapped[str | None] = mapped_column(String(250), index=True)
    worker: Mapped[str | None] = mapped_column(String(250))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[timestamp]
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


# importing the modules registers their tables on Base.metadata
from mlplatform.core.db import deployments, monitoring, promotions, registry, tracking  # noqa: F401,E402
