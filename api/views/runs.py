"""Runs: create (with a first batch), read, update, delete, restore, and log batches.

The hot routes (``log``, reading a run) skip marshmallow for the batch itself: the service
validates the decoded JSON in one loop and the response is built as a plain dict. The
schemas below still document every body in the OpenAPI spec.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, caller, json_response, platform, refuse_unstorable
from mlplatform.core import storable
from mlplatform.core.db.tracking import RUN_STAGES, RUN_STATUSES
from mlplatform.core.services import access
from mlplatform.core.services import tracking_runs as run_service
from mlplatform.core.services.tracking_batch import parse_batch, to_wire

blp = Blueprint(
    "runs", __name__, url_prefix=f"{API_PREFIX}/projects", description="Runs: params, metrics and tags of one training"
)

METRIC_VALUE_DOC = {
    "description": "A number, or one of the strings NaN, Infinity, -Infinity",
    "oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}],
}


class MetricPointSchema(Schema):
    key = fields.String(required=True)
    value = fields.Raw(required=True, metadata=METRIC_VALUE_DOC)
    step = fields.Integer(load_default=0)
    timestamp = fields.Integer(metadata={"description": "Milliseconds since the epoch; default now"})


class LogBatchSchema(Schema):
    params = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "Write-once: another value for a logged key is 409"},
    )
    metrics = fields.List(
        fields.Nested(MetricPointSchema),
        metadata={"description": "Appended; at most tracking.limits.max_metrics_per_batch"},
    )
    tags = fields.Dict(keys=fields.String(), values=fields.String(), metadata={"description": "Last write wins"})


class LogResultSchema(Schema):
    run_id = fields.String()
    metrics = fields.Integer()
    params = fields.Integer()
    tags = fields.Integer()


class SourceSchema(Schema):
    git_commit = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    entry_point = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))


class RunCreateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=250))
    start_time = fields.AwareDateTime(metadata={"description": "Default now"})
    user = fields.String(validate=validate.Length(min=1, max=250), metadata={"description": "Default the caller"})
    source = fields.Nested(SourceSchema, load_default=dict)
    parent_run_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=32),
        metadata={"description": "For nested runs"},
    )
    params = fields.Raw(load_default=None, metadata={"type": "object", "description": "First batch: params"})
    metrics = fields.Raw(
        load_default=None, metadata={"type": "array", "items": {"$ref": "#/components/schemas/MetricPoint"}}
    )
    tags = fields.Raw(load_default=None, metadata={"type": "object", "description": "First batch: tags"})


class RunUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=250))
    status = fields.String(
        validate=validate.OneOf(RUN_STATUSES), metadata={"description": "running reopens a finished run"}
    )
    end_time = fields.AwareDateTime(metadata={"description": "Default now when the status becomes terminal"})


class LatestMetricSchema(Schema):
    value = fields.Raw(metadata=METRIC_VALUE_DOC)
    step = fields.Integer()
    timestamp = fields.Integer()


class RunSchema(Schema):
    id = fields.String()
    experiment_id = fields.Integer()
    name = fields.String()
    status = fields.String(metadata={"enum": list(RUN_STATUSES)})
    lifecycle_stage = fields.String(metadata={"enum": list(RUN_STAGES)})
    start_time = fields.AwareDateTime()
    end_time = fields.AwareDateTime(allow_none=True)
    deleted_at = fields.AwareDateTime(allow_none=True)
    user = fields.String()
    source = fields.Nested(SourceSchema)
    parent_run_id = fields.String(allow_none=True)
    artifact_prefix = fields.String()
    params = fields.Dict(keys=fields.String(), values=fields.String())
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    metrics = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(LatestMetricSchema),
        metadata={"description": "Latest value of each metric"},
    )


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def run_body(view: run_service.RunView) -> dict[str, Any]:
    run = view.run
    return {
        "id": run.id,
        "experiment_id": run.experiment_id,
        "name": run.name,
        "status": run.status,
        "lifecycle_stage": run.lifecycle_stage,
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
        "deleted_at": _iso(run.deleted_at),
        "user": run.user,
        "source": {"git_commit": run.source_git_commit, "entry_point": run.source_entry_point},
        "parent_run_id": run.parent_run_id,
        "artifact_prefix": run.artifact_prefix,
        "params": view.params,
        "tags": view.tags,
        "metrics": {
            k: {"value": to_wire(m["value"]), "step": m["step"], "timestamp": m["timestamp"]}
            for k, m in view.metrics.items()
        },
    }


def json_body(raw: bytes) -> Any:
    """The request's JSON: orjson (a 1000-point batch parses several times faster), else
    Flask's parser, which also takes the NaN and Infinity literals Python's json writes and
    answers malformed JSON with the usual 400. A value no database can store is a 422."""
    body = _parse_json(raw)
    if storable.json_needs_check(raw):
        refuse_unstorable(body)
    return body


def _parse_json(raw: bytes) -> Any:
    if request.is_json:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return request.get_json()


def limits() -> dict[str, int]:
    return platform().config["tracking"]["limits"]


@blp.route("/<project>/experiments/<int:experiment_id>/runs")
class ExperimentRuns(MethodView):
    @requires(access.project_role("developer"))
    @blp.arguments(RunCreateSchema)
    @blp.response(201, RunSchema)
    def post(self, body: dict[str, Any], project: str, experiment_id: int) -> Response:
        """Start a run, optionally with its first batch of params, metrics and tags"""
        batch = parse_batch({k: body[k] for k in ("params", "metrics", "tags")}, limits())
        spec = {
            "name": body.get("name"),
            "start_time": body.get("start_time"),
            "user": body.get("user"),
            "source_git_commit": body["source"].get("git_commit"),
            "source_entry_point": body["source"].get("entry_point"),
            "parent_run_id": body["parent_run_id"],
        }
        with platform().db.write() as session:
            view = run_service.create_run(session, caller(), project, experiment_id, spec, batch, platform=platform())
            return json_response(run_body(view), 201)


@blp.route("/<project>/runs/<run_id>")
class RunById(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, RunSchema)
    def get(self, project: str, run_id: str) -> Response:
        """Get a run with its params, tags and the latest value of each metric"""
        with platform().db.read() as session:
            return json_response(run_body(run_service.get_run(session, project, run_id)))

    @requires(access.project_role("developer"))
    @blp.arguments(RunUpdateSchema)
    @blp.response(200, RunSchema)
    def patch(self, body: dict[str, Any], project: str, run_id: str) -> Response:
        """Rename a run, set its status (running reopens it) and end time"""
        with platform().db.write() as session:
            return json_response(
                run_body(run_service.update_run(session, caller(), project, run_id, body, platform=platform()))
            )

    @requires(access.project_role("developer"))
    @blp.response(204)
    def delete(self, project: str, run_id: str) -> None:
        """Delete a run (soft, restorable; idempotent)"""
        with platform().db.write() as session:
            run_service.set_run_deleted(session, caller(), project, run_id, True, platform=platform())


@blp.route("/<project>/runs/<run_id>/restore")
class RunRestore(MethodView):
    @requires(access.project_role("developer"))
    @blp.response(200, RunSchema)
    def post(self, project: str, run_id: str) -> Response:
        """Restore a deleted run"""
        with platform().db.write() as session:
            return json_response(
                run_body(run_service.set_run_deleted(session, caller(), project, run_id, False, platform=platform()))
            )


@blp.route("/<project>/runs/<run_id>/log")
class RunLog(MethodView):
    @requires(access.project_role("developer"))
    @blp.doc(
        requestBody={"required": True, "content": {"application/json": {"schema": LogBatchSchema}}},
        parameters=[
            {
                "in": "header",
                "name": "Idempotency-Key",
                "required": False,
                "schema": {"type": "string", "maxLength": 250},
                "description": "A retry with the same key returns the first response and logs nothing again",
            }
        ],
    )
    @blp.response(200, LogResultSchema)
    def post(self, project: str, run_id: str) -> Response:
        """Log one batch of params, metrics and tags, all or nothing"""
        raw = request.get_data(cache=True)
        batch = parse_batch(json_body(raw), limits())
        key = request.headers.get("Idempotency-Key") or None
        with platform().db.write() as session:
            result, replayed = run_service.log(
                session,
                project,
                run_id,
                batch,
                idempotency_key=key,
                request_hash=hashlib.sha256(raw).hexdigest() if key else "",
            )
        return json_response(result.to_dict(), 200, {"Idempotent-Replayed": "true"} if replayed else None)
