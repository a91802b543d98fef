"""Promotion policy checks: what ``check_promotion`` implementations see, and running them.

Plugins get plain frozen values, never ORM rows or a session: ``CandidateVersion`` (the
version and its lineage metrics), the environment's config, and ``PromotionContext`` (the
request and a read-only snapshot of the platform's state: the version serving the target
now, the candidate's history in the previous environment, alerts, reference data). Every
implementation is called; an exception, or a return value that is not a list of
``PolicyResult``, is a failed check named after the plugin.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mlplatform.core.backends import PolicyResult
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment, DeploymentEvent, DeploymentVersion
from mlplatform.core.db.monitoring import Alert, AlertRule, ReferenceProfile
from mlplatform.core.db.registry import ModelVersion

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.promotions")


@dataclass(frozen=True)
class CandidateVersion:
    """A model version as policies see it; ``metrics`` are its run's latest metrics."""

    id: int
    project: str
    model: str
    version: int
    flavor: str | None
    tags: Mapping[str, str]
    run_id: str | None
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    created_by: str


@dataclass(frozen=True)
class PreviousEnvironment:
    """The candidate in the environment before the target (promotion goes left to right).

    ``serving``: it takes traffic there now; ``healthy_since``: when it last became healthy
    there; ``alerts``: that deployment's alerts firing now or resolved since then.
    """

    name: str
    serving: bool
    healthy_since: dt.datetime | None
    alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PromotionContext:
    project: str
    model: str
    environment: str
    requested_by: str
    strategy: str
    phase: str  # "request" | "pre_traffic"
    now: dt.datetime
    current: CandidateVersion | None  # the version with the most traffic in the target now
    previous: PreviousEnvironment | None  # None when the target is the first environment
    has_reference: bool
    firing_alerts: list[dict[str, Any]] = field(default_factory=list)  # on the target deployment


def candidate(version: ModelVersion, project: str, model: str) -> CandidateVersion:
    return CandidateVersion(
        id=version.id,
        project=project,
        model=model,
        version=version.version,
        flavor=version.flavor,
        tags=dict(version.tags or {}),
        run_id=version.run_id,
        metrics=dict(version.run_metrics or {}),
        params=dict(version.run_params or {}),
        created_by=version.created_by,
    )


def _deployment(session: Session, model_id: int, env: str) -> Deployment | None:
    return session.scalar(select(Deployment).where(Deployment.model_id == model_id, Deployment.environment == env))


def _alerts(session: Session, deployment_id: int, since: dt.datetime | None) -> list[dict[str, Any]]:
    query = (
        select(Alert, AlertRule.name)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .where(Alert.deployment_id == deployment_id)
    )
    if since is None:
        query = query.where(Alert.state == "firing")
    else:
        query = query.where(or_(Alert.state == "firing", Alert.resolved_at >= since))
    return [
        {
            "id": a.id,
            "rule": name,
            "state": a.state,
            "feature": a.feature,
            "value": a.value,
            "started_at": a.started_at.isoformat(),
            "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
        }
        for a, name in session.execute(query.order_by(Alert.id))
    ]


def build_context(
    session: Session,
    platform: Platform,
    *,
    project: str,
    model: str,
    model_id: int,
    version: ModelVersion,
    environment: str,
    requested_by: str,
    strategy: str,
    phase: str,
) -> PromotionContext:
    """Snapshot the state policies judge by, in ``session``."""
    names = [env["name"] for env in platform.environments]
    index = names.index(environment)
    current = None
    deployment = _deployment(session, model_id, environment)
    if deployment is not None:
        top = session.scalar(
            select(ModelVersion)
            .join(DeploymentVersion, DeploymentVersion.version_id == ModelVersion.id)
            .where(
                DeploymentVersion.deployment_id == deployment.id,
                DeploymentVersion.weight > 0,
                DeploymentVersion.status == "healthy",
            )
            .order_by(DeploymentVersion.weight.desc(), ModelVersion.version.desc())
            .limit(1)
        )
        current = candidate(top, project, model) if top is not None else None
    previous = None
    if index > 0:
        previous = _previous(session, model_id, names[index - 1], version.id)
    has_reference = (
        session.scalar(select(ReferenceProfile.id).where(ReferenceProfile.version_id == version.id)) is not None
    )
    firing = _alerts(session, deployment.id, None) if deployment is not None else []
    return PromotionContext(
        project=project,
        model=model,
        environment=environment,
        requested_by=requested_by,
        strategy=strategy,
        phase=phase,
        now=utcnow(),
        current=current,
        previous=previous,
        has_reference=has_reference,
        firing_alerts=firing,
    )


def _previous(session: Session, model_id: int, env: str, version_id: int) -> PreviousEnvironment:
    deployment = _deployment(session, model_id, env)
    if deployment is None:
        return PreviousEnvironment(env, False, None)
    row = session.get(DeploymentVersion, (deployment.id, version_id))
    serving = row is not None and row.status == "healthy" and row.weight > 0
    since = session.scalar(
        select(DeploymentEvent.occurred_at)
        .where(
            DeploymentEvent.deployment_id == deployment.id,
            DeploymentEvent.version_id == version_id,
            DeploymentEvent.kind == "healthy",
        )
        .order_by(DeploymentEvent.id.desc())
        .limit(1)
    )
    return PreviousEnvironment(env, serving, since if serving else None, _alerts(session, deployment.id, since))


def run_checks(
    platform: Platform, version: CandidateVersion, environment: Mapping[str, Any], context: PromotionContext
) -> list[dict[str, Any]]:
    """Call every ``check_promotion`` implementation; return every result as a dict.

    Each result: ``policy``, ``passed``, ``message``, ``details``, ``plugin``, ``phase``.
    """
    results: list[dict[str, Any]] = []
    for impl in reversed(platform.pm.hook.check_promotion.get_hookimpls()):
        arguments: dict[str, Any] = {"version": version, "environment": environment, "context": context}
        try:
            returned: Any = impl.function(*[arguments[name] for name in impl.argnames])
            batch: list[Any] = list(returned or [])
            if not all(isinstance(item, PolicyResult) for item in batch):
                raise TypeError("check_promotion must return a list of PolicyResult")
        except Exception as exc:  # noqa: BLE001 - a broken policy blocks the promotion, it does not crash it
            log.exception("plugin %r failed in check_promotion", impl.plugin_name)
            batch = [
                PolicyResult(
                    f"plugin:{impl.plugin_name}",
                    False,
                    f"plugin {impl.plugin_name!r} raised {type(exc).__name__}: {exc}",
                )
            ]
        for item in batch:
            results.append(
                {
                    "policy": item.policy,
                    "passed": bool(item.passed),
                    "message": item.message,
                    "details": dict(item.details),
                    "plugin": impl.plugin_name,
                    "phase": context.phase,
                }
            )
    return results


def failed(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if not r["passed"]]
