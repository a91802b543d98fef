"""Deployments: one per model and environment, serving versions by traffic weight.

A request (``request_deploy``, ``request_undeploy``) checks, records and enqueues; the work
runs as a job (``deployment_jobs``). Status: pending -> deploying -> healthy | failed ->
retired. Traffic (``deployment_versions``) moves only when a new version is healthy, so a
target that fails leaves the deployment ``failed`` with the target's error while the
versions that served before keep serving at their weights.

Every change bumps ``Deployment.revision`` (the ETag; ``If-Match`` is honoured), writes a
``deployment_events`` row (lineage reads them) and an audit event, and, once committed,
bumps this process's :func:`generation` so the gateway's routing cache reloads at once
(other processes reload within the gateway's TTL).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlplatform.core.backends import DeploymentSpec, Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment, DeploymentEvent, DeploymentVersion
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.db.session import after_commit
from mlplatform.core.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from mlplatform.core.services import audit, registry, targets
from mlplatform.core.services.access import get_project
from mlplatform.core.services.pagination import Page, paginate

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

DEPLOY_JOB = "deploy_version"
UNDEPLOY_JOB = "undeploy_deployment"
REQUEST_KINDS = ("deploy_requested", "undeploy_requested")  # a later one supersedes an earlier job


# --- the change signal for this process's gateway -------------------------------------------

_generation = itertools.count(1)
_current = [0]


def generation() -> int:
    """A number that changes whenever this process commits a deployment change."""
    return _current[0]


def _changed(session: Session) -> None:
    def bump() -> None:
        _current[0] = next(_generation)

    after_commit(session, bump)


# --- views ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficEntry:
    version: int
    version_id: int
    weight: int
    status: str
    status_message: str
    target_ref: str | None
    deployed_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "version_id": self.version_id,
            "weight": self.weight,
            "status": self.status,
            "status_message": self.status_message,
            "target_ref": self.target_ref,
            "deployed_at": _iso(self.deployed_at),
        }


@dataclass(frozen=True)
class DeploymentView:
    """A deployment with its project and model names and what it serves, by weight."""

    deployment: Deployment
    project: str
    model: str
    traffic: list[TrafficEntry] = field(default_factory=list)
    events: list[DeploymentEvent] | None = None

    @property
    def etag(self) -> str:
        return f'"{self.deployment.revision}"'

    def to_dict(self) -> dict[str, Any]:
        d = self.deployment
        body: dict[str, Any] = {
            "id": d.id,
            "project": self.project,
            "model": self.model,
            "environment": d.environment,
            "target": d.target,
            "status": d.status,
            "status_message": d.status_message,
            "revision": d.revision,
            "traffic": [entry.to_dict() for entry in self.traffic],
            "created_at": _iso(d.created_at),
            "updated_at": _iso(d.updated_at),
            "updated_by": d.updated_by,
        }
        if self.events is not None:
            body["events"] = [event_dict(e) for e in self.events]
        return body


def event_dict(event: DeploymentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "version_id": event.version_id,
        "message": event.message,
        "details": event.details,
        "actor": event.actor,
        "occurred_at": _iso(event.occurred_at),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _traffic(session: Session, deployment_ids: list[int]) -> dict[int, list[TrafficEntry]]:
    by_deployment: dict[int, list[TrafficEntry]] = {i: [] for i in deployment_ids}
    if not deployment_ids:
        return by_deployment
    rows = session.execute(
        select(DeploymentVersion, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == DeploymentVersion.version_id)
        .where(DeploymentVersion.deployment_id.in_(deployment_ids))
        .order_by(DeploymentVersion.deployment_id, ModelVersion.version)
    )
    for row, number in rows:
        by_deployment[row.deployment_id].append(
            TrafficEntry(
                number, row.version_id, row.weight, row.status, row.status_message, row.target_ref, row.deployed_at
            )
        )
    return by_deployment


def _view(session: Session, deployment: Deployment, project: str, model: str, *, events: int = 0) -> DeploymentView:
    history = None
    if events:
        history = list(
            session.scalars(
                select(DeploymentEvent)
                .where(DeploymentEvent.deployment_id == deployment.id)
                .order_by(DeploymentEvent.id.desc())
                .limit(events)
            )
        )
    return DeploymentView(deployment, project, model, _traffic(session, [deployment.id])[deployment.id], history)


def _model(session: Session, project: Project, model_name: str) -> RegisteredModel:
    model = session.scalar(
        select(RegisteredModel).where(RegisteredModel.project_id == project.id, RegisteredModel.name == model_name)
    )
    if model is None:
        raise NotFound(f"model {model_name!r} does not exist in project {project.name!r}")
    return model


def find_deployment(
    session: Session, project: str, model_name: str, env: str, *, lock: bool = False
) -> Deployment | None:
    """The deployment of ``model_name`` in ``env`` or None; ``NotFound`` for a missing project or model.

    ``lock`` takes a row lock (PostgreSQL) so concurrent changes to one deployment queue up.
    """
    model = _model(session, get_project(session, project), model_name)
    query = select(Deployment).where(Deployment.model_id == model.id, Deployment.environment == env)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def get_deployment(session: Session, project: str, model_name: str, env: str, *, events: int = 20) -> DeploymentView:
    """One deployment with its traffic and latest ``events``. ``NotFound`` if there is none."""
    deployment = find_deployment(session, project, model_name, env)
    if deployment is None:
        raise NotFound(f"model {model_name!r} has never been deployed to {env!r}")
    return _view(session, deployment, project, model_name, events=events)


def list_deployments(session: Session, project: str) -> list[DeploymentView]:
    """Every deployment of the project (retired ones too), by model name then environment order."""
    project_row = get_project(session, project)
    rows = list(
        session.execute(
            select(Deployment, RegisteredModel.name)
            .join(RegisteredModel, RegisteredModel.id == Deployment.model_id)
            .where(Deployment.project_id == project_row.id)
            .order_by(RegisteredModel.name, Deployment.id)
        )
    )
    traffic = _traffic(session, [d.id for d, _ in rows])
    return [DeploymentView(d, project, name, traffic[d.id]) for d, name in rows]


def page_deployments(
    session: Session,
    project: str,
    *,
    model: str | None = None,
    environment: str | None = None,
    status: str | None = None,
    page_size: int = 100,
    page_token: str | None = None,
) -> Page[DeploymentView]:
    """The project's deployments matching every given filter, oldest first, a page at a time."""
    project_row = get_project(session, project)
    query = (
        select(Deployment)
        .join(RegisteredModel, RegisteredModel.id == Deployment.model_id)
        .where(Deployment.project_id == project_row.id)
    )
    if model is not None:
        query = query.where(RegisteredModel.name == model)
    if environment is not None:
        query = query.where(Deployment.environment == environment)
    if status is not None:
        query = query.where(Deployment.status == status)
    page = paginate(session, query, Deployment.id, page_size, page_token)
    model_ids = {d.model_id for d in page.items}
    names = {
        model_id: name
        for model_id, name in session.execute(
            select(RegisteredModel.id, RegisteredModel.name).where(RegisteredModel.id.in_(model_ids))
        )
    }
    traffic = _traffic(session, [d.id for d in page.items])
    views = [DeploymentView(d, project, names[d.model_id], traffic[d.id]) for d in page.items]
    return Page(views, page.next_page_token)


# --- optimistic concurrency -----------------------------------------------------------------


def check_if_match(deployment: Deployment | None, if_match: str | None) -> None:
    """Raise ``PreconditionFailed`` unless ``If-Match`` (if sent) names the current revision."""
    if if_match is None:
        return
    tags = [tag.strip() for tag in if_match.split(",") if tag.strip()]
    if "*" in tags:
        if deployment is None:
            raise PreconditionFailed("If-Match: * but this deployment does not exist")
        return
    values = {tag.removeprefix("W/").strip('"') for tag in tags}
    if deployment is None or str(deployment.revision) not in values:
        current = f'"{deployment.revision}"' if deployment else "none (it does not exist)"
        raise PreconditionFailed(
            f"the deployment changed: its ETag is {current}, If-Match sent {if_match}; read it again"
        )


# --- changes --------------------------------------------------------------------------------


def record_event(
    session: Session,
    deployment: Deployment,
    kind: str,
    *,
    actor: str,
    version_id: int | None = None,
    message: str = "",
    details: Mapping[str, Any] | None = None,
) -> DeploymentEvent:
    """Append a deployment event and bump the revision (the ETag) of ``deployment``."""
    deployment.revision = (deployment.revision or 0) + 1
    deployment.updated_at = utcnow()
    deployment.updated_by = actor
    event = DeploymentEvent(
        deployment_id=deployment.id,
        version_id=version_id,
        kind=kind,
        message=message,
        details=dict(details or {}),
        actor=actor,
    )
    session.add(event)
    session.flush()
    _changed(session)
    return event


def check_deployable(version: ModelVersion, model_name: str) -> None:
    """Only a ready, unarchived version with a verified artifact can be deployed (``Conflict``)."""
    label = f"version {version.version} of model {model_name!r}"
    if version.archived:
        raise Conflict(f"{label} is archived; unarchive it to deploy it")
    if version.status != "ready":
        detail = f": {version.status_message}" if version.status_message else ""
        raise Conflict(f"{label} is {version.status}{detail}; only ready versions can be deployed")
    if not version.artifact_sha256:
        raise Conflict(f"{label} has no recorded artifact digest; it cannot be loaded safely")


def new_deployment(
    session: Session, project_id: int, model_id: int, env_name: str, target: str, actor: str, busy: str
) -> Deployment:
    """Insert an empty pending deployment; ``Conflict(busy)`` if a concurrent request inserted it first."""
    deployment = Deployment(
        project_id=project_id,
        model_id=model_id,
        environment=env_name,
        target=target,
        status="pending",
        status_message="",
        revision=0,
        updated_by=actor,
    )
    session.add(deployment)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(busy) from None
    return deployment


def stage_version(session: Session, deployment_id: int, version_id: int, row: DeploymentVersion | None) -> None:
    """Make ``version_id`` a pending member of the deployment at weight 0 (``row``: its current row,
    if any); a version already healthy there stays as it is."""
    if row is None:
        session.add(
            DeploymentVersion(
                deployment_id=deployment_id, version_id=version_id, weight=0, status="pending", status_message=""
            )
        )
    elif row.status != "healthy":
        row.status, row.status_message = "pending", ""


def request_deploy(
    session: Session,
    identity: Identity,
    project: str,
    model_name: str,
    env_name: str,
    ref: int | str,
    *,
    weight: int = 100,
    if_match: str | None = None,
    via_promotion: bool = False,
    platform: Platform,
) -> DeploymentView:
    """Deploy version (or alias) ``ref`` to ``env_name``; the job ``deploy_version`` does the work.

    With ``weight`` 100 the version replaces what serves once it is healthy; with less it
    joins at that weight and the versions serving share the rest in proportion. Raises
    ``NotFound`` (environment, model, version), ``Conflict`` (promotion-only environment
    unless ``via_promotion``, a version that is not ready or is archived, a changed target),
    ``Unprocessable`` (a weight below 100 with nothing else serving), ``PreconditionFailed``.
    """
    env, _target = targets.target_for_environment(platform, env_name)
    if env["promotion_only"] and not via_promotion:
        raise Conflict(
            f"environment {env_name!r} only takes promotions: "
            f"POST /api/v1/projects/{project}/models/{model_name}/promotions"
        )
    if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 100:
        raise Unprocessable("weight must be an integer from 1 to 100", errors={"weight": ["must be 1-100"]})
    model, version = registry.resolve_version(session, get_project(session, project), model_name, ref)
    check_deployable(version, model_name)
    deployment = find_deployment(session, project, model_name, env_name, lock=True)
    check_if_match(deployment, if_match)
    rows = _rows(session, deployment.id) if deployment else []
    if deployment is not None and deployment.target != env["target"] and any(rows):
        raise Conflict(
            f"environment {env_name!r} now uses target {env['target']!r} but this deployment runs on "
            f"{deployment.target!r}; undeploy it first"
        )
    if weight < 100 and not any(r.weight > 0 and r.status == "healthy" and r.version_id != version.id for r in rows):
        raise Unprocessable(
            f"weight {weight} needs another version serving in {env_name!r}; deploy with weight 100",
            errors={"weight": ["nothing else serves"]},
        )
    if deployment is None:
        deployment = new_deployment(
            session,
            model.project_id,
            model.id,
            env_name,
            env["target"],
            identity.username,
            f"another request is deploying {model_name!r} to {env_name!r} right now; retry",
        )
    deployment.target = env["target"]
    deployment.status = "pending"
    deployment.status_message = ""
    stage_version(session, deployment.id, version.id, next((r for r in rows if r.version_id == version.id), None))
    details = {"version": version.version, "weight": weight, "ref": str(ref), "via_promotion": via_promotion}
    event = record_event(
        session, deployment, "deploy_requested", actor=identity.username, version_id=version.id, details=details
    )
    platform.jobs.enqueue(
        session,
        DEPLOY_JOB,
        {"deployment_id": deployment.id, "version_id": version.id, "weight": weight, "request_id": event.id},
        project=project,
        max_attempts=3,
        timeout=900,
    )
    audit.record(
        session,
        actor=identity.username,
        action="deployment.deploy",
        resource_type="deployment",
        resource_id=f"{model_name}/{env_name}",
        project=project,
        summary=details,
        platform=platform,
    )
    return _view(session, deployment, project, model_name)


def request_undeploy(
    session: Session,
    identity: Identity,
    project: str,
    model_name: str,
    env_name: str,
    *,
    if_match: str | None = None,
    platform: Platform,
) -> DeploymentView:
    """Retire the deployment (job ``undeploy_deployment``); ``pending`` until the job ran.
    Idempotent for a retired one. Versions keep serving until the job takes them out.

    ``NotFound`` if the model was never deployed there, ``PreconditionFailed`` on If-Match.
    """
    targets.environment(platform, env_name)
    deployment = find_deployment(session, project, model_name, env_name, lock=True)
    if deployment is None:
        raise NotFound(f"model {model_name!r} is not deployed to {env_name!r}")
    check_if_match(deployment, if_match)
    if deployment.status == "retired" and not _rows(session, deployment.id):
        return _view(session, deployment, project, model_name)
    deployment.status, deployment.status_message = "pending", "undeploy requested"
    event = record_event(session, deployment, "undeploy_requested", actor=identity.username)
    platform.jobs.enqueue(
        session, UNDEPLOY_JOB, {"deployment_id": deployment.id, "request_id": event.id}, project=project, timeout=900
    )
    audit.record(
        session,
        actor=identity.username,
        action="deployment.undeploy",
        resource_type="deployment",
        resource_id=f"{model_name}/{env_name}",
        project=project,
        summary={},
        platform=platform,
    )
    return _view(session, deployment, project, model_name)


def set_traffic(
    session: Session,
    deployment: Deployment,
    weights: Mapping[int, int],
    *,
    actor: str = "system",
    message: str = "",
    platform: Platform | None = None,
) -> DeploymentView:
    """Route ``{version_id: weight}`` (weights sum to 100); versions left out get weight 0.

    Every named version must be deployed here; one given weight > 0 must be healthy.
    Versions at 0 stay deployed (an instant way back); ``request_deploy`` with weight 100
    is what retires them. Raises ``Unprocessable`` naming the bad version or weight,
    ``Conflict`` for a version that is not healthy.
    """
    clean: dict[int, int] = {}
    for version_id, weight in weights.items():
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise Unprocessable(
                f"weight of version id {version_id} must be an integer 0-100", errors={str(version_id): ["0-100"]}
            )
        clean[int(version_id)] = weight
    if sum(clean.values()) != 100:
        raise Unprocessable(
            f"traffic weights must sum to 100, not {sum(clean.values())}", errors={"weights": ["sum to 100"]}
        )
    rows = {r.version_id: r for r in _rows(session, deployment.id)}
    for version_id, weight in clean.items():
        row = rows.get(version_id)
        if row is None:
            raise Unprocessable(
                f"version id {version_id} is not deployed in {deployment.environment!r}",
                errors={str(version_id): ["not deployed"]},
            )
        if weight > 0 and row.status != "healthy":
            raise Conflict(
                f"version id {version_id} is {row.status} in {deployment.environment!r}; it cannot take traffic"
            )
    for version_id, row in rows.items():
        row.weight = clean.get(version_id, 0)
    numbers = dict(
        session.execute(select(ModelVersion.id, ModelVersion.version).where(ModelVersion.id.in_(list(rows)))).all()
    )
    details = {"weights": {str(numbers[v]): w for v, w in sorted(clean.items())}}
    record_event(session, deployment, "traffic", actor=actor, message=message, details=details)
    project = session.get(Project, deployment.project_id)
    model = session.get(RegisteredModel, deployment.model_id)
    assert project is not None and model is not None
    audit.record(
        session,
        actor=actor,
        action="deployment.traffic",
        resource_type="deployment",
        resource_id=f"{model.name}/{deployment.environment}",
        project=project.name,
        summary=details,
        platform=platform,
    )
    return _view(session, deployment, project.name, model.name)


def _rows(session: Session, deployment_id: int) -> list[DeploymentVersion]:
    return list(session.scalars(select(DeploymentVersion).where(DeploymentVersion.deployment_id == deployment_id)))


def spec_for(project: str, model: str, version: ModelVersion) -> DeploymentSpec:
    """What a target needs to run ``version``."""
    return DeploymentSpec(
        project=project,
        model=model,
        version=version.version,
        flavor=version.flavor or "",
        artifact_uri=version.artifact_uri,
        artifact_sha256=version.artifact_sha256 or "",
        signature=version.signature,
    )


def split_weights(current: Mapping[int, int], new_id: int, weight: int) -> dict[int, int]:
    """``new_id`` at ``weight``; the others share ``100 - weight`` in proportion to ``current``.

    Largest remainder rounding, so the result always sums to 100. A version whose share
    rounds to 0 drops out.
    """
    others = {k: v for k, v in current.items() if k != new_id and v > 0}
    rest = 100 - weight
    total = sum(others.values())
    if weight >= 100 or not others or total == 0:
        return {new_id: 100}
    exact = {k: v * rest / total for k, v in others.items()}
    shares = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (exact[k] - shares[k], -k), reverse=True)[: rest - sum(shares.values())]:
        shares[k] += 1
    return {new_id: weight, **{k: v for k, v in shares.items() if v > 0}}
