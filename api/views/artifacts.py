"""``/projects/{p}/runs/{run}/artifacts``: streamed upload and download, listing by prefix."""

from __future__ import annotations

from typing import Any

from flask import Response, g, request
from flask.views import MethodView
from marshmallow import Schema, fields

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, download_response, platform
from mlplatform.core.errors import Conflict
from mlplatform.core.services import access, artifacts
from mlplatform.core.services import tracking as tracking_service

blp = Blueprint("artifacts", __name__, url_prefix=f"{API_PREFIX}/projects", description="Run artifacts")


class ArtifactSchema(Schema):
    path = fields.String()
    size = fields.Integer()
    modified = fields.AwareDateTime(allow_none=True)


class ListArgs(Schema):
    prefix = fields.String(load_default="")


class ArtifactListSchema(Schema):
    items = fields.List(fields.Nested(ArtifactSchema))


def run_prefix(project: str, run_id: str, *, active: bool) -> str:
    with platform().db.read() as session:
        run = tracking_service.load_run(session, g.project, run_id)
        if active and run.lifecycle_stage != "active":
            raise Conflict(f"run {run_id!r} is deleted; restore it to add artifacts")
        return run.artifact_prefix.rstrip("/") + "/"


@blp.route("/<project>/runs/<run_id>/artifacts")
class ArtifactList(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(ListArgs, location="query")
    @blp.response(200, ArtifactListSchema)
    def get(self, args: dict[str, Any], project: str, run_id: str) -> dict[str, Any]:
        """List a run's artifacts under a path prefix, with sizes"""
        prefix = run_prefix(project, run_id, active=False)
        return {"items": list(artifacts.listing(platform().artifact_store, prefix, args["prefix"]))}


@blp.route("/<project>/runs/<run_id>/artifacts/<path:path>")
class Artifact(MethodView):
    @requires(access.project_role("developer"))
    @blp.doc(requestBody={"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})
    @blp.response(201, ArtifactSchema)
    def put(self, project: str, run_id: str, path: str) -> Any:
        """Upload one artifact file; the body is streamed to the store, never held whole"""
        limit = platform().config["tracking"]["limits"]["max_artifact_bytes"]
        request.max_content_length = limit  # the JSON body limit does not apply to artifacts
        prefix = run_prefix(project, run_id, active=True)
        return artifacts.upload(
            platform().artifact_store, prefix, path, request.stream, size=request.content_length, limit=limit
        )

    @requires(access.project_role("viewer"))
    @blp.response(200, content_type="application/octet-stream")
    def get(self, project: str, run_id: str, path: str) -> Response:
        """Download one artifact file, streamed"""
        prefix = run_prefix(project, run_id, active=False)
        download = artifacts.download(platform().artifact_store, prefix, path)
        return download_response(download)
