"""Alerting fixtures: an API with a webhook channel pointed at a real local HTTP receiver, and
deployments and monitor points written straight to the database (their APIs are built
elsewhere), evaluated the way the monitoring job does: in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.models import Project
from mlplatform.core.db.monitoring import MonitorPoint
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.platform import Platform
from mlplatform.core.services import alerting
from tests.api_client import Api
from tests.conftest import deep_merge

PROJECT = "acme"
MODEL = "churn"
SECRET = "s3cr3t"
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
FIVE_MINUTES = dt.timedelta(minutes=5)
ENVIRONMENTS = [{"name": "staging", "target": "local"}, {"name": "production", "target": "local"}]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    server: ThreadingHTTPServer
    status: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _headers, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            holder["r"].requests.append((dict(self.headers.items()), body))
            self.send_response(holder["r"].status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder["r"]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def aapi(make_api: Callable[..., Api], db_kind: str, receiver: Receiver) -> Iterator[Api]:
    """An API on ``db_kind`` with project ``acme``, two environments and channels ``hook``
    (signed webhook to ``receiver``) and ``log``."""
    channels = [
        {
            "name": "hook",
            "backend": "webhook",
            "options": {"url": receiver.url, "secret": SECRET, "max_attempts": 2, "backoff": 0},
        },
        {"name": "log", "backend": "log"},
    ]
    api = make_api(deep_merge({"environments": ENVIRONMENTS}, {"alert_channels": channels}), db=db_kind)
    assert api.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
    return api


def add_deployment(
    platform: Platform, *, model: str = MODEL, environment: str = "production", versions: int = 1
) -> tuple[int, list[int]]:
    """A registered model with ``versions`` versions, deployed to ``environment``: (deployment id, version ids)."""
    with platform.db.write() as session:
        project = session.scalar(select(Project).where(Project.name == PROJECT))
        assert project is not None
        registered = session.scalar(
            select(RegisteredModel).where(RegisteredModel.project_id == project.id, RegisteredModel.name == model)
        )
        if registered is None:
            registered = RegisteredModel(project_id=project.id, name=model, created_by="test")
            session.add(registered)
            session.flush()
        version_ids = []
        for number in range(1, versions + 1):
            version = session.scalar(
                select(ModelVersion).where(ModelVersion.model_id == registered.id, ModelVersion.version == number)
            )
            if version is None:
                version = ModelVersion(
                    model_id=registered.id,
                    version=number,
                    status="ready",
                    artifact_uri=f"models/{model}/{number}/",
                    created_by="test",
                )
                session.add(version)
                session.flush()
            version_ids.append(version.id)
        deployment = Deployment(
            project_id=project.id,
            model_id=registered.id,
            environment=environment,
            target="local",
            status="healthy",
            updated_by="test",
        )
        session.add(deployment)
        session.flush()
        return deployment.id, version_ids


def write_window(
    platform: Platform,
    deployment_id: int,
    window: int,
    values: Mapping[tuple[str, str], float | None],
    *,
    version_id: int | None = None,
    evaluate: bool = True,
    length: dt.timedelta = FIVE_MINUTES,
) -> list[alerting.AlertChange]:
    """Write window number ``window`` (from ``T0``) with ``{(metric, feature): value}`` and
    evaluate it in the same transaction, as the monitoring job does."""
    start = T0 + window * length
    with platform.db.write() as session:
        for (metric, feature), value in values.items():
            session.add(
                MonitorPoint(
                    deployment_id=deployment_id,
                    version_id=version_id,
                    metric=metric,
                    feature=feature,
                    window_start=start,
                    window_end=start + length,
                    value=value,
                )
            )
        session.flush()
        return alerting.evaluate_window(session, platform, deployment_id, start) if evaluate else []


def create_rule(api: Api, **body: Any) -> dict[str, Any]:
    payload = {
        "name": "psi-age",
        "metric": "psi",
        "feature": "age",
        "comparison": ">",
        "threshold": 0.2,
        "channels": ["hook"],
        **body,
    }
    response = api.post(f"/api/v1/projects/{PROJECT}/alert-rules", json=payload)
    assert response.status_code == 201, response.json
    return response.json


def alerts(api: Api, state: str | None = None) -> list[dict[str, Any]]:
    query = f"?state={state}" if state else ""
    response = api.get(f"/api/v1/projects/{PROJECT}/alerts{query}")
    assert response.status_code == 200, response.json
    return response.json["items"]


def settled(api: Api) -> None:
    """Wait until every delivery job has run."""
    assert api.platform.jobs.wait_idle(30)
