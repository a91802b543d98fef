"""A version's lineage: where it came from and everywhere it has been deployed.

The run part is frozen at registration (params, latest metric values, git commit,
experiment) so it survives later edits or deletion of the run; the run's current name and
status are added while the run still exists. Deployments come from ``deployment_versions``
(what serves it now) and ``deployment_events`` (its history, oldest first).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.db.deployments import Deployment, DeploymentEvent, DeploymentVersion
from mlplatform.core.db.tracking import Experiment, Run
from mlplatform.core.services import access
from mlplatform.core.services.registry import resolve_version


def lineage(session: Session, project_name: str, model_name: str, ref: str | int) -> dict[str, Any]:
    """The lineage document of one version (see the module docstring)."""
    model, version = resolve_version(session, access.get_project(session, project_name), model_name, ref)
    run_body: dict[str, Any] | None = None
    if version.run_id is not None or version.experiment_id is not None:
        run = session.get(Run, version.run_id) if version.run_id else None
        experiment = session.get(Experiment, version.experiment_id) if version.experiment_id else None
        run_body = {
            "id": version.run_id,
            "exists": run is not None,
            "name": run.name if run else None,
            "status": run.status if run else None,
            "user": run.user if run else None,
            "start_time": run.start_time if run else None,
            "end_time": run.end_time if run else None,
            "experiment_id": version.experiment_id,
            "experiment_name": experiment.name if experiment else None,
            "source_git_commit": version.source_git_commit,
            "params": version.run_params or {},
            "metrics": version.run_metrics or {},
        }
    current = session.execute(
        select(Deployment.environment, DeploymentVersion)
        .join(Deployment, Deployment.id == DeploymentVersion.deployment_id)
        .where(DeploymentVersion.version_id == version.id)
        .order_by(Deployment.environment)
    ).all()
    events = session.execute(
        select(Deployment.environment, DeploymentEvent)
        .join(Deployment, Deployment.id == DeploymentEvent.deployment_id)
        .where(DeploymentEvent.version_id == version.id)
        .order_by(DeploymentEvent.occurred_at, DeploymentEvent.id)
    ).all()
    return {
        "model": model.name,
        "version": version.version,
        "status": version.status,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "flavor": version.flavor,
        "artifact_uri": version.artifact_uri,
        "artifact_sha256": version.artifact_sha256,
        "run": run_body,
        "deployments": [
            {
                "environment": env,
                "weight": dv.weight,
                "status": dv.status,
                "target_ref": dv.target_ref,
                "deployed_at": dv.deployed_at,
            }
            for env, dv in current
        ],
        "deployment_events": [
            {
                "environment": env,
                "kind": e.kind,
                "message": e.message,
                "details": e.details,
                "actor": e.actor,
                "occurred_at": e.occurred_at,
            }
            for env, e in events
        ],
    }
