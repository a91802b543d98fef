"""Registered models and how a version is named: ``churn``, ``churn@champion``, ``3``, ``v3``, ``latest``.

Models: create, list/search, get, update (description, tags), delete (refused while any of
its versions is deployed). Versions live in ``registry_versions``, aliases in
``registry_aliases``. Every change is audited in the caller's transaction.

``parse_model_ref`` and ``resolve_version`` are the one way the rest of the platform (the
gateway, deployments, promotions) turns what a user typed into a ``ModelVersion``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import DeploymentVersion
from mlplatform.core.db.models import Project
from mlplatform.core.db.monitoring import ReferenceProfile
from mlplatform.core.db.promotions import ACTIVE_STATES as PROMOTION_ACTIVE_STATES
from mlplatform.core.db.promotions import Promotion
from mlplatform.core.db.registry import ModelAlias, ModelVersion, RegisteredModel
from mlplatform.core.db.session import after_commit
from mlplatform.core.errors import Conflict, InvalidInput, NotFound
from mlplatform.core.services import access, audit
from mlplatform.core.services.pagination import Page, encode_token, paginate

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.registry")

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,249}$")
_VERSION_REF = re.compile(r"^[vV]?([0-9]+)$")
LATEST = "latest"


# --- references ---------------------------------------------------------------------------------


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """``"churn@champion"`` -> ``("churn", "champion")``; ``"churn"`` -> ``("churn", None)``.

    Raises ``InvalidInput`` if either side of the ``@`` is empty.
    """
    name, at, version = ref.partition("@")
    if not name or (at and not version):
        raise InvalidInput(
            f"model reference {ref!r} must be 'NAME' or 'NAME@VERSION_OR_ALIAS'",
            errors={"model": ["malformed reference"]},
        )
    return name, (version if at else None)


#: Version numbers are a 32-bit column: a larger one names no version.
MAX_VERSION_NUMBER = 2**31 - 1


def could_be_stored(number: int) -> bool:
    """Whether a version could have ``number`` (outside the column's range none can)."""
    return 0 < number <= MAX_VERSION_NUMBER


def version_number(ref: str | int) -> int | None:
    """The version number ``ref`` names (``3``, ``"3"``, ``"v3"``), or None if it is not one."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    match = _VERSION_REF.match(str(ref))
    return int(match.group(1)) if match else None


def get_model(session: Session, project: Project, name: str, *, for_update: bool = False) -> RegisteredModel:
    """The model ``name`` of ``project``; ``NotFound`` if there is none.

    ``for_update`` locks the row (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite write
    transactions are already serialised), which serialises version numbering and alias moves.
    """
    query = select(RegisteredModel).where(RegisteredModel.project_id == project.id, RegisteredModel.name == name)
    if for_update:
        query = query.with_for_update()
    model = session.scalar(query)
    if model is None:
        raise NotFound(f"model {name!r} does not exist in project {project.name!r}", errors={"model": ["not found"]})
    return model


def resolve_version(
    session: Session, project: Project, model_name: str, ref: str | int
) -> tuple[RegisteredModel, ModelVersion]:
    """The model and the version ``ref`` names.

    ``ref`` is a number (``3``, ``"3"``, ``"v3"``), ``"latest"`` (the highest version that is
    ready and not archived) or an alias. A number or alias resolves whatever the version's
    status; callers that serve it check ``status == "ready"``. Raises ``NotFound`` naming the
    model and the ref when nothing matches.
    """
    model = get_model(session, project, model_name)
    return model, version_in(session, model, ref)


def version_in(session: Session, model: RegisteredModel, ref: str | int) -> ModelVersion:
    """``resolve_version`` within a model already read."""
    model_name = model.name
    number = version_number(ref)
    if number is not None:
        version = (
            session.scalar(
                select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == number)
            )
            if could_be_stored(number)
            else None
        )
        if version is None:
            raise NotFound(f"model {model_name!r} has no version {number}", errors={"version": ["not found"]})
        return version
    ref = str(ref)
    if ref == LATEST:
        version = session.scalar(
            select(ModelVersion)
            .where(ModelVersion.model_id == model.id, ModelVersion.status == "ready", ModelVersion.archived.is_(False))
            .order_by(ModelVersion.version.desc())
            .limit(1)
        )
        if version is None:
            raise NotFound(
                f"model {model_name!r} has no ready, unarchived version for 'latest'", errors={"version": ["no latest"]}
            )
        return version
    version = session.scalar(
        select(ModelVersion)
        .join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
        .where(ModelAlias.model_id == model.id, ModelAlias.alias == ref)
    )
    if version is None:
        raise NotFound(
            f"model {model_name!r} has no version or alias {ref!r} (use a number, 'v<N>', 'latest' or an alias)",
            errors={"version": ["not found"]},
        )
    return version


def resolve_ref(
    session: Session, project: Project, ref: str, default: str | int = LATEST
) -> tuple[RegisteredModel, ModelVersion]:
    """``resolve_version`` for a whole reference like ``"churn@champion"`` (``default`` when no ``@``)."""
    name, version = parse_model_ref(ref)
    return resolve_version(session, project, name, version if version is not None else default)


# --- models -------------------------------------------------------------------------------------


@dataclass
class ModelView:
    model: RegisteredModel
    aliases: dict[str, int]  # alias -> version number
    latest_version: int | None


def _check_tags(tags: Any) -> dict[str, str]:
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise InvalidInput("tags must map strings to strings", errors={"tags": ["not a string map"]})
    return dict(tags)


def merge_tags(current: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """``current`` with ``changes`` applied: a value sets the tag, ``None`` removes it."""
    if not isinstance(changes, Mapping) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in changes.items()
    ):
        raise InvalidInput(
            "tags must map strings to strings (null removes a tag)", errors={"tags": ["not a string map"]}
        )
    merged = dict(current or {})
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def record_change(
    session: Session,
    identity: Identity,
    project: Project,
    action: str,
    kind: str,
    resource_id: Any,
    summary: Mapping[str, Any],
    platform: Platform | None,
) -> None:
    """Audit one registry change in the caller's transaction."""
    audit.record(
        session,
        actor=identity.username,
        action=action,
        resource_type=kind,
        resource_id=resource_id,
        project=project.name,
        summary=summary,
        platform=platform,
    )


def model_views(session: Session, models: list[RegisteredModel]) -> list[ModelView]:
    ids = [m.id for m in models]
    aliases: dict[int, dict[str, int]] = {i: {} for i in ids}
    latest: dict[int, int] = {}
    if ids:
        for model_id, alias, number in session.execute(
            select(ModelAlias.model_id, ModelAlias.alias, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
            .where(ModelAlias.model_id.in_(ids))
            .order_by(ModelAlias.alias)
        ):
            aliases[model_id][alias] = number
        latest = {
            model_id: number
            for model_id, number in session.execute(
                select(ModelVersion.model_id, func.max(ModelVersion.version))
                .where(ModelVersion.model_id.in_(ids), ModelVersion.status == "ready", ModelVersion.archived.is_(False))
                .group_by(ModelVersion.model_id)
            )
        }
    return [ModelView(m, aliases[m.id], latest.get(m.id)) for m in models]


def create_model(
    session: Session,
    identity: Identity,
    project_name: str,
    name: str,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    *,
    platform: Platform | None = None,
) -> ModelView:
    """A new registered model. ``Conflict`` if the name is taken in the project."""
    project = access.get_project(session, project_name)
    if not MODEL_NAME.match(name or ""):
        raise InvalidInput(
            f"model name {name!r} must start with a letter or digit and hold only letters, digits, '.', '_' and '-'",
            errors={"name": ["invalid"]},
        )
    taken = session.scalar(
        select(RegisteredModel.id).where(RegisteredModel.project_id == project.id, RegisteredModel.name == name)
    )
    if taken is not None:
        raise Conflict(f"model {name!r} already exists in project {project.name!r}", errors={"name": ["taken"]})
    model = RegisteredModel(
        project_id=project.id,
        name=name,
        description=description or "",
        tags=_check_tags(tags or {}),
        created_by=identity.username,
    )
    session.add(model)
    session.flush()
    record_change(
        session, identity, project, "model.create", "model", model.id, {"name": name, "tags": model.tags}, platform
    )
    return ModelView(model, {}, None)


def get_model_view(session: Session, project_name: str, name: str) -> ModelView:
    project = access.get_project(session, project_name)
    return model_views(session, [get_model(session, project, name)])[0]


def list_models(
    session: Session,
    project_name: str,
    *,
    name: str | None = None,
    tags: list[str] | None = None,
    page_size: int = 100,
    page_token: str | None = None,
) -> Page[ModelView]:
    """Models of a project in id order. ``name`` is a case-insensitive substring; each ``tags``
    item is ``key`` (has the tag) or ``key=value``. Tags are matched in Python on the page's
    candidates: they are a small JSON map per model, not a table."""
    project = access.get_project(session, project_name)
    query = select(RegisteredModel).where(RegisteredModel.project_id == project.id)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(RegisteredModel.name).like(f"%{escaped.lower()}%", escape="\\"))
    if not tags:
        page = paginate(session, query, RegisteredModel.id, page_size, page_token)
        return Page(model_views(session, page.items), page.next_page_token)
    wanted = [item.partition("=") for item in tags]

    def matches(model: RegisteredModel) -> bool:
        current = model.tags or {}
        return all(key in current and (not has_value or current[key] == value) for key, has_value, value in wanted)

    # Keep paging until the page is full of matches, so a page token stays a plain id cursor.
    items: list[RegisteredModel] = []
    token = page_token
    while True:
        page = paginate(session, query, RegisteredModel.id, page_size, token)
        for model in page.items:
            if matches(model):
                items.append(model)
                if len(items) == page_size:
                    more = model is not page.items[-1] or page.next_page_token is not None
                    return Page(model_views(session, items), encode_token(model.id) if more else None)
        token = page.next_page_token
        if token is None:
            return Page(model_views(session, items), None)


def update_model(
    session: Session,
    identity: Identity,
    project_name: str,
    name: str,
    changes: Mapping[str, Any],
    *,
    platform: Platform | None = None,
) -> ModelView:
    """Apply ``description`` and ``tags`` (merged; ``None`` removes a tag)."""
    project = access.get_project(session, project_name)
    model = get_model(session, project, name, for_update=True)
    summary: dict[str, Any] = {}
    if "description" in changes and changes["description"] != model.description:
        summary["description"] = {"from": model.description, "to": changes["description"]}
        model.description = changes["description"] or ""
    if "tags" in changes:
        merged = merge_tags(model.tags, changes["tags"])
        if merged != model.tags:
            summary["tags"] = {"from": model.tags, "to": merged}
            model.tags = merged
    if summary:
        model.updated_at = utcnow()
        record_change(
            session, identity, project, "model.update", "model", model.id, {"name": name, **summary}, platform
        )
    return model_views(session, [model])[0]


def deployed_versions(session: Session, version_ids: Any) -> list[int]:
    """Ids among ``version_ids`` (a list or a subquery) that a deployment still routes to or holds.

    A ``deployment_versions`` row counts while it has traffic (weight > 0) or is not retired.
    """
    return list(
        session.scalars(
            select(DeploymentVersion.version_id).where(
                DeploymentVersion.version_id.in_(version_ids),
                (DeploymentVersion.weight > 0) | (DeploymentVersion.status != "retired"),
            )
        )
    )


def promotion_under_way(session: Session, version_ids: Any) -> Row[tuple[int, int]] | None:
    """One active promotion of a version among ``version_ids`` (a list or a subquery) as
    ``(id, version)`` (the promotion's id and the version's number), or ``None``."""
    return session.execute(
        select(Promotion.id, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == Promotion.version_id)
        .where(Promotion.version_id.in_(version_ids), Promotion.state.in_(PROMOTION_ACTIVE_STATES))
        .limit(1)
    ).first()


def delete_model(session: Session, identity: Identity, project_name: str, name: str, *, platform: Platform) -> None:
    """Delete a model with its versions and aliases; their files (each version's folder and
    reference profile) are removed from the artifact store after the commit.

    ``Conflict`` while any of its versions is deployed (see ``deployed_versions``) or being promoted.
    """
    project = access.get_project(session, project_name)
    model = get_model(session, project, name, for_update=True)
    ids = select(ModelVersion.id).where(ModelVersion.model_id == model.id)
    busy = deployed_versions(session, ids)
    if busy:
        numbers = sorted(session.scalars(select(ModelVersion.version).where(ModelVersion.id.in_(busy))))
        raise Conflict(
            f"model {name!r} cannot be deleted: version(s) {', '.join(map(str, numbers))} are deployed; undeploy them first",
            errors={"versions": [f"v{n} deployed" for n in numbers]},
        )
    promoting = promotion_under_way(session, ids)
    if promoting is not None:
        raise Conflict(
            f"model {name!r} cannot be deleted: version {promoting.version} is being promoted (promotion "
            f"{promoting.id}); finish or cancel it first",
            errors={"versions": [f"v{promoting.version} promotion under way"]},
        )
    count = session.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.model_id == model.id))
    record_change(
        session, identity, project, "model.delete", "model", model.id, {"name": name, "versions": count}, platform
    )
    remove_files_after_commit(session, platform, version_folders(session, ids))
    session.delete(model)
    session.flush()


def version_folders(session: Session, version_ids: Any) -> list[str]:
    """The artifact-store folders of these versions (a list or a select of ids): their files and reference profiles."""
    files = session.scalars(select(ModelVersion.artifact_uri).where(ModelVersion.id.in_(version_ids)))
    references = session.scalars(
        select(ReferenceProfile.artifact_prefix).where(ReferenceProfile.version_id.in_(version_ids))
    )
    return [*files, *references]


def remove_files_after_commit(session: Session, platform: Platform, folders: list[str]) -> None:
    """Delete ``folders`` from the artifact store once the transaction that dropped their rows commits.

    A folder that cannot be deleted is logged and the rest are still removed: the rows are gone
    either way, and a leftover folder is unreachable (a re-created model or version gets a new one)."""
    store = platform.artifact_store

    def remove() -> None:
        for folder in folders:
            try:
                store.delete(folder.rstrip("/"))
            except Exception:  # noqa: BLE001 - see the docstring
                log.exception("could not delete %r from the artifact store", folder)

    after_commit(session, remove)
