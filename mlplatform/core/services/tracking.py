"""Experiments: create, read, rename, describe, tag, archive, soft delete, restore and purge.

Every change here is audited in the caller's transaction. Runs (``tracking_runs``), logging
batches (``tracking_batch``), the hot paths' writes (``tracking_writes``), metric history
(``metric_history``) and search (``run_search``) live beside this module. Soft-deleted
experiments stay readable and restorable; an experiment's name stays taken until it is purged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Project
from mlplatform.core.db.tracking import (
    Experiment,
    ExperimentTag,
    Metric,
    Run,
)
from mlplatform.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from mlplatform.core.services import access, audit
from mlplatform.core.services.pagination import Page, paginate

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

EXPERIMENT_VIEWS = ("active", "archived", "deleted", "all")


# --- experiments ---------------------------------------------------------------------------


@dataclass
class ExperimentView:
    experiment: Experiment
    tags: dict[str, str] = field(default_factory=dict)


def _experiment_tags(session: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    tags: dict[int, dict[str, str]] = {i: {} for i in ids}
    if ids:
        for experiment_id, key, value in session.execute(
            select(ExperimentTag.experiment_id, ExperimentTag.key, ExperimentTag.value).where(
                ExperimentTag.experiment_id.in_(ids)
            )
        ):
            tags[experiment_id][key] = value
    return tags


def load_experiment(session: Session, project: Project, experiment_id: int) -> Experiment:
    experiment = session.get(Experiment, experiment_id)
    if experiment is None or experiment.project_id != project.id:
        raise NotFound(f"experiment {experiment_id} does not exist in project {project.name!r}")
    return experiment


def _check_name_free(session: Session, project: Project, name: str) -> None:
    taken = session.scalar(
        select(Experiment.lifecycle_stage).where(Experiment.project_id == project.id, Experiment.name == name)
    )
    if taken == "deleted":
        raise Conflict(
            f"experiment {name!r} exists in project {project.name!r} but is deleted: restore it, or purge it first"
        )
    if taken is not None:
        raise Conflict(f"experiment {name!r} already exists in project {project.name!r}")


def _set_experiment_tags(session: Session, experiment_id: int, tags: Mapping[str, str | None]) -> None:
    """Set tags; a ``None`` value removes the tag."""
    for key, value in tags.items():
        existing = session.get(ExperimentTag, (experiment_id, key))
        if value is None:
            if existing is not None:
                session.delete(existing)
        elif existing is None:
            session.add(ExperimentTag(experiment_id=experiment_id, key=key, value=value))
        else:
            existing.value = value


def audit_change(
    session: Session,
    identity: Identity,
    project: Project | str,
    action: str,
    kind: str,
    resource_id: Any,
    summary: dict[str, Any],
    platform: Platform | None,
) -> None:
    """Audit a change of ``project`` (the project or its name) in the caller's transaction."""
    audit.record(
        session,
        actor=identity.username,
        action=action,
        resource_type=kind,
        resource_id=resource_id,
        project=project if isinstance(project, str) else project.name,
        summary=summary,
        platform=platform,
    )


def create_experiment(
    session: Session,
    identity: Identity,
    project_name: str,
    name: str,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    *,
    platform: Platform | None = None,
) -> ExperimentView:
    project = access.get_project(session, project_name)
    _check_name_free(session, project, name)
    experiment = Experiment(
        project_id=project.id,
        name=name,
        description=description,
        created_by=identity.username,
        lifecycle_stage="active",
    )
    session.add(experiment)
    session.flush()
    _set_experiment_tags(session, experiment.id, tags or {})
    audit_change(
        session,
        identity,
        project,
        "experiment.create",
        "experiment",
        experiment.id,
        {"name": name, "tags": dict(tags or {})},
        platform,
    )
    return ExperimentView(experiment, dict(tags or {}))


def get_experiment(session: Session, project_name: str, experiment_id: int) -> ExperimentView:
    experiment = load_experiment(session, access.get_project(session, project_name), experiment_id)
    return ExperimentView(experiment, _experiment_tags(session, [experiment.id])[experiment.id])


def list_experiments(
    session: Session,
    project_name: str,
    *,
    name: str | None = None,
    tags: list[str] | None = None,
    view: str = "active",
    page_size: int = 100,
    page_token: str | None = None,
) -> Page[ExperimentView]:
    """Experiments of a project in id order. ``name`` is a case-insensitive substring; each
    ``tags`` item is ``key`` (has the tag) or ``key=value``; ``view`` is active (default),
    archived, deleted or all."""
    project = access.get_project(session, project_name)
    query = select(Experiment).where(Experiment.project_id == project.id)
    if view not in EXPERIMENT_VIEWS:
        raise InvalidInput(f"unknown view {view!r}", errors={"view": [f"must be one of {', '.join(EXPERIMENT_VIEWS)}"]})
    if view != "all":
        query = query.where(Experiment.lifecycle_stage == view)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(Experiment.name).like(f"%{escaped.lower()}%", escape="\\"))
    for item in tags or []:
        key, has_value, value = item.partition("=")
        condition = (ExperimentTag.experiment_id == Experiment.id) & (ExperimentTag.key == key)
        if has_value:
            condition &= ExperimentTag.value == value
        query = query.where(exists().where(condition))
    page = paginate(session, query, Experiment.id, page_size, page_token)
    tag_map = _experiment_tags(session, [e.id for e in page.items])
    return Page([ExperimentView(e, tag_map[e.id]) for e in page.items], page.next_page_token)


def update_experiment(
    session: Session,
    identity: Identity,
    project_name: str,
    experiment_id: int,
    changes: Mapping[str, Any],
    *,
    platform: Platform | None = None,
) -> ExperimentView:
    """Apply ``name``, ``description``, ``tags`` (merged; ``None`` removes a tag) and
    ``archived`` (true archives, false restores an archived experiment)."""
    project = access.get_project(session, project_name)
    experiment = load_experiment(session, project, experiment_id)
    if experiment.lifecycle_stage == "deleted":
        raise Conflict(f"experiment {experiment_id} is deleted: restore it before changing it")
    summary: dict[str, Any] = {}
    if "name" in changes and changes["name"] != experiment.name:
        _check_name_free(session, project, changes["name"])
        summary["name"] = {"from": experiment.name, "to": changes["name"]}
        experiment.name = changes["name"]
    if "description" in changes and changes["description"] != experiment.description:
        summary["description"] = {"from": experiment.description, "to": changes["description"]}
        experiment.description = changes["description"]
    if changes.get("tags"):
        _set_experiment_tags(session, experiment.id, changes["tags"])
        summary["tags"] = dict(changes["tags"])
    if "archived" in changes:
        stage = "archived" if changes["archived"] else "active"
        if stage != experiment.lifecycle_stage:
            summary["lifecycle_stage"] = {"from": experiment.lifecycle_stage, "to": stage}
            experiment.lifecycle_stage = stage
    if summary:
        experiment.updated_at = utcnow()
        action = "experiment.update"
        if set(summary) == {"lifecycle_stage"}:
            action = "experiment.archive" if experiment.lifecycle_stage == "archived" else "experiment.unarchive"
        audit_change(session, identity, project, action, "experiment", experiment.id, summary, platform)
    session.flush()
    return ExperimentView(experiment, _experiment_tags(session, [experiment.id])[experiment.id])


def delete_experiment(
    session: Session,
    identity: Identity,
    project_name: str,
    experiment_id: int,
    *,
    purge: bool = False,
    platform: Platform | None = None,
) -> None:
    """Soft-delete (idempotent), or with ``purge`` remove the experiment, its runs and their
    artifacts for good (project admins only). Artifacts are deleted before the rows, inside
    the transaction: a store failure rolls the purge back and the call can be retried."""
    project = access.get_project(session, project_name)
    if purge:
        if access.role_in(session, identity, project) != "admin":
            raise PermissionDenied(f"purging an experiment needs the admin role in project {project_name!r}")
        experiment = session.get(Experiment, experiment_id)
        if experiment is None or experiment.project_id != project.id:
            return  # already purged
        # Locking the runs waits for batches being logged to them (they hold a key-share lock)
        # and holds off new ones until the purge commits.
        runs = select(Run.artifact_prefix).where(Run.experiment_id == experiment.id).with_for_update()
        prefixes = list(session.scalars(runs))
        if platform is not None:
            for prefix in prefixes:
                platform.artifact_store.delete(prefix)
        # Points have no foreign key to cascade from their run: they go first, explicitly.
        session.execute(
            delete(Metric).where(Metric.run_id.in_(select(Run.id).where(Run.experiment_id == experiment.id)))
        )
        # Nested runs in other experiments keep their rows; their parent link goes (SET NULL).
        session.execute(delete(Run).where(Run.experiment_id == experiment.id))
        session.execute(delete(Experiment).where(Experiment.id == experiment.id))
        audit_change(
            session,
            identity,
            project,
            "experiment.purge",
            "experiment",
            experiment_id,
            {"name": experiment.name, "runs": len(prefixes)},
            platform,
        )
        return
    experiment = load_experiment(session, project, experiment_id)
    if experiment.lifecycle_stage == "deleted":
        return
    experiment.stage_before_delete = experiment.lifecycle_stage
    experiment.lifecycle_stage = "deleted"
    experiment.deleted_at = experiment.updated_at = utcnow()
    audit_change(
        session,
        identity,
        project,
        "experiment.delete",
        "experiment",
        experiment.id,
        {"name": experiment.name},
        platform,
    )


def restore_experiment(
    session: Session, identity: Identity, project_name: str, experiment_id: int, *, platform: Platform | None = None
) -> ExperimentView:
    """Bring a deleted experiment back to the stage it had (idempotent)."""
    project = access.get_project(session, project_name)
    experiment = load_experiment(session, project, experiment_id)
    if experiment.lifecycle_stage == "deleted":
        experiment.lifecycle_stage = experiment.stage_before_delete or "active"
        experiment.stage_before_delete = None
        experiment.deleted_at = None
        experiment.updated_at = utcnow()
        audit_change(
            session,
            identity,
            project,
            "experiment.restore",
            "experiment",
            experiment.id,
            {"name": experiment.name},
            platform,
        )
    session.flush()
    return ExperimentView(experiment, _experiment_tags(session, [experiment.id])[experiment.id])


def load_run(session: Session, project: Project, run_id: str) -> Run:
    """The run ``run_id`` of ``project``; ``NotFound`` if it is not there (or in another project)."""
    run = session.get(Run, run_id)
    if run is None or run.project_id != project.id:
        raise NotFound(f"run {run_id!r} does not exist in project {project.name!r}")
    return run
