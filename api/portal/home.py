"""What a project's home page shows, gathered from the services in one read transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mlplatform.core.db.models import Project
from mlplatform.core.db.tracking import Experiment, Run


def summary(platform: Any, project: Project) -> dict[str, Any]:
    with platform.db.read() as session:
        runs = session.execute(
            select(Run, Experiment.name)
            .join(Experiment, Experiment.id == Run.experiment_id)
            .where(Run.project_id == project.id, Run.lifecycle_stage == "active")
            .order_by(Run.start_time.desc())
            .limit(10)
        ).all()
        experiments = list(
            session.scalars(
                select(Experiment).where(Experiment.project_id == project.id, Experiment.lifecycle_stage == "active").order_by(Experiment.name)
            )
        )
    return {"recent_runs": runs, "experiments": experiments}
