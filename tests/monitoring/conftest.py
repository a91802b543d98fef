"""Fixtures: an API with one project, a registered model, versions and a deployment.

The registry and deployment tables are filled directly (not through their routes) so these
tests only depend on monitoring's own code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from mlplatform.core.db.deployments import Deployment, DeploymentVersion
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.monitoring import reference_cache
from tests.api_client import Api

SIGNATURE = {
    "inputs": [
        {"name": "age", "type": "number", "nullable": True},
        {"name": "income", "type": "number", "nullable": True},
        {"name": "plan", "type": "string", "nullable": True},
    ],
    "outputs": [{"name": "prediction", "type": "string", "nullable": True}],
}
WINDOW = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)  # a 1h window start


@dataclass
class Monitored:
    api: Api
    deployment_id: int
    version_ids: dict[int, int]
    base: str = "/api/v1/projects/p1/models/churn"

    @property
    def events(self) -> str:
        return f"{self.base}/deployments/production/events"


def add_model(api: Api, signature: Any = SIGNATURE, versions: int = 1, output_type: str | None = None) -> Monitored:
    if api.get("/api/v1/projects/p1").status_code == 404:
        assert api.post("/api/v1/projects", json={"name": "p1"}).status_code == 201
    signature = dict(signature) if signature else None
    if signature and output_type:
        signature["outputs"] = [{"name": "prediction", "type": output_type, "nullable": True}]
    with api.platform.db.write() as session:
        project = session.query(Project).filter_by(name="p1").one()
        model = RegisteredModel(project_id=project.id, name="churn", created_by="admin")
        session.add(model)
        session.flush()
        ids = {}
        for number in range(1, versions + 1):
            version = ModelVersion(
                model_id=model.id,
                version=number,
                status="ready",
                signature=signature,
                artifact_uri=f"models/churn/{number}",
                created_by="admin",
            )
            session.add(version)
            session.flush()
            ids[number] = version.id
        deployment = Deployment(
            project_id=project.id,
            model_id=model.id,
            environment="production",
            target="local",
            status="healthy",
            updated_by="admin",
        )
        session.add(deployment)
        session.flush()
        session.add(
            DeploymentVersion(deployment_id=deployment.id, version_id=ids[versions], weight=100, status="healthy")
        )
        return Monitored(api, deployment.id, ids)


@pytest.fixture(autouse=True)
def _fresh_reference_cache() -> None:
    reference_cache.clear()


@pytest.fixture
def monitored(api: Api) -> Monitored:
    return add_model(api)


def reference_frame(rows: int = 2000, seed: int = 0) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "income": rng.normal(50_000, 8_000, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
            "prediction": rng.choice(["stay", "churn"], rows, p=[0.8, 0.2]),
        }
    )


def parquet_bytes(frame: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
