"""Deployments of a model per environment, and the prediction gateway.

PUT and DELETE answer 202 with the deployment (the work runs as a job) and an ``ETag``;
both honour ``If-Match`` (412 when the deployment changed). ``predict`` is the hot route:
it skips marshmallow (the schemas below only document it), reads the body under
``gateway.max_body_bytes`` and answers with a plain JSON response.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g, request
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate
from prometheus_client.core import CounterMetricFamily

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, PageArgs, caller, json_response, platform
from mlplatform.core.db.deployments import DEPLOYMENT_STATUSES
from mlplatform.core.gateway import Gateway, read_json_body
from mlplatform.core.services import access
from mlplatform.core.services import deployments as service

blp = Blueprint(
    "deployments",
    __name__,
    url_prefix=f"{API_PREFIX}/projects",
    description="Deployments of model versions per environment, and predictions through the gateway",
)

GATEWAY = "mlplatform_gateway"


class VersionRef(fields.Field):
    """A version number or a string (``"3"``, ``"v3"``, ``"latest"``, an alias)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | str:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
            raise ValidationError("a version number, 'v<N>', 'latest' or an alias")
        return value


class DeploySchema(Schema):
    version = VersionRef(
        required=True,
        metadata={"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "3, 'v3', 'latest' or an alias"},
    )
    weight = fields.Integer(
        load_default=100,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "Traffic share once healthy; below 100 the versions serving share the rest"},
    )


class TrafficSchema(Schema):
    version = fields.Integer()
    version_id = fields.Integer()
    weight = fields.Integer()
    status = fields.String()
    status_message = fields.String()
    target_ref = fields.String(allow_none=True)
    deployed_at = fields.String(allow_none=True)


class EventSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    version_id = fields.Integer(allow_none=True)
    message = fields.String()
    details = fields.Dict()
    actor = fields.String()
    occurred_at = fields.String()


class DeploymentSchema(Schema):
    id = fields.Integer()
    project = fields.String()
    model = fields.String()
    environment = fields.String()
    target = fields.String()
    status = fields.String(metadata={"enum": list(DEPLOYMENT_STATUSES)})
    status_message = fields.String()
    revision = fields.Integer(metadata={"description": "Also the ETag"})
    traffic = fields.List(fields.Nested(TrafficSchema))
    events = fields.List(fields.Nested(EventSchema), metadata={"description": "Latest first; single GET only"})
    created_at = fields.String()
    updated_at = fields.String()
    updated_by = fields.String()


class DeploymentListSchema(Schema):
    items = fields.List(fields.Nested(DeploymentSchema))
    next_page_token = fields.String(allow_none=True)


class DeploymentListArgs(PageArgs):
    model = fields.String(load_default=None)
    environment = fields.String(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(DEPLOYMENT_STATUSES))


class PredictRequestSchema(Schema):
    instances = fields.List(fields.Dict(), metadata={"description": "Records: one object per row"})
    columns = fields.List(fields.String(), metadata={"description": "Split: column names, with data"})
    data = fields.List(fields.List(fields.Raw()), metadata={"description": "Split: rows of values, in column order"})
    dataframe_split = fields.Dict(metadata={"description": "MLflow's split: {columns, data} (index not needed)"})
    dataframe_records = fields.List(fields.Dict(), metadata={"description": "MLflow's records, as instances"})
    inputs = fields.Raw(metadata={"description": "MLflow's inputs: {column: [values]} or a list of records"})


class PredictResponseSchema(Schema):
    predictions = fields.List(fields.Raw())
    version = fields.Integer()
    request_id = fields.String()


IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": "The ETag of the deployment as you read it; 412 if it changed since",
}


def _deployment_response(view: service.DeploymentView, status: int = 200) -> Response:
    return json_response(view.to_dict(), status, {"ETag": view.etag})


def gateway() -> Gateway:
    return current_app.extensions[GATEWAY]  # type: ignore[no-any-return]


@blp.record_once
def _install_gateway(state: Any) -> None:
    app: Flask = state.app
    platform = app.extensions["mlplatform"]
    app.extensions[GATEWAY] = platform.shared("gateway", lambda: Gateway(platform))  # closed with the platform
    metrics = app.extensions.get("mlplatform_metrics")
    if metrics is not None:
        metrics.registry.register(_CaptureCollector(app.extensions[GATEWAY]))


class _CaptureCollector:
    """``mlplatform_capture_dropped_total``: records the full capture buffer turned away."""

    def __init__(self, gw: Gateway) -> None:
        self.gateway = gw

    def collect(self) -> Any:
        family = CounterMetricFamily(
            "mlplatform_capture_dropped", "Inference records dropped because the capture buffer was full"
        )
        family.add_metric([], self.gateway.capture.dropped)
        yield family

    def describe(self) -> Any:
        return []


@blp.route("/<project>/deployments")
class ProjectDeployments(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(DeploymentListArgs, location="query")
    @blp.response(200, DeploymentListSchema)
    def get(self, args: dict[str, Any], project: str) -> Response:
        """List the project's deployments with their status and traffic, oldest first; filter by model, environment, status"""
        with platform().db.read() as session:
            page = service.page_deployments(session, project, **args)
            return json_response({"items": [v.to_dict() for v in page.items], "next_page_token": page.next_page_token})


@blp.route("/<project>/models/<model>/deployments/<environment>")
class DeploymentByEnvironment(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, DeploymentSchema, headers={"ETag": {"schema": {"type": "string"}}})
    def get(self, project: str, model: str, environment: str) -> Response:
        """Get the deployment of a model in an environment, with its latest events"""
        with platform().db.read() as session:
            return _deployment_response(service.get_deployment(session, project, model, environment))

    @requires(access.project_role("developer"))
    @blp.arguments(DeploySchema)
    @blp.doc(parameters=[IF_MATCH])
    @blp.response(202, DeploymentSchema)
    def put(self, body: dict[str, Any], project: str, model: str, environment: str) -> Response:
        """Deploy a version or alias; once healthy it takes its weight (default: all traffic)"""
        with platform().db.write() as session:
            view = service.request_deploy(
                session,
                caller(),
                project,
                model,
                environment,
                body["version"],
                weight=body["weight"],
                if_match=request.headers.get("If-Match"),
                platform=platform(),
            )
            return _deployment_response(view, 202)

    @requires(access.project_role("developer"))
    @blp.doc(parameters=[IF_MATCH])
    @blp.response(202, DeploymentSchema)
    def delete(self, project: str, model: str, environment: str) -> Response:
        """Undeploy: every version leaves traffic and the deployment is retired"""
        with platform().db.write() as session:
            view = service.request_undeploy(
                session,
                caller(),
                project,
                model,
                environment,
                if_match=request.headers.get("If-Match"),
                platform=platform(),
            )
            return _deployment_response(view, 202)


@blp.route("/<project>/models/<model>/deployments/<environment>/predict")
class Predict(MethodView):
    @requires(access.project_role("viewer"))
    @blp.doc(
        requestBody={"required": True, "content": {"application/json": {"schema": PredictRequestSchema}}},
        parameters=[
            {
                "in": "header",
                "name": "X-MLPlatform-Version",
                "required": False,
                "schema": {"type": "string"},
                "description": "Pin a version (3 or v3) instead of the traffic split (gateway.version_header)",
            }
        ],
    )
    @blp.response(200, PredictResponseSchema)
    def post(self, project: str, model: str, environment: str) -> Response:
        """Predict with the deployment: records or columns in (ours or MLflow's shapes), one prediction per row out"""
        gw = gateway()
        identity = caller()
        gw.check_rate(str(identity.token_id) if identity.token_id is not None else f"user:{identity.username}")
        body = read_json_body(request, gw.max_body_bytes)
        request_id = g.request_id
        result = gw.predict(
            project, model, environment, body, pin=request.headers.get(gw.version_header), request_id=request_id
        )
        return json_response(
            {"predictions": result.predictions, "version": result.version, "request_id": request_id},
            headers={gw.version_header: str(result.version)},
        )
