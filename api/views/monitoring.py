"""Monitoring routes: a version's reference data, events and labels, windows, the summary.

- ``PUT/GET /projects/{p}/models/{m}/versions/{v}/reference``: the body is CSV
  (``text/csv``), Parquet (``application/vnd.apache.parquet``, ``application/octet-stream``)
  or JSON ``{"run_id", "artifact_path"}`` naming a run artifact; profiled once.
- ``POST /projects/{p}/models/{m}/deployments/{env}/events``: JSON ``{"records": [...]}`` or
  ``{"labels": [...]}``, or a Parquet / Arrow IPC body of records (one column per input
  feature plus ``timestamp``, ``request_id``?, ``output``?, ``version``?); answers
  ``{"accepted", "rejected", "errors": [{"index", "reason"}]}``.
- ``POST .../deployments/{env}/monitoring/windows`` ``{"start"}``: (re)compute one window.
- ``GET .../deployments/{env}/monitoring``: the latest window's quality and drift per feature.

The events route is hot: the body is parsed without marshmallow and the answer is plain JSON.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, fields

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, caller, json_response, platform, refuse_unstorable
from mlplatform.core.errors import InvalidInput
from mlplatform.core.services import access
from mlplatform.core.services import monitoring as service

blp = Blueprint(
    "monitoring",
    __name__,
    url_prefix=f"{API_PREFIX}/projects",
    description="Monitoring: reference data, events, windows, summary",
)

PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet")
ARROW_STREAM_TYPES = ("application/vnd.apache.arrow.stream",)
ARROW_FILE_TYPES = ("application/vnd.apache.arrow.file",)
CSV_TYPES = ("text/csv", "application/csv")


class RunArtifactSchema(Schema):
    run_id = fields.String(required=True)
    artifact_path = fields.String(required=True)


class ReferenceSchema(Schema):
    model = fields.String()
    version = fields.Integer()
    source = fields.String(metadata={"enum": ["upload", "run_artifact"]})
    row_count = fields.Integer()
    created_at = fields.String()
    created_by = fields.String()
    bins = fields.Integer()
    features = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        metadata={"description": "per feature: kind, counts, min/max, quantiles, bin edges or categories"},
    )
    output = fields.Dict(allow_none=True)


class EventRecordSchema(Schema):
    timestamp = fields.Raw(required=True, metadata={"description": "ISO 8601 (naive = UTC) or epoch seconds"})
    inputs = fields.Dict(required=True, metadata={"description": "feature -> scalar"})
    output = fields.Raw(metadata={"description": "the prediction"})
    request_id = fields.String(metadata={"description": "joins late labels; generated when absent"})
    version = fields.Integer(metadata={"description": "model version number; default: the deployment's main version"})
    latency_ms = fields.Float()
    status = fields.Integer()


class LabelSchema(Schema):
    request_id = fields.String(required=True)
    label = fields.Raw(required=True)
    timestamp = fields.Raw(
        metadata={"description": "the prediction's time: its window is recomputed if it was computed"}
    )


class EventsSchema(Schema):
    records = fields.List(fields.Nested(EventRecordSchema))
    labels = fields.List(fields.Nested(LabelSchema))


class IngestErrorSchema(Schema):
    index = fields.Integer()
    reason = fields.String()


class IngestResultSchema(Schema):
    accepted = fields.Integer()
    rejected = fields.Integer()
    errors = fields.List(fields.Nested(IngestErrorSchema), metadata={"description": "the first 100 reasons, by index"})


class WindowRequestSchema(Schema):
    start = fields.AwareDateTime(
        required=True, metadata={"description": "a window start, aligned to monitoring.window"}
    )


class WindowJobSchema(Schema):
    job_id = fields.String()
    window_start = fields.String()
    window_end = fields.String()


class SummarySchema(Schema):
    project = fields.String()
    model = fields.String()
    environment = fields.String()
    window = fields.Dict(allow_none=True)
    versions = fields.List(fields.Dict())


def _ref(version: str) -> str | int:
    """A version number, ``v<N>``, ``latest`` or an alias, as the registry routes take it."""
    return int(version) if version.isdigit() else version


def _content_type() -> str:
    return (request.mimetype or "").lower()


@blp.route("/<project>/models/<model>/versions/<version>/reference")
class Reference(MethodView):
    @requires(access.project_role("developer"))
    @blp.doc(
        parameters=[{"in": "path", "name": "version", "description": "A number, v<N>, latest or an alias"}],
        requestBody={
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": RunArtifactSchema},
            },
        },
    )
    @blp.response(200, ReferenceSchema)
    def put(self, project: str, model: str, version: str) -> Response:
        """Set a version's reference data (CSV, Parquet or a run artifact) and profile it"""
        limit = platform().config["tracking"]["limits"]["max_artifact_bytes"]
        request.max_content_length = limit
        kind = _content_type()
        kwargs: dict[str, Any]
        if kind == "application/json":
            body = request.get_json(silent=True)
            refuse_unstorable(body)
            if (
                not isinstance(body, dict)
                or not isinstance(body.get("run_id"), str)
                or not isinstance(body.get("artifact_path"), str)
            ):
                raise InvalidInput(
                    'JSON body must be {"run_id", "artifact_path"}',
                    errors={"json": ["run_id and artifact_path are required"]},
                )
            kwargs = {"run_id": body["run_id"], "artifact_path": body["artifact_path"]}
        elif kind in CSV_TYPES:
            kwargs = {"data": request.get_data(), "fmt": "csv"}
        elif kind in PARQUET_TYPES or kind == "application/octet-stream":
            kwargs = {"data": request.get_data(), "fmt": "parquet"}
        else:
            raise InvalidInput(
                f"unsupported Content-Type {kind!r}; use text/csv, application/vnd.apache.parquet or application/json"
            )
        with platform().db.write() as session:
            body, created = service.put_reference(
                session, platform(), caller(), project, model, _ref(version), **kwargs
            )
        return json_response(body, 201 if created else 200)

    @requires(access.project_role("viewer"))
    @blp.response(200, ReferenceSchema)
    def get(self, project: str, model: str, version: str) -> Response:
        """Get a version's reference profile summary"""
        with platform().db.read() as session:
            return json_response(service.get_reference(session, project, model, _ref(version)))


@blp.route("/<project>/models/<model>/deployments/<environment>/events")
class Events(MethodView):
    @requires(access.project_role("developer"))
    @blp.doc(
        requestBody={
            "required": True,
            "content": {
                "application/json": {"schema": EventsSchema},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
                "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    )
    @blp.response(200, IngestResultSchema)
    def post(self, project: str, model: str, environment: str) -> Response:
        """Send inference records (JSON, Parquet or Arrow IPC) or late ground-truth labels"""
        request.max_content_length = platform().config["monitoring"]["max_event_bytes"]
        with platform().db.read() as session:
            target = service.ingest_target(session, project, model, environment)
        kind = _content_type()
        if kind == "application/json":
            body = request.get_json(silent=True)
            refuse_unstorable(body)
            if (
                not isinstance(body, dict)
                or len({"records", "labels"} & set(body)) != 1
                or set(body) - {"records", "labels"}
            ):
                raise InvalidInput(
                    'body must be {"records": [...]} or {"labels": [...]}', errors={"json": ["records or labels"]}
                )
            if "labels" in body:
                with platform().db.write() as session:
                    result = service.ingest_labels(session, platform(), target, body["labels"])
                return json_response(result.to_dict())
            result = service.ingest_records(platform(), target, json_records=body["records"])
        else:
            result = service.ingest_records(platform(), target, table=_read_table(kind, request.get_data()))
        with platform().db.read() as session:
            late = service.late_windows(session, platform(), target, result)
        if late:  # records of windows computed already: compute them again
            with platform().db.write() as session:
                service.requeue_windows(session, platform(), target, late)
        return json_response(result.to_dict())


def _read_table(kind: str, data: bytes) -> pa.Table:
    """A Parquet or Arrow IPC (stream or file) body; ``application/octet-stream`` is sniffed."""
    try:
        if kind in PARQUET_TYPES or (kind == "application/octet-stream" and data[:4] == b"PAR1"):
            import pyarrow.parquet as pq

            return pq.read_table(io.BytesIO(data))
        if kind in ARROW_FILE_TYPES or (kind == "application/octet-stream" and data[:6] == b"ARROW1"):
            return pa.ipc.open_file(pa.BufferReader(data)).read_all()
        if kind in ARROW_STREAM_TYPES or kind == "application/octet-stream":
            return pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"body is not valid {kind}: {exc}") from None
    raise InvalidInput(
        f"unsupported Content-Type {kind!r}; use application/json, application/vnd.apache.parquet or application/vnd.apache.arrow.stream"
    )


@blp.route("/<project>/models/<model>/deployments/<environment>/monitoring/windows")
class Windows(MethodView):
    @requires(access.project_role("maintainer"))
    @blp.arguments(WindowRequestSchema)
    @blp.response(202, WindowJobSchema)
    def post(self, body: dict[str, Any], project: str, model: str, environment: str) -> dict[str, Any]:
        """Compute (or recompute) one monitoring window now"""
        with platform().db.write() as session:
            return service.request_window(session, platform(), caller(), project, model, environment, body["start"])


@blp.route("/<project>/models/<model>/deployments/<environment>/monitoring")
class Summary(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, SummarySchema)
    def get(self, project: str, model: str, environment: str) -> Response:
        """Latest data quality and drift per feature, per version (the latest computed window)"""
        with platform().db.read() as session:
            return json_response(service.summary(session, project, model, environment))
