"""Reading tracked data across points and runs: metric history, comparison and run search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, json_response, platform
from api.views.runs import RunSchema, run_body
from mlplatform.core.services import access, metric_history, run_search
from mlplatform.core.services.pagination import MAX_PAGE_SIZE
from mlplatform.core.services.tracking_batch import to_wire

INF = float("inf")

blp = Blueprint(
    "run_queries", __name__, url_prefix=f"{API_PREFIX}/projects", description="Metric history and run search"
)

MAX_HISTORY_PAGE = 50000
MAX_POINTS = validate.Range(min=metric_history.MIN_MAX_POINTS, max=100000)


class HistoryArgs(Schema):
    page_size = fields.Integer(load_default=10000, validate=validate.Range(min=1, max=MAX_HISTORY_PAGE))
    page_token = fields.String(load_default=None)
    max_points = fields.Integer(
        load_default=None,
        validate=MAX_POINTS,
        metadata={
            "description": "Downsample to at most this many points (bucketed min/max; first and last kept); one page"
        },
    )


class PointSchema(Schema):
    step = fields.Integer()
    timestamp = fields.Integer()
    value = fields.Raw(metadata={"description": "A number, or NaN, Infinity, -Infinity as strings"})


class HistorySchema(Schema):
    run_id = fields.String()
    key = fields.String()
    items = fields.List(fields.Nested(PointSchema))
    next_page_token = fields.String(allow_none=True)


class CompareSchema(Schema):
    runs = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=1000))
    keys = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=1000))
    max_points = fields.Integer(
        load_default=1000, allow_none=True, validate=MAX_POINTS, metadata={"description": "null: every point"}
    )


class SeriesSchema(Schema):
    run_id = fields.String()
    key = fields.String()
    points = fields.List(fields.Nested(PointSchema))


class CompareResultSchema(Schema):
    series = fields.List(fields.Nested(SeriesSchema))


class SearchSchema(Schema):
    experiment_ids = fields.List(
        fields.Integer(), load_default=list, metadata={"description": "Default: every experiment not deleted"}
    )
    filter = fields.String(
        load_default="",
        validate=validate.Length(max=10000),
        metadata={"description": "e.g. metrics.acc > 0.9 AND params.lr = '0.01'"},
    )
    order_by = fields.List(
        fields.String(),
        load_default=list,
        validate=validate.Length(max=10),
        metadata={"description": 'e.g. ["metrics.acc DESC"]'},
    )
    run_view = fields.String(load_default="active", validate=validate.OneOf(run_search.RUN_VIEWS))
    page_size = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))
    page_token = fields.String(load_default=None, allow_none=True)


class RunPageSchema(Schema):
    items = fields.List(fields.Nested(RunSchema))
    next_page_token = fields.String(allow_none=True)


def points_body(points: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """``(step, timestamp, value, ...)`` rows as wire points. A series without NaN (NULL) or
    infinities, the common case, skips ``to_wire`` (one membership test per kind, in C)."""
    values = [p[2] for p in points]
    if None in values or INF in values or -INF in values:
        return [{"step": p[0], "timestamp": p[1], "value": to_wire(p[2])} for p in points]
    return [{"step": p[0], "timestamp": p[1], "value": p[2]} for p in points]


@blp.route("/<project>/runs/<run_id>/metrics/<path:key>")
class MetricHistory(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(HistoryArgs, location="query")
    @blp.response(200, HistorySchema)
    def get(self, args: dict[str, Any], project: str, run_id: str, key: str) -> Response:
        """Every point of one metric ordered by step, paged; or downsampled with max_points"""
        with platform().db.read() as session:
            page = metric_history.history(
                session,
                project,
                run_id,
                key,
                page_size=args["page_size"],
                page_token=args["page_token"],
                max_points=args["max_points"],
            )
        return json_response(
            {"run_id": run_id, "key": key, "items": points_body(page.items), "next_page_token": page.next_page_token}
        )


@blp.route("/<project>/metrics/history")
class MetricCompare(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(CompareSchema)
    @blp.response(200, CompareResultSchema)
    def post(self, body: dict[str, Any], project: str) -> Response:
        """Several metrics of several runs in one call, each series downsampled for charts"""
        with platform().db.read() as session:
            series = metric_history.compare(session, project, body["runs"], body["keys"], body["max_points"])
        return json_response({"series": [{**s, "points": points_body(s["points"])} for s in series]})


@blp.route("/<project>/runs/search")
class RunSearch(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(SearchSchema)
    @blp.response(200, RunPageSchema)
    def post(self, body: dict[str, Any], project: str) -> Response:
        """Search runs with a filter (metrics., params., tags., attributes.; AND only), order and pages"""
        with platform().db.read() as session:
            page = run_search.search_runs(
                session,
                project,
                experiment_ids=body["experiment_ids"],
                filter=body["filter"],
                order_by=body["order_by"],
                run_view=body["run_view"],
                page_size=body["page_size"],
                page_token=body["page_token"],
            )
            return json_response({"items": [run_body(v) for v in page.items], "next_page_token": page.next_page_token})
