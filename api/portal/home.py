"""What a project's home page shows, gathered from the services in one read transaction:
recent runs, experiments, models, what serves per environment, promotions waiting for
approval and alerts firing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mlplatform.core.db.models import Project
from mlplatform.core.db.tracking import Experiment, Run
from mlplatform.core.services import alerting
from mlplatform.core.services import deployments as deployment_service
from mlplatform.core.services import promotions as promotion_service
from mlplatform.core.services import registry as registry_service

RECENT_RUNS = 10
MODELS_SHOWN = 10


def summary(platform: Any, project: Project) -> dict[str, Any]:
    with platform.db.write() as session:  # pending promotions past their expiry are expired first, as the API does
        promotion_service.expire_due(session, platform, project=project.name)
    with platform.db.read() as session:
        runs = session.execute(
            select(Run, Experiment.name)
            .join(Experiment, Experiment.id == Run.experiment_id)
            .where(Run.project_id == project.id, Run.lifecycle_stage == "active")
            .order_by(Run.start_time.desc())
            .limit(RECENT_RUNS)
        ).all()
        experiments = list(
            session.scalars(
                select(Experiment)
                .where(Experiment.project_id == project.id, Experiment.lifecycle_stage == "active")
                .order_by(Experiment.name)
            )
        )
        models = registry_service.list_models(session, project.name, page_size=200).items
        deployments = [
            d for d in deployment_service.list_deployments(session, project.name) if d.deployment.status != "retired"
        ]
        waiting = [
            p
            for m in models
            for p in promotion_service.list_promotions(
                session, project.name, m.model.name, state_filter="pending_approval"
            ).items
        ]
        firing = alerting.list_alerts(session, project.name, state="firing").items
    environments = [env["name"] for env in platform.environments]
    environments += sorted({d.deployment.environment for d in deployments} - set(environments))
    return {
        "recent_runs": runs,
        "experiments": experiments,
        "models": sorted(models, key=lambda m: m.model.updated_at, reverse=True)[:MODELS_SHOWN],
        "model_count": len(models),
        "by_environment": [(env, [d for d in deployments if d.deployment.environment == env]) for env in environments],
        "waiting": waiting,
        "firing": list(reversed(firing)),
    }
