"""The Flask app factory: ``create_app(platform)`` or ``create_app()`` from ``MLPLATFORM_CONFIG``."""

from __future__ import annotations

import functools
import logging
from typing import Any

from flask import Flask, Response, g, request
from flask_smorest import Api

import mlplatform
from api import converters, errors, security
from api.metrics import Metrics
from api.portal import session as portal_session
from api.portal import views as portal_views
from mlplatform.core.db import migrate
from mlplatform.core.monitoring.ingest import request_id_or_new
from mlplatform.core.platform import Platform


def create_app(platform: Platform | None = None, **flask_config: Any) -> Flask:
    """Build the app. Without ``platform``, one is built from ``MLPLATFORM_CONFIG`` (or the default)."""
    from api.views import (
        alerts,
        artifacts,
        audit,
        deployments,
        experiments,
        identity,
        models,
        monitoring,
        operations,
        projects,
        promotions,
        run_queries,
        runs,
        timeseries,
    )

    platform = platform or Platform.from_file()
    migrate.require_current(platform.db.engine)
    app = Flask("mlplatform", static_folder=None)
    converters.install(app)  # before any route is added
    app.config.update(
        API_TITLE="mlplatform",
        API_VERSION=mlplatform.__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=platform.config["server"]["max_content_length"],
        JSON_SORT_KEYS=False,
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        },
        **flask_config,
    )
    app.extensions["mlplatform"] = platform
    logging.getLogger("mlplatform").setLevel(platform.config["logging"]["level"])

    api = Api(app)

    @app.before_request
    def _request_id() -> None:
        g.request_id = request_id_or_new(request.headers.get("X-Request-ID"))
        platform.jobs.request_started()  # inline jobs wait for a pause in requests
        g.jobs_told = True

    @app.teardown_request
    def _request_done(_error: BaseException | None) -> None:
        if g.pop("jobs_told", False):
            platform.jobs.request_finished()

    @app.after_request
    def _stamp(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    errors.register(app)  # after Api(): our handlers replace flask-smorest's
    app.extensions["mlplatform_metrics"] = Metrics(app, platform)
    security.install(app)
    for module in (
        operations,
        identity,
        projects,
        audit,
        experiments,
        runs,
        run_queries,
        artifacts,
        models,
        deployments,
        promotions,
        alerts,
        timeseries,
        monitoring,
    ):
        api.register_blueprint(module.blp)
    _public_spec(app)
    _root_aliases(app)
    portal_session.configure(app, platform)
    app.register_blueprint(portal_views.bp)
    if platform.config["jobs"]["backend"] == "inline":
        # Jobs left running or queued by a server process that died run again here;
        # with the rq backend the workers do this themselves.
        platform.jobs.recover()

    return app


def _public_spec(app: Flask) -> None:
    """The OpenAPI document is readable without a token."""
    for endpoint, view in list(app.view_functions.items()):
        if endpoint.startswith("api-docs."):
            app.view_functions[endpoint] = security.requires(security.access.PUBLIC)(functools.partial(view))


def _root_aliases(app: Flask) -> None:
    """``/health``, ``/ready`` and ``/metrics`` at the root too, where probes and scrapers look."""
    for name in ("health", "ready", "metrics"):
        app.add_url_rule(
            f"/{name}", endpoint=f"root_{name}", view_func=app.view_functions[f"operations.{name.capitalize()}"]
        )
