"""``/projects/{p}/models``: registered models, their versions (with files and lineage) and aliases.

Wherever a route takes ``{version}`` it accepts a number (``3``), ``v3``, ``latest`` or an
alias (``champion``). A version comes from a run (``{"run_id", "artifact_path"}``: the files
are copied) or by upload (``{"source": "upload"}``, then ``PUT .../files/<path>`` for each
file, then ``POST .../finalize``). Either way a background job loads it once and marks it
``ready`` or ``failed``; the model is never loaded inside a request.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.security import requires
from api.views.common import (
    API_PREFIX,
    Blueprint,
    PageArgs,
    authorized_project,
    caller,
    download_response,
    json_response,
    page_body,
    page_schema,
    platform,
)
from mlplatform.core.db.registry import VERSION_STATUSES
from mlplatform.core.errors import InvalidInput
from mlplatform.core.services import access
from mlplatform.core.services import registry as registry_service
from mlplatform.core.services import registry_aliases as alias_service
from mlplatform.core.services import registry_lineage as lineage_service
from mlplatform.core.services import registry_versions as version_service

blp = Blueprint(
    "models", __name__, url_prefix=f"{API_PREFIX}/projects", description="Model registry: models, versions, aliases"
)

TAGS = fields.Dict(
    keys=fields.String(validate=validate.Length(min=1, max=250)),
    values=fields.String(validate=validate.Length(max=8000)),
)
VERSION_REF_DOC = "A number, v<N>, latest or an alias"


def _tag_changes() -> fields.Dict:
    return fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=250)),
        values=fields.String(allow_none=True, validate=validate.Length(max=8000)),
        metadata={"description": "Merged into the tags; a null value removes the tag"},
    )


# --- schemas ------------------------------------------------------------------------------------


class ModelCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=250))
    description = fields.String(load_default="", validate=validate.Length(max=10000))
    tags = TAGS


class ModelUpdateSchema(Schema):
    description = fields.String(validate=validate.Length(max=10000))
    tags = _tag_changes()


class ModelSchema(Schema):
    name = fields.String()
    description = fields.String()
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    aliases = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "alias -> version number"}
    )
    latest_version = fields.Integer(allow_none=True, metadata={"description": "Highest ready, unarchived version"})
    created_at = fields.AwareDateTime()
    created_by = fields.String()
    updated_at = fields.AwareDateTime()


class ModelListArgs(PageArgs):
    name = fields.String(load_default=None, metadata={"description": "Case-insensitive substring of the name"})
    tag = fields.List(fields.String(), load_default=list, metadata={"description": "key or key=value; repeat to AND"})


class ModelVersionCreateSchema(Schema):
    source = fields.String(
        load_default=None,
        validate=validate.OneOf(("run", "upload")),
        metadata={
            "description": "run (default when run_id is given): copy the run's artifact_path folder; "
            "upload: create an empty version, PUT its files, then finalize"
        },
    )
    run_id = fields.String(
        load_default=None, metadata={"description": "The run (lineage); with source=run, also the files"}
    )
    artifact_path = fields.String(
        load_default=None, metadata={"description": "Folder in the run's artifacts, e.g. model"}
    )
    flavor = fields.String(
        load_default=None, metadata={"description": "Default: mlplatform-model.json's flavor, else detected"}
    )
    signature = fields.Dict(load_default=None, metadata={"description": "{inputs: [{name, type, nullable}], outputs}"})
    input_example = fields.List(
        fields.Dict(),
        load_default=None,
        metadata={
            "description": "A few input records: the signature is inferred from them when not given, "
            "and the validation job predicts on them"
        },
    )
    description = fields.String(load_default="", validate=validate.Length(max=10000))
    tags = TAGS

    @validates_schema
    def _source(self, data: dict[str, Any], **_: Any) -> None:
        source = data.get("source") or ("run" if data.get("run_id") else None)
        if source is None:
            raise ValidationError("give run_id and artifact_path, or source=upload", "source")
        if source == "run" and (not data.get("run_id") or data.get("artifact_path") is None):
            raise ValidationError("a version from a run needs run_id and artifact_path", "artifact_path")
        if source == "upload" and data.get("artifact_path") is not None:
            raise ValidationError(
                "artifact_path is for source=run; upload files with PUT .../files/<path>", "artifact_path"
            )
        data["source"] = source


class ModelVersionUpdateSchema(Schema):
    description = fields.String(validate=validate.Length(max=10000))
    tags = _tag_changes()
    archived = fields.Boolean(
        metadata={"description": "Archived versions are skipped by latest and cannot get aliases"}
    )


class ModelVersionSchema(Schema):
    model = fields.String()
    version = fields.Integer()
    status = fields.String(metadata={"enum": list(VERSION_STATUSES)})
    status_message = fields.String(metadata={"description": "Why it failed, or what it waits for"})
    finalized = fields.Boolean(metadata={"description": "Files recorded and read-only (artifact_sha256 set)"})
    flavor = fields.String(allow_none=True)
    signature = fields.Raw(allow_none=True)
    artifact_uri = fields.String()
    artifact_sha256 = fields.String(allow_none=True)
    description = fields.String()
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    archived = fields.Boolean()
    aliases = fields.List(fields.String())
    run_id = fields.String(allow_none=True)
    experiment_id = fields.Integer(allow_none=True)
    source_git_commit = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    created_by = fields.String()
    updated_at = fields.AwareDateTime()


class ModelVersionListArgs(PageArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(VERSION_STATUSES))
    archived = fields.Boolean(load_default=None)


class ModelAliasSetSchema(Schema):
    version = fields.Raw(required=True, metadata={"description": "Version number (or v<N>, latest, another alias)"})


class ModelAliasSchema(Schema):
    model = fields.String()
    alias = fields.String()
    version = fields.Integer()
    previous_version = fields.Integer(allow_none=True)
    updated_at = fields.AwareDateTime()
    updated_by = fields.String()


class ModelFileSchema(Schema):
    path = fields.String()
    size = fields.Integer()
    modified = fields.AwareDateTime(allow_none=True)


class ModelFileListSchema(Schema):
    items = fields.List(fields.Nested(ModelFileSchema))


class LineageRunSchema(Schema):
    id = fields.String(allow_none=True)
    exists = fields.Boolean()
    name = fields.String(allow_none=True)
    status = fields.String(allow_none=True)
    user = fields.String(allow_none=True)
    start_time = fields.AwareDateTime(allow_none=True)
    end_time = fields.AwareDateTime(allow_none=True)
    experiment_id = fields.Integer(allow_none=True)
    experiment_name = fields.String(allow_none=True)
    source_git_commit = fields.String(allow_none=True)
    params = fields.Dict(keys=fields.String(), values=fields.String())
    metrics = fields.Dict(
        keys=fields.String(),
        values=fields.Float(allow_none=True),
        metadata={"description": "Latest values at registration"},
    )


class LineageDeploymentSchema(Schema):
    environment = fields.String()
    weight = fields.Integer()
    status = fields.String()
    target_ref = fields.String(allow_none=True)
    deployed_at = fields.AwareDateTime(allow_none=True)


class LineageDeploymentEventSchema(Schema):
    environment = fields.String()
    kind = fields.String()
    message = fields.String()
    details = fields.Raw()
    actor = fields.String()
    occurred_at = fields.AwareDateTime()


class ModelVersionLineageSchema(Schema):
    model = fields.String()
    version = fields.Integer()
    status = fields.String()
    created_at = fields.AwareDateTime()
    created_by = fields.String()
    flavor = fields.String(allow_none=True)
    artifact_uri = fields.String()
    artifact_sha256 = fields.String(allow_none=True)
    run = fields.Nested(LineageRunSchema, allow_none=True)
    deployments = fields.List(fields.Nested(LineageDeploymentSchema), metadata={"description": "Where it serves now"})
    deployment_events = fields.List(
        fields.Nested(LineageDeploymentEventSchema), metadata={"description": "History, oldest first"}
    )


ModelPage = page_schema(ModelSchema, "ModelPage")
VersionPage = page_schema(ModelVersionSchema, "ModelVersionPage")


def model_body(view: registry_service.ModelView) -> dict[str, Any]:
    m = view.model
    return {
        "name": m.name,
        "description": m.description,
        "tags": m.tags or {},
        "aliases": view.aliases,
        "latest_version": view.latest_version,
        "created_at": m.created_at,
        "created_by": m.created_by,
        "updated_at": m.updated_at,
    }


def version_body(view: version_service.VersionView) -> dict[str, Any]:
    v = view.version
    return {
        "model": view.model_name,
        "version": v.version,
        "status": v.status,
        "status_message": v.status_message,
        "finalized": view.finalized,
        "flavor": v.flavor,
        "signature": v.signature,
        "artifact_uri": v.artifact_uri,
        "artifact_sha256": v.artifact_sha256,
        "description": v.description,
        "tags": v.tags or {},
        "archived": v.archived,
        "aliases": view.aliases,
        "run_id": v.run_id,
        "experiment_id": v.experiment_id,
        "source_git_commit": v.source_git_commit,
        "created_at": v.created_at,
        "created_by": v.created_by,
        "updated_at": v.updated_at,
    }


def _ref(version: str) -> str | int:
    return int(version) if version.isdigit() else version


# --- models -------------------------------------------------------------------------------------


@blp.route("/<project>/models")
class Models(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(ModelListArgs, location="query")
    @blp.response(200, ModelPage)
    def get(self, args: dict[str, Any], project: str) -> dict[str, Any]:
        """List registered models, filtered by name substring and tags"""
        with platform().db.read() as session:
            page = registry_service.list_models(
                session,
                project,
                name=args["name"],
                tags=args["tag"],
                page_size=args["page_size"],
                page_token=args["page_token"],
            )
            page.items = [model_body(v) for v in page.items]  # type: ignore[misc]
            return page_body(page)

    @requires(access.project_role("developer"))
    @blp.arguments(ModelCreateSchema)
    @blp.response(201, ModelSchema)
    def post(self, body: dict[str, Any], project: str) -> dict[str, Any]:
        """Register a model name"""
        with platform().db.write() as session:
            view = registry_service.create_model(
                session, caller(), project, body["name"], body["description"], body.get("tags"), platform=platform()
            )
            return model_body(view)


@blp.route("/<project>/models/<model>")
class ModelByName(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, ModelSchema)
    def get(self, project: str, model: str) -> dict[str, Any]:
        """Get a model with its aliases and latest version"""
        with platform().db.read() as session:
            return model_body(registry_service.get_model_view(session, project, model))

    @requires(access.project_role("developer"))
    @blp.arguments(ModelUpdateSchema)
    @blp.response(200, ModelSchema)
    def patch(self, body: dict[str, Any], project: str, model: str) -> dict[str, Any]:
        """Change a model's description or tags"""
        with platform().db.write() as session:
            return model_body(
                registry_service.update_model(session, caller(), project, model, body, platform=platform())
            )

    @requires(access.project_role("maintainer"))
    @blp.response(204)
    def delete(self, project: str, model: str) -> None:
        """Delete a model with its versions, aliases and their files (409 while a version is deployed)"""
        with platform().db.write() as session:
            registry_service.delete_model(session, caller(), project, model, platform=platform())


# --- versions -----------------------------------------------------------------------------------


@blp.route("/<project>/models/<model>/versions")
class Versions(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(ModelVersionListArgs, location="query")
    @blp.response(200, VersionPage)
    def get(self, args: dict[str, Any], project: str, model: str) -> dict[str, Any]:
        """List a model's versions, oldest first"""
        with platform().db.read() as session:
            page = version_service.list_versions(
                session,
                project,
                model,
                status=args["status"],
                archived=args["archived"],
                page_size=args["page_size"],
                page_token=args["page_token"],
            )
            page.items = [version_body(v) for v in page.items]  # type: ignore[misc]
            return page_body(page)

    @requires(access.project_role("developer"))
    @blp.arguments(ModelVersionCreateSchema)
    @blp.response(201, ModelVersionSchema)
    def post(self, body: dict[str, Any], project: str, model: str) -> Response:
        """Register a new version from a run's artifact folder, or start an upload"""
        spec = version_service.check_spec(
            flavor=body["flavor"],
            signature=body["signature"],
            input_example=body["input_example"],
            description=body["description"],
            tags=body.get("tags"),
            run_id=body["run_id"],
        )
        if body["source"] == "run":
            view = version_service.register_from_run(
                platform(), caller(), authorized_project(), model, body["run_id"], body["artifact_path"], spec
            )
        else:
            view = version_service.begin_version(platform(), caller(), project, model, spec)
        return json_response(version_body(view), 201)


@blp.route("/<project>/models/<model>/versions/<version>")
class VersionByRef(MethodView):
    @requires(access.project_role("viewer"))
    @blp.doc(parameters=[{"in": "path", "name": "version", "description": VERSION_REF_DOC}])
    @blp.response(200, ModelVersionSchema)
    def get(self, project: str, model: str, version: str) -> dict[str, Any]:
        """Get a version by number, v<N>, latest or alias"""
        with platform().db.read() as session:
            return version_body(version_service.get_version(session, project, model, _ref(version)))

    @requires(access.project_role("developer"))
    @blp.arguments(ModelVersionUpdateSchema)
    @blp.response(200, ModelVersionSchema)
    def patch(self, body: dict[str, Any], project: str, model: str, version: str) -> dict[str, Any]:
        """Change a version's description or tags, archive or unarchive it"""
        with platform().db.write() as session:
            return version_body(
                version_service.update_version(
                    session, caller(), project, model, _ref(version), body, platform=platform()
                )
            )

    @requires(access.project_role("maintainer"))
    @blp.doc(parameters=[{"in": "path", "name": "version", "description": VERSION_REF_DOC}])
    @blp.response(204)
    def delete(self, project: str, model: str, version: str) -> None:
        """Delete a version, the aliases on it and its files (409 while deployed or being promoted)"""
        with platform().db.write() as session:
            version_service.delete_version(session, caller(), project, model, _ref(version), platform=platform())


@blp.route("/<project>/models/<model>/versions/<version>/lineage")
class VersionLineage(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, ModelVersionLineageSchema)
    def get(self, project: str, model: str, version: str) -> dict[str, Any]:
        """Where a version came from (run, params, metrics, digest) and where it was deployed"""
        with platform().db.read() as session:
            return lineage_service.lineage(session, project, model, _ref(version))


@blp.route("/<project>/models/<model>/versions/<version>/finalize")
class VersionFinalize(MethodView):
    @requires(access.project_role("developer"))
    @blp.response(200, ModelVersionSchema)
    def post(self, project: str, model: str, version: str) -> dict[str, Any]:
        """Seal an uploaded version's files (digest, flavor) and start its validation; idempotent"""
        return version_body(version_service.finalize_version(platform(), caller(), project, model, _ref(version)))


@blp.route("/<project>/models/<model>/versions/<version>/files")
class VersionFiles(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, ModelFileListSchema)
    def get(self, project: str, model: str, version: str) -> dict[str, Any]:
        """List a version's files"""
        return {"items": version_service.file_listing(platform(), project, model, _ref(version))}


@blp.route("/<project>/models/<model>/versions/<version>/files/<path:path>")
class VersionFile(MethodView):
    @requires(access.project_role("developer"))
    @blp.doc(requestBody={"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})
    @blp.response(201, ModelFileSchema)
    def put(self, project: str, model: str, version: str, path: str) -> Any:
        """Upload one file of a version that is not finalized; streamed (409 once finalized)"""
        limit = platform().config["tracking"]["limits"]["max_artifact_bytes"]
        request.max_content_length = limit
        return version_service.upload_file(
            platform(), project, model, _ref(version), path, request.stream, size=request.content_length, limit=limit
        )

    @requires(access.project_role("viewer"))
    @blp.response(200, content_type="application/octet-stream")
    def get(self, project: str, model: str, version: str, path: str) -> Response:
        """Download one file of a version, streamed"""
        download = version_service.file_download(platform(), project, model, _ref(version), path)
        return download_response(download)


# --- aliases ------------------------------------------------------------------------------------


@blp.route("/<project>/models/<model>/aliases/<alias>")
class Alias(MethodView):
    @requires(access.project_role("developer"))
    @blp.arguments(ModelAliasSetSchema)
    @blp.response(200, ModelAliasSchema)
    def put(self, body: dict[str, Any], project: str, model: str, alias: str) -> Response:
        """Point an alias at a version (moves it if it points elsewhere); latest and v<N> are reserved"""
        ref = body["version"]
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise InvalidInput("version must be a number or a version reference", errors={"version": ["not a version"]})
        with platform().db.write() as session:
            move = alias_service.set_alias(
                session, caller(), authorized_project(), model, alias, ref, platform=platform()
            )
            return json_response(
                {
                    "model": move.model,
                    "alias": move.alias,
                    "version": move.version,
                    "previous_version": move.previous,
                    "updated_at": move.updated_at,
                    "updated_by": move.updated_by,
                }
            )

    @requires(access.project_role("developer"))
    @blp.response(204)
    def delete(self, project: str, model: str, alias: str) -> None:
        """Remove an alias (idempotent)"""
        with platform().db.write() as session:
            alias_service.delete_alias(session, caller(), project, model, alias, platform=platform())
