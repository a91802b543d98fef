"""Registry test helpers: a project with members by role, runs holding a trained model.

``api`` (tests/api_client.py) runs each test on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.api_client import Api

P = "/api/v1/projects/p1"
M = f"{P}/models"
FEATURES = ["age", "income", "city"]
EXAMPLE = [{"age": 31, "income": 52000.5, "city": "Lyon"}, {"age": 45, "income": 61000.0, "city": "Paris"}]


@pytest.fixture
def reg(api: Api) -> Api:
    """An app with project ``p1`` and members dev (developer), viewer (viewer), maint (maintainer)."""
    assert api.post("/api/v1/projects", json={"name": "p1"}).status_code == 201
    api.user("dev", role="developer", project="p1")
    api.user("viewer", role="viewer", project="p1")
    api.user("maint", role="maintainer", project="p1")
    return api


@pytest.fixture(scope="session")
def sklearn_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a joblib sklearn pipeline trained on EXAMPLE-shaped data, and its descriptor."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        [{"age": 20 + i, "income": 30000.0 + 1000 * i, "city": ["Lyon", "Paris"][i % 2]} for i in range(40)]
    )
    labels = [int(i > 20) for i in range(40)]
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
                ),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, labels)
    folder = tmp_path_factory.mktemp("sk-model")
    joblib.dump(pipeline, folder / "model.joblib")
    (folder / "mlplatform-model.json").write_text(json.dumps({"flavor": "sklearn", "model_file": "model.joblib"}))
    return folder


def create_model(client: Api, name: str = "churn", token: str = "admin", **body: Any) -> dict[str, Any]:
    response = client.post(M, json={"name": name, **body}, token=token)
    assert response.status_code == 201, response.json
    return response.json


def make_run(
    client: Api,
    params: dict[str, str] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    git: str | None = "abc123",
) -> dict[str, Any]:
    """A finished-looking run in experiment ``exp`` with params and metrics."""
    experiments = client.get(f"{P}/experiments", query_string={"name": "exp"}).json["items"]
    if experiments:
        experiment_id = experiments[0]["id"]
    else:
        experiment_id = client.post(f"{P}/experiments", json={"name": "exp"}).json["id"]
    response = client.post(
        f"{P}/experiments/{experiment_id}/runs", json={"name": "train", "source": {"git_commit": git}}
    )
    assert response.status_code == 201, response.json
    run = response.json
    batch = {"params": params or {"C": "1.0"}, "metrics": metrics or [{"key": "auc", "value": 0.91, "step": 3}]}
    assert client.post(f"{P}/runs/{run['id']}/log", json=batch).status_code in (200, 201)
    return run


def upload_folder(client: Api, run_id: str, folder: Path, artifact_path: str = "model") -> None:
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder).as_posix()
        response = client.put(f"{P}/runs/{run_id}/artifacts/{artifact_path}/{rel}", data=file.read_bytes())
        assert response.status_code == 201, response.json


def register(client: Api, model: str, run_id: str, token: str = "admin", **body: Any) -> Any:
    return client.post(f"{M}/{model}/versions", json={"run_id": run_id, "artifact_path": "model", **body}, token=token)


def registered_ready(client: Api, folder: Path, model: str = "churn", **body: Any) -> dict[str, Any]:
    """Register ``folder`` through a new run and wait for the validation job; returns the version body."""
    run = make_run(client)
    upload_folder(client, run["id"], folder)
    response = register(client, model, run["id"], **body)
    assert response.status_code == 201, response.json
    assert client.platform.jobs.wait_idle(10)
    return client.get(f"{M}/{model}/versions/{response.json['version']}").json
