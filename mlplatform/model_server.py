"""``mlplatform model-server``: one model version over HTTP, for targets that run models
outside the platform process (Kubernetes pods, VMs).

The server is built from the platform config (``MLPLATFORM_CONFIG``): it reads the version
from the database and its files from the artifact store, then fetches, verifies and loads
them with the same code as the ``local`` target (``model_loading``) and validates requests
with the same code as the gateway (``signature.validate_inputs``). The model loads in the
background so liveness answers at once. It speaks three protocols, so clients and probes
written for MLflow or KServe work against it unchanged:

- its own: ``GET /health`` (200 while the process runs), ``GET /ready`` (200 once the model
  is loaded, 503 while loading or after a failed load, saying why), ``POST /predict`` with
  ``{"instances": [...]}``, ``{"columns": [...], "data": [[...]]}`` or MLflow's shapes
  (``signature.BODY_SHAPES``) -> ``{"predictions", "version", "request_id"}``;
- MLflow's scoring server (``mlflow models serve``): ``GET /ping`` (readiness),
  ``GET /version``, ``POST /invocations`` with the same JSON bodies or ``text/csv``;
- KServe's Open Inference Protocol V2 (``open_inference``): ``GET /v2``,
  ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]`` (metadata
  from the signature), ``.../ready`` and ``POST .../infer`` with input tensors, in JSON or
  binary after a JSON header (Triton's and KServe's clients send binary by default).

Errors are in the platform's shape ``{"code", "status", "message", "errors"}``; MLflow's
routes add its ``error_code`` and V2's add ``error`` (the message), the keys their clients read.

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

from mlplatform import __version__
from mlplatform.core import open_inference, wire_json
from mlplatform.core.backends import DeploymentSpec, Predictor
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.errors import InvalidInput, MLPlatformError, NotFound, ServiceUnavailable, UnsupportedMediaType
from mlplatform.core.gateway import read_body, read_json_body, read_text_body
from mlplatform.core.model_loading import load_model
from mlplatform.core.monitoring.ingest import request_id_or_new
from mlplatform.core.services import registry
from mlplatform.core.services.deployments import check_deployable, spec_for
from mlplatform.core.signature import body_from_csv, validate_inputs

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

    def not_ready(extra: dict[str, Any]) -> Response:
        state = "failed" if server.error else "loading"
        return _error(503, server.error or "the model is still loading", {"state": state}, extra)

    def predictions(body: Any) -> tuple[list[Any], str]:
        return server.predict(body), request_id_or_new(request.headers.get("X-Request-ID"))

    def predictions_response(body: Any) -> Response:
        rows, request_id = predictions(body)
        return _json(
            {"predictions": rows, "version": spec.version, "request_id": request_id},
            {"X-Request-ID": request_id},
        )

    @app.errorhandler(MLPlatformError)
    def platform_error(exc: MLPlatformError) -> Response:
        return _error(exc.status, exc.message, exc.errors)

    @app.errorhandler(404)
    def no_route(exc: Exception) -> Response:
        return _error(404, f"no route {request.method} {request.path} on this model server")

    @app.errorhandler(405)
    def wrong_method(exc: Exception) -> Response:
        return _error(405, f"{request.method} is not allowed on {request.path}")

    # --- the platform's own protocol ---

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response:
        if server.predictor is not None:
            return _json({"status": "ready", "model": spec.model, "version": spec.version})
        return not_ready({})

    @app.post("/predict")
    def predict() -> Response:
        return predictions_response(read_json_body(request, limit))

    # --- MLflow's scoring protocol ---

    @app.get("/ping")
    def ping() -> Response:
        return ready()

    @app.get("/version")
    def version() -> Response:
        return Response(__version__, mimetype="text/plain")

    @app.post("/invocations")
    def invocations() -> Response:
        content_type = (request.mimetype or "application/json").lower()
        if content_type == "text/csv":
            body: Any = body_from_csv(spec.signature, read_text_body(request, limit))
        elif content_type == "application/json":
            body = read_json_body(request, limit)
        else:
            raise UnsupportedMediaType(
                f"content type {request.mimetype!r} is not supported: send application/json or text/csv"
            )
        return predictions_response(body)

    # --- KServe's Open Inference Protocol (V2) ---

    def check_model(name: str, version: str | None) -> None:
        if name != spec.model or version not in (None, str(spec.version), f"v{spec.version}"):
            asked = name if version is None else f"{name} version {version}"
            raise NotFound(
                f"model {asked!r} is not served here; this server serves {spec.model!r} version {spec.version}"
            )

    @app.get("/v2")
    def v2_server() -> Response:
        return _json({"name": "mlplatform", "version": __version__, "extensions": []})

    @app.get("/v2/health/live")
    def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    def v2_ready() -> Response:
        return _json({"ready": True}) if server.predictor is not None else not_ready({"ready": False})

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    def v2_model(name: str, version: str | None = None) -> Response:
        check_model(name, version)
        return _json(
            {
                "name": spec.model,
                "versions": [str(spec.version)],
                "platform": f"mlplatform-{spec.flavor}",
                **open_inference.tensor_metadata(spec.signature),
            }
        )

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    def v2_model_ready(name: str, version: str | None = None) -> Response:
        check_model(name, version)
        if server.predictor is None:
            return not_ready({"name": spec.model, "ready": False})
        return _json({"name": spec.model, "ready": True})

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    def v2_infer(name: str, version: str | None = None) -> Response:
        check_model(name, version)
        header_length = request.headers.get("Inference-Header-Content-Length")
        if header_length is None:
            infer = read_json_body(request, limit)
        else:
            infer = open_inference.with_binary_inputs(read_body(request, limit), header_length)
        rows, request_id = predictions(open_inference.body_from_request(spec.signature, infer))
        outputs = open_inference.output_tensors(rows, spec.signature, infer.get("outputs"))
        given_id = infer.get("id")
        return _json(
            {
                "model_name": spec.model,
                "model_version": str(spec.version),
                "id": given_id if isinstance(given_id, str) and given_id else request_id,
                "outputs": outputs,
            },
            {"X-Request-ID": request_id},
        )

    if load:
        server.start()
    return app


#: MLflow's ``error_code`` for a status, as its scoring server sends it.
_MLFLOW_ERROR_CODES = {404: "RESOURCE_DOES_NOT_EXIST", 503: "TEMPORARILY_UNAVAILABLE"}


def _json(body: Any, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    return Response(wire_json.dumps(body), status=status, headers=headers, mimetype="application/json")


def _error(
    status: int, message: str, errors: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> Response:
    """The platform's error shape, plus the key the protocol of the route asked for reads:
    V2's ``error`` or MLflow's ``error_code``."""
    body = {"code": status, "status": HTTPStatus(status).phrase, "message": message, "errors": errors or {}}
    if request.path.startswith("/v2"):
        body["error"] = message
    elif request.path == "/invocations":
        body["error_code"] = _MLFLOW_ERROR_CODES.get(status, "BAD_REQUEST")
    return _json({**body, **(extra or {})}, status=status)
