"""Model registry tables: registered models, their versions (with lineage) and aliases.

A version's files live in the artifact store under ``artifact_uri`` (a prefix); its
``artifact_sha256`` is ``mlplatform.core.model_loading`` 's digest of that folder, recorded at
registration and checked before any serving process loads it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlplatform.core.db.base import Base, JSONText, intpk, name_str, timestamp

VERSION_STATUSES = ("pending", "ready", "failed")
RESERVED_ALIASES = ("latest",)  # and v<N>


class RegisteredModel(Base):
    __tablename__ = "registered_models"

    id: Mapped[intpk]
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[name_str]
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[Any] = mapped_column(JSONText(), default=dict)
    created_at: Mapped[timestamp]
    created_by: Mapped[name_str]
    updated_at: Mapped[timestamp]
    # the highest version number ever given: numbers are not reused after a version is deleted
    last_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_registered_models_project_id_name"),)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[intpk]
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    status_message: Mapped[str] = mapped_column(Text, default="")
    flavor: Mapped[str | None] = mapped_column(String(100))
    signature: Mapped[Any | None] = mapped_column(JSONText())
    artifact_uri: Mapped[str] = mapped_column(String(1000))
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[Any] = mapped_column(JSONText(), default=dict)
    archived: Mapped[bool] = mapped_column(default=False)
    # lineage, frozen at registration
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    experiment_id: Mapped[int | None] = mapped_column(Integer)
    source_git_commit: Mapped[str | None] = mapped_column(String(64))
    run_params: Mapped[Any | None] = mapped_column(JSONText())
    run_metrics: Mapped[Any | None] = mapped_column(JSONText())
    created_at: Mapped[timestamp]
    created_by: Mapped[name_str]
    updated_at: Mapped[timestamp]

    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),)


class ModelAlias(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    updated_at: Mapped[timestamp]
    updated_by: Mapped[name_str]
