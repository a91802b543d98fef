"""Direct database helpers for registry tests: deployments the gateway would create, audit reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment, DeploymentEvent, DeploymentVersion
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from tests.api_client import Api
from tests.registry.conftest import P


def deploy(
    client: Api,
    model: str,
    version: int,
    *,
    environment: str = "staging",
    weight: int = 100,
    status: str = "healthy",
    event: str | None = "deployed",
) -> None:
    """Insert the rows a deployment of ``model`` v``version`` leaves (no target is called)."""
    with client.platform.db.write() as session:
        project = session.scalar(select(Project).where(Project.name == "p1"))
        registered = session.scalar(
            select(RegisteredModel).where(RegisteredModel.project_id == project.id, RegisteredModel.name == model)
        )
        row = session.scalar(
            select(ModelVersion).where(ModelVersion.model_id == registered.id, ModelVersion.version == version)
        )
        deployment = session.scalar(
            select(Deployment).where(Deployment.model_id == registered.id, Deployment.environment == environment)
        )
        if deployment is None:
            deployment = Deployment(
                project_id=project.id,
                model_id=registered.id,
                environment=environment,
                target="local",
                status="healthy",
                updated_by="admin",
            )
            session.add(deployment)
            session.flush()
        session.add(
            DeploymentVersion(
                deployment_id=deployment.id,
                version_id=row.id,
                weight=weight,
                status=status,
                target_ref="local:1",
                deployed_at=utcnow(),
            )
        )
        if event:
            session.add(
                DeploymentEvent(
                    deployment_id=deployment.id,
                    version_id=row.id,
                    kind=event,
                    message="ok",
                    details={"weight": weight},
                    actor="admin",
                )
            )


def audit_events(client: Api, **filters: Any) -> list[dict[str, Any]]:
    response = client.get(f"{P}/audit", query_string=filters)
    assert response.status_code == 200, response.json
    return response.json["items"]
