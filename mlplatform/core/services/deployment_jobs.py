"""The deployment jobs: ``deploy_version`` and ``undeploy_deployment`` (``fn(platform, **args)``).

Each owns short transactions around the target's slow calls. Database state changes first,
target clean-up second: versions leave the routing table before their target reference is
undeployed, so a gateway never routes to a reference that is gone. A job whose request was
superseded by a later one (a newer deploy or undeploy of the same deployment) does not move
traffic or status; the later job does.

A target's failure is the deployment's outcome (``failed`` with the target's message), not a
job failure: the job succeeds and is not retried. Database errors raise and are retried; the
handlers are safe to run twice.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.backends import DeploymentTarget
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment, DeploymentEvent, DeploymentVersion
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.errors import MLPlatformError
from mlplatform.core.services import targets
from mlplatform.core.services.deployments import REQUEST_KINDS, record_event, spec_for, split_weights

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.deployments")

ACTOR = "system:deployer"
SETTLE_TIMEOUT_S = 600.0
POLL_S = 0.5


def deploy_version(
    platform: Platform, deployment_id: int, version_id: int, weight: int = 100, request_id: int = 0
) -> None:
    """Deploy one version on the deployment's target; on health, shift traffic to it."""
    with platform.db.write() as session:
        deployment = _locked(session, deployment_id)
        row = session.get(DeploymentVersion, (deployment_id, version_id)) if deployment else None
        if deployment is None or row is None or _superseded(session, deployment_id, request_id):
            return
        version = session.get(ModelVersion, version_id)
        names = _names(session, deployment)
        assert version is not None
        spec = spec_for(names[0], names[1], version)
        target_name = deployment.target
        if row.status != "healthy":
            row.status = "deploying"
        deployment.status = "deploying"
        record_event(
            session, deployment, "deploying", actor=ACTOR, version_id=version_id, details={"version": version.version}
        )

    ref, error = _deploy_and_settle(platform, target_name, spec)

    retired_refs: list[str] = []
    with platform.db.write() as session:
        deployment = _locked(session, deployment_id)
        row = session.get(DeploymentVersion, (deployment_id, version_id)) if deployment else None
        superseded = _superseded(session, deployment_id, request_id)
        if deployment is None or row is None:
            retired_refs = [ref] if ref and not error else []
        elif error is not None:
            row.status, row.status_message = "failed", error
            if not superseded:
                deployment.status, deployment.status_message = "failed", error
            record_event(
                session,
                deployment,
                "failed",
                actor=ACTOR,
                version_id=version_id,
                message=error,
                details={"version": spec.version, "superseded": superseded},
            )
        else:
            row.status, row.status_message, row.target_ref, row.deployed_at = "healthy", "", ref, utcnow()
            record_event(
                session,
                deployment,
                "healthy",
                actor=ACTOR,
                version_id=version_id,
                details={"version": spec.version, "target_ref": ref},
            )
            if not superseded:
                retired_refs = _shift_traffic(session, deployment, version_id, weight)
                deployment.status, deployment.status_message = "healthy", ""
    _undeploy(platform, target_name, retired_refs)


def undeploy_deployment(platform: Platform, deployment_id: int, request_id: int = 0) -> None:
    """Take every version of the deployment out of traffic, mark it retired, then undeploy them."""
    with platform.db.write() as session:
        deployment = _locked(session, deployment_id)
        if deployment is None or _superseded(session, deployment_id, request_id):
            return
        rows = list(session.scalars(select(DeploymentVersion).where(DeploymentVersion.deployment_id == deployment_id)))
        refs = [r.target_ref for r in rows if r.target_ref]
        for row in rows:
            session.delete(row)
        target_name = deployment.target
        deployment.status, deployment.status_message = "retired", ""
        record_event(session, deployment, "retired", actor=ACTOR, details={"target_refs": refs})
    _undeploy(platform, target_name, refs)


# --- pieces ---------------------------------------------------------------------------------


def _locked(session: Session, deployment_id: int) -> Deployment | None:
    return session.scalar(select(Deployment).where(Deployment.id == deployment_id).with_for_update())


def _names(session: Session, deployment: Deployment) -> tuple[str, str]:
    project = session.get(Project, deployment.project_id)
    model = session.get(RegisteredModel, deployment.model_id)
    assert project is not None and model is not None
    return project.name, model.name


def _superseded(session: Session, deployment_id: int, request_id: int) -> bool:
    """Whether a deploy or undeploy was requested after event ``request_id``."""
    later = session.scalar(
        select(DeploymentEvent.id)
        .where(
            DeploymentEvent.deployment_id == deployment_id,
            DeploymentEvent.kind.in_(REQUEST_KINDS),
            DeploymentEvent.id > request_id,
        )
        .limit(1)
    )
    return later is not None


def _deploy_and_settle(platform: Platform, target_name: str, spec: object) -> tuple[str | None, str | None]:
    """``(reference, None)`` once the target says healthy, or ``(reference or None, error)``."""
    ref: str | None = None
    try:
        target = targets.target(platform, target_name)
        ref = target.deploy(spec)  # type: ignore[arg-type]
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            status = target.status(ref)
            if status.state == "healthy":
                return ref, None
            if status.state in ("failed", "absent"):
                return ref, status.message or f"the target reports {status.state}"
            if time.monotonic() > deadline:
                return ref, f"not healthy after {SETTLE_TIMEOUT_S:.0f}s (target state: {status.state})"
            time.sleep(POLL_S)
    except MLPlatformError as exc:
        return ref, exc.message
    except Exception as exc:  # noqa: BLE001 - a plugin's own error is the deployment's failure
        log.exception("deployment target %r failed", target_name)
        return ref, f"{type(exc).__name__}: {exc}"


def _shift_traffic(session: Session, deployment: Deployment, version_id: int, weight: int) -> list[str]:
    """Give ``version_id`` its weight; drop versions that fall to 0. Returns their target refs."""
    rows = list(session.scalars(select(DeploymentVersion).where(DeploymentVersion.deployment_id == deployment.id)))
    serving = {r.version_id: r.weight for r in rows if r.status == "healthy"}
    weights = split_weights(serving, version_id, weight)
    retired: list[str] = []
    numbers = dict(
        session.execute(
            select(ModelVersion.id, ModelVersion.version).where(ModelVersion.id.in_([r.version_id for r in rows]))
        ).all()
    )
    for row in rows:
        row.weight = weights.get(row.version_id, 0)
        if row.weight == 0 and (weight >= 100 or row.status != "healthy"):
            # A full replacement retires everything else; a canary keeps old versions at their share.
            if row.target_ref:
                retired.append(row.target_ref)
            session.delete(row)
    record_event(
        session,
        deployment,
        "traffic",
        actor=ACTOR,
        version_id=version_id,
        details={"weights": {str(numbers[v]): w for v, w in sorted(weights.items())}},
    )
    return retired


def _undeploy(platform: Platform, target_name: str, refs: list[str]) -> None:
    if not refs:
        return
    try:
        target: DeploymentTarget = targets.target(platform, target_name)
    except MLPlatformError:
        log.warning("cannot undeploy %s: target %r unavailable", ", ".join(refs), target_name)
        return
    for ref in refs:
        try:
            target.undeploy(ref)
        except Exception:  # noqa: BLE001 - out of traffic already; a leftover is logged, not fatal
            log.exception("undeploying %s on target %r failed", ref, target_name)
