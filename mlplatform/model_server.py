"""``mlplatform model-server``: one model version over HTTP, for targets that run models
outside the platform process (Kubernetes pods, VMs).

The server is built from the platform config (``MLPLATFORM_CONFIG``): it reads the version
from the database and its files from the artifact store, then fetches, verifies and loads
them with the same code as the ``local`` target (``model_loading``) and validates requests
with the same code as the gateway (``signature.validate_inputs``). The model loads in the
background so liveness answers at once:

- ``GET /health``: 200 while the process runs;
- ``GET /ready``: 200 once the model is loaded, 503 while loading or after a failed load
  (the message says why);
- ``POST /predict``: ``{"instances": [...]}``, ``{"records": [...]}``,
  ``{"columns": [...], "data": [[...]]}`` or MLflow's shapes (``signature.BODY_SHAPES``) ->
  ``{"predictions", "version", "request_id"}``;
  errors in the platform's shape ``{"code", "status", "message", "errors"}``.

No authentication and no rate limit: the platform's gateway does both and calls this server
over the cluster network; keep it unexposed.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from sqlalchemy import select

from mlplatform.core import wire_json
from mlplatform.core.backends import DeploymentSpec, Predictor
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.errors import InvalidInput, MLPlatformError, NotFound, ServiceUnavailable
from mlplatform.core.gateway import read_json_body
from mlplatform.core.model_loading import load_model
from mlplatform.core.monitoring.ingest import request_id_or_new
from mlplatform.core.services import registry
from mlplatform.core.services.deployments import check_deployable, spec_for
from mlplatform.core.signature import validate_inputs

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.model_server")


def resolve_spec(
    platform: Platform,
    *,
    version_id: int | None = None,
    project: str | None = None,
    model: str | None = None,
    version: str | int | None = None,
) -> DeploymentSpec:
    """The spec of the version named by ``version_id``, or by ``project``/``model``/``version``
    (a number, ``v3``, ``latest`` or an alias). Raises ``InvalidInput`` for neither or both,
    ``NotFound``, or ``Conflict`` for a version that cannot be deployed."""
    if (version_id is None) == (project is None or model is None or version is None):
        raise InvalidInput("give --version-id, or --project, --model and --version")
    with platform.db.read() as session:
        if version_id is not None:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"model version id {version_id} does not exist")
            model_row = session.get(RegisteredModel, row.model_id)
            assert model_row is not None
            project_row = session.get(Project, model_row.project_id)
            assert project_row is not None
        else:
            project_row = session.scalar(select(Project).where(Project.name == project))
            if project_row is None:
                raise NotFound(f"project {project!r} does not exist")
            model_row, row = registry.resolve_version(session, project_row, str(model), version)  # type: ignore[arg-type]
        check_deployable(row, model_row.name)
        return spec_for(project_row.name, model_row.name, row)


class ModelServer:
    """The loaded model of one version, loaded once (in a thread by ``start``)."""

    def __init__(self, platform: Platform, spec: DeploymentSpec) -> None:
        self.platform = platform
        self.spec = spec
        self.predictor: Predictor | None = None
        self.error: str | None = None
        self._loaded = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self.load, name="mlplatform-model-load", daemon=True).start()

    def load(self) -> None:
        try:
            self.predictor = load_model(self.platform, self.spec)
        except Exception as exc:  # noqa: BLE001 - reported by /ready, the process stays up
            self.error = exc.message if isinstance(exc, MLPlatformError) else f"{type(exc).__name__}: {exc}"
            log.error("cannot load %s/%s v%s: %s", self.spec.project, self.spec.model, self.spec.version, self.error)
        finally:
            self._loaded.set()

    def wait(self, timeout: float) -> bool:
        return self._loaded.wait(timeout)

    def predict(self, body: Any) -> list[Any]:
        if self.predictor is None:
            raise ServiceUnavailable(self.error or "the model is still loading")
        frame = validate_inputs(self.spec.signature, body)
        return list(self.predictor.predict(frame))


def create_model_server(platform: Platform, spec: DeploymentSpec, *, load: bool = True) -> Flask:
    """The WSGI app serving ``spec``; with ``load`` the model starts loading now."""
    server = ModelServer(platform, spec)
    limit = platform.config["gateway"]["max_body_bytes"]
    app = Flask("mlplatform-model-server")
    app.extensions["model_server"] = server

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response:
        if server.predictor is not None:
            return _json({"status": "ready", "model": spec.model, "version": spec.version})
        state = "failed" if server.error else "loading"
        return _error(503, server.error or "the model is still loading", {"state": state})

    @app.post("/predict")
    def predict() -> Response:
        request_id = request_id_or_new(request.headers.get("X-Request-ID"))
        try:
            predictions = server.predict(read_json_body(request, limit))
        except MLPlatformError as exc:
            return _error(exc.status, exc.message, exc.errors)
        return _json(
            {"predictions": predictions, "version": spec.version, "request_id": request_id},
            {"X-Request-ID": request_id},
        )

    if load:
        server.start()
    return app


def _json(body: Any, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    return Response(wire_json.dumps(body), status=status, headers=headers, mimetype="application/json")


def _error(status: int, message: str, errors: dict[str, Any] | None = None) -> Response:
    return _json(
        {"code": status, "status": HTTPStatus(status).phrase, "message": message, "errors": errors or {}}, status=status
    )
