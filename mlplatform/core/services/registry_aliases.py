"""Aliases: a movable name for one version of a model (``churn@champion``).

One version per alias; an alias may be set on a pending or ready version that is not
archived. ``latest`` and ``v<N>`` (and bare numbers) are reserved because ``resolve_version``
reads them as version references. Every move is audited with who, from and to.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelAlias, ModelVersion
from mlplatform.core.errors import Conflict, Unprocessable
from mlplatform.core.services import access
from mlplatform.core.services.registry import LATEST, get_model, record_change, version_in, version_number

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
) -> tuple[ModelAlias, int | None, ModelVersion]:
    """Point ``alias`` at ``version_ref``; returns (alias row, previous version number or None, version).

    ``Conflict`` if the version failed or is archived. Setting it where it already points is a no-op.
    """
    check_alias(alias)
    project = access.project_named(session, project)
    model = get_model(session, project, model_name, for_update=True)
    version = version_in(session, model, version_ref)
    if version.status == "failed" or version.archived:
        state = "failed" if version.status == "failed" else "archived"
        raise Conflict(f"version {version.version} of {model_name!r} is {state}: an alias cannot point at it")
    row, previous = session.execute(
        select(ModelAlias, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)
    ).first() or (None, None)
    if row is not None and row.version_id == version.id:
        return row, previous, version
    if row is None:
        row = ModelAlias(model_id=model.id, alias=alias, version_id=version.id, updated_by=identity.username)
        session.add(row)
    else:
        row.version_id, row.updated_by, row.updated_at = version.id, identity.username, utcnow()
    session.flush()
    record_change(
        session,
        identity,
        project,
        "model_alias.set",
        "model_alias",
        f"{model.id}:{alias}",
        {"model": model_name, "alias": alias, "from": previous, "to": version.version},
        platform,
    )
    return row, previous, version


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
