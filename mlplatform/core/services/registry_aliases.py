"""Aliases: a movable name for one version of a model (``churn@champion``).

One version per alias; an alias may be set on a pending or ready version that is not
archived. ``latest`` and ``v<N>`` (and bare numbers) are reserved because ``resolve_version``
reads them as version references. Every move is audited with who, from and to.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Table, and_, bindparam, select
from sqlalchemy.orm import Session, aliased

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelAlias, ModelVersion, RegisteredModel
from mlplatform.core.errors import Conflict, Unprocessable
from mlplatform.core.services import access
from mlplatform.core.services.registry import (
    LATEST,
    could_be_stored,
    get_model,
    record_change,
    version_in,
    version_number,
)

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

ALIAS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


def check_alias(alias: str) -> str:
    """``alias`` if it may name an alias; ``Unprocessable`` (422) if it is reserved or malformed."""
    if alias.lower() == LATEST or version_number(alias) is not None:
        raise Unprocessable(
            f"alias {alias!r} is reserved: 'latest' and 'v<N>' already name versions", errors={"alias": ["reserved"]}
        )
    if not ALIAS_NAME.match(alias):
        raise Unprocessable(
            f"alias {alias!r} must start with a letter and hold only letters, digits, '_' and '-' (at most 100)",
            errors={"alias": ["invalid"]},
        )
    return alias


def set_alias(
    session: Session,
    identity: Identity,
    project: Project | str,
    model_name: str,
    alias: str,
    version_ref: str | int,
    *,
    platform: Platform | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version_ref``; returns the move (``previous`` is None for a new alias).

    ``Conflict`` if the version failed or is archived. Setting it where it already points is a
    no-op. Core statements on a hot write path: the model row is locked (PostgreSQL ``FOR
    UPDATE``; SQLite write transactions are serialised) in the same read that finds the version
    and where the alias points now, then one INSERT or UPDATE and the audit event.
    """
    check_alias(alias)
    project = access.project_named(session, project)
    connection = session.connection()
    number = version_number(version_ref)
    if number is None or not could_be_stored(number):
        # latest or another alias: resolve it under the model's lock first (or say what is not found)
        model = get_model(session, project, model_name, for_update=True)
        number = version_in(session, model, version_ref).version
    found = connection.execute(
        _TARGET_AND_CURRENT, {"project": project.id, "name": model_name, "number": number, "alias": alias}
    ).first()
    if found is None:
        version_in(session, get_model(session, project, model_name), number)  # raises NotFound naming what
    model_id, version_id, status, archived, current_id, previous, alias_updated_at, alias_updated_by = found
    if status == "failed" or archived:
        state = "failed" if status == "failed" else "archived"
        raise Conflict(f"version {number} of {model_name!r} is {state}: an alias cannot point at it")
    if current_id == version_id:
        return AliasMove(model_name, alias, number, previous, alias_updated_at, alias_updated_by)
    now = utcnow()
    values = {"version_id": version_id, "updated_at": now, "updated_by": identity.username}
    if current_id is None:
        connection.execute(_ALIASES.insert(), {"model_id": model_id, "alias": alias, **values})
    else:
        connection.execute(_ALIASES.update().where(_ALIASES.c.model_id == model_id, _ALIASES.c.alias == alias), values)
    record_change(
        session,
        identity,
        project,
        "model_alias.set",
        "model_alias",
        f"{model_id}:{alias}",
        {"model": model_name, "alias": alias, "from": previous, "to": number},
        platform,
    )
    return AliasMove(model_name, alias, number, previous, now, identity.username)


@dataclass(frozen=True)
class AliasMove:
    """Where an alias points after ``set_alias``, and where it pointed before."""

    model: str
    alias: str
    version: int
    previous: int | None
    updated_at: dt.datetime
    updated_by: str


_ALIASES: Table = ModelAlias.__table__  # type: ignore[assignment]
_PREVIOUS = aliased(ModelVersion)
_TARGET_AND_CURRENT = (
    select(
        RegisteredModel.id,
        ModelVersion.id,
        ModelVersion.status,
        ModelVersion.archived,
        ModelAlias.version_id,
        _PREVIOUS.version,
        ModelAlias.updated_at,
        ModelAlias.updated_by,
    )
    .join(ModelVersion, and_(ModelVersion.model_id == RegisteredModel.id, ModelVersion.version == bindparam("number")))
    .outerjoin(ModelAlias, and_(ModelAlias.model_id == RegisteredModel.id, ModelAlias.alias == bindparam("alias")))
    .outerjoin(_PREVIOUS, _PREVIOUS.id == ModelAlias.version_id)
    .where(RegisteredModel.project_id == bindparam("project"), RegisteredModel.name == bindparam("name"))
    .with_for_update(of=RegisteredModel)
)


def delete_alias(
    session: Session,
    identity: Identity,
    project_name: str,
    model_name: str,
    alias: str,
    *,
    platform: Platform | None = None,
) -> None:
    """Remove ``alias``. Idempotent: removing an alias that does not exist does nothing."""
    project = access.get_project(session, project_name)
    model = get_model(session, project, model_name, for_update=True)
    row = session.get(ModelAlias, (model.id, alias))
    if row is None:
        return
    previous = session.get(ModelVersion, row.version_id)
    session.delete(row)
    session.flush()
    record_change(
        session,
        identity,
        project,
        "model_alias.delete",
        "model_alias",
        f"{model.id}:{alias}",
        {"model": model_name, "alias": alias, "from": previous.version if previous else None, "to": None},
        platform,
    )
