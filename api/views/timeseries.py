"""``GET /projects/{p}/models/{m}/deployments/{env}/metrics``: monitor series, bucketed in SQL.

The response is written by ``SeriesResult.to_json`` (no schema pass, no Python object per
point): a month of 5-minute windows is thousands of points. The schemas below document it
in the OpenAPI spec.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, platform
from mlplatform.core.services import access, timeseries

blp = Blueprint(
    "timeseries", __name__, url_prefix=f"{API_PREFIX}/projects", description="Monitoring time series of a deployment"
)


class MonitorSeriesArgs(Schema):
    name = fields.String(
        required=True, metadata={"description": "A monitor metric (row_count, psi, ...); 422 names an unknown one"}
    )
    feature = fields.List(
        fields.String(),
        load_default=list,
        metadata={"description": "Repeat for several features; none: every feature of the metric"},
    )
    start = fields.AwareDateTime(load_default=None, metadata={"description": "Inclusive; default a day before end"})
    end = fields.AwareDateTime(load_default=None, metadata={"description": "Exclusive; default now"})
    step = fields.String(
        load_default="1h", metadata={"description": "Bucket width: 90s, 5m, 1h, 1d; aligned to the epoch (UTC)"}
    )
    agg = fields.String(load_default="avg", validate=validate.OneOf(timeseries.AGGREGATES))
    version = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=250),
        metadata={
            "description": "Only the points of this model version: a number (3 or v3), latest or an alias; "
            "422 names an unknown one. Default: every version, aggregated together"
        },
    )


class MonitorSeriesPointSchema(Schema):
    time = fields.AwareDateTime(metadata={"description": "The bucket's start"})
    value = fields.Float(allow_none=True)


class MonitorSeriesSchema(Schema):
    feature = fields.String()
    points = fields.List(fields.Nested(MonitorSeriesPointSchema))


class MonitorSeriesResultSchema(Schema):
    name = fields.String()
    agg = fields.String()
    step = fields.Integer(metadata={"description": "Seconds"})
    start = fields.AwareDateTime()
    end = fields.AwareDateTime()
    version = fields.Integer(
        allow_none=True, metadata={"description": "The version number the points are filtered to; null: every version"}
    )
    series = fields.List(fields.Nested(MonitorSeriesSchema))


@blp.route("/<project>/models/<model>/deployments/<environment>/metrics")
class DeploymentMetrics(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(MonitorSeriesArgs, location="query")
    @blp.response(200, MonitorSeriesResultSchema)
    def get(self, args: dict[str, Any], project: str, model: str, environment: str) -> Response:
        """Bucketed values of one monitor metric for one or more features"""
        with platform().db.read() as session:
            model_id, deployment_id = timeseries.deployment_for(session, project, model, environment)
            version = timeseries.version_filter(session, model_id, args["version"]) if args["version"] else None
            result = timeseries.query(
                session,
                platform(),
                deployment_id,
                name=args["name"],
                features=args["feature"],
                start=args["start"],
                end=args["end"],
                step=args["step"],
                agg=args["agg"],
                version=version,
            )
        return Response(result.to_json(), mimetype="application/json")
