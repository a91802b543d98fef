"""``/health``, ``/ready``, ``/metrics`` and ``/plugins``."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields
from sqlalchemy import text

import mlplatform
from api.security import requires
from api.views.common import API_PREFIX, Blueprint, platform
from mlplatform.core.errors import ServiceUnavailable
from mlplatform.core.services import access

blp = Blueprint("operations", __name__, url_prefix=API_PREFIX, description="Liveness, readiness, metrics and plugins")


class HealthSchema(Schema):
    status = fields.String()
    version = fields.String()


class ReadySchema(HealthSchema):
    checks = fields.Dict(keys=fields.String(), values=fields.String())


class BackendInfoSchema(Schema):
    kind = fields.String()
    name = fields.String()
    config_schema = fields.Dict()


class PluginInfoSchema(Schema):
    name = fields.String()
    version = fields.String()
    hooks = fields.List(fields.String())
    backends = fields.List(fields.Nested(BackendInfoSchema))


@blp.route("/health")
class Health(MethodView):
    @requires(access.PUBLIC)
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, Any]:
        """Liveness: the process answers"""
        return {"status": "ok", "version": mlplatform.__version__}


@blp.route("/ready")
class Ready(MethodView):
    @requires(access.PUBLIC)
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, description="a dependency is unreachable")
    def get(self) -> dict[str, Any]:
        """Readiness: the database and the job queue answer"""
        checks: dict[str, str] = {}
        try:
            with platform().db.read() as session:
                session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            platform().jobs.ping()
            checks["jobs"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["jobs"] = f"unreachable: {type(exc).__name__}"
        if any(value != "ok" for value in checks.values()):
            raise ServiceUnavailable("not ready", errors=checks)
        return {"status": "ready", "version": mlplatform.__version__, "checks": checks}


@blp.route("/metrics")
class Metrics(MethodView):
    @requires(access.ADMIN)
    @blp.response(200, content_type="text/plain")
    def get(self) -> Any:
        """Prometheus metrics (admins: it shows every project's models): requests, latency, jobs, monitor values"""
        return current_app.extensions["mlplatform_metrics"].render()


@blp.route("/plugins")
class Plugins(MethodView):
    @requires(access.AUTHENTICATED)
    @blp.response(200, PluginInfoSchema(many=True))
    def get(self) -> list[Any]:
        """Loaded plugins: version, hooks, backends and each backend's config schema"""
        return platform().pm.plugin_infos()
