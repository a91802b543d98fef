"""``/projects/{p}/experiments``: create, list, read, rename, describe, tag, archive, delete, restore, purge."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, PageArgs, caller, page_body, page_schema, platform
from mlplatform.core.db.tracking import EXPERIMENT_STAGES
from mlplatform.core.services import access
from mlplatform.core.services import tracking as tracking_service

blp = Blueprint(
    "experiments", __name__, url_prefix=f"{API_PREFIX}/projects", description="Experiments: named groups of runs"
)

NAME = validate.Length(min=1, max=250)
TAG_KEY = fields.String(validate=validate.Length(min=1, max=250))


class ExperimentCreateSchema(Schema):
    name = fields.String(required=True, validate=NAME)
    description = fields.String(load_default="", validate=validate.Length(max=10000))
    tags = fields.Dict(keys=TAG_KEY, values=fields.String(validate=validate.Length(max=8000)), load_default=dict)


class ExperimentUpdateSchema(Schema):
    name = fields.String(validate=NAME, metadata={"description": "Rename"})
    description = fields.String(validate=validate.Length(max=10000))
    tags = fields.Dict(
        keys=TAG_KEY,
        values=fields.String(allow_none=True, validate=validate.Length(max=8000)),
        metadata={"description": "Merged into the experiment's tags; a null value removes the tag"},
    )
    archived = fields.Boolean(metadata={"description": "true archives the experiment, false makes it active again"})


class ExperimentSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String()
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    lifecycle_stage = fields.String(metadata={"enum": list(EXPERIMENT_STAGES)})
    created_at = fields.AwareDateTime()
    created_by = fields.String()
    updated_at = fields.AwareDateTime()
    deleted_at = fields.AwareDateTime(allow_none=True)


class ExperimentListArgs(PageArgs):
    name = fields.String(load_default=None, metadata={"description": "Case-insensitive substring of the name"})
    tag = fields.List(fields.String(), load_default=list, metadata={"description": "key or key=value; repeat to AND"})
    view = fields.String(load_default="active", validate=validate.OneOf(tracking_service.EXPERIMENT_VIEWS))


class ExperimentDeleteArgs(Schema):
    purge = fields.Boolean(
        load_default=False, metadata={"description": "Remove for good with runs and artifacts (project admin)"}
    )


ExperimentPage = page_schema(ExperimentSchema, "ExperimentPage")


def experiment_body(view: tracking_service.ExperimentView) -> dict[str, Any]:
    e = view.experiment
    return {
        "id": e.id,
        "name": e.name,
        "description": e.description,
        "tags": view.tags,
        "lifecycle_stage": e.lifecycle_stage,
        "created_at": e.created_at,
        "created_by": e.created_by,
        "updated_at": e.updated_at,
        "deleted_at": e.deleted_at,
    }


@blp.route("/<project>/experiments")
class Experiments(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(ExperimentListArgs, location="query")
    @blp.response(200, ExperimentPage)
    def get(self, args: dict[str, Any], project: str) -> dict[str, Any]:
        """List experiments, filtered by name substring, tags and lifecycle view"""
        with platform().db.read() as session:
            page = tracking_service.list_experiments(
                session,
                project,
                name=args["name"],
                tags=args["tag"],
                view=args["view"],
                page_size=args["page_size"],
                page_token=args["page_token"],
            )
            page.items = [experiment_body(v) for v in page.items]  # type: ignore[misc]
            return page_body(page)

    @requires(access.project_role("developer"))
    @blp.arguments(ExperimentCreateSchema)
    @blp.response(201, ExperimentSchema)
    def post(self, body: dict[str, Any], project: str) -> dict[str, Any]:
        """Create an experiment"""
        with platform().db.write() as session:
            view = tracking_service.create_experiment(
                session, caller(), project, body["name"], body["description"], body["tags"], platform=platform()
            )
            return experiment_body(view)


@blp.route("/<project>/experiments/<int:experiment_id>")
class ExperimentById(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, ExperimentSchema)
    def get(self, project: str, experiment_id: int) -> dict[str, Any]:
        """Get an experiment (deleted ones too, until purged)"""
        with platform().db.read() as session:
            return experiment_body(tracking_service.get_experiment(session, project, experiment_id))

    @requires(access.project_role("developer"))
    @blp.arguments(ExperimentUpdateSchema)
    @blp.response(200, ExperimentSchema)
    def patch(self, body: dict[str, Any], project: str, experiment_id: int) -> dict[str, Any]:
        """Rename, describe, tag, archive or unarchive an experiment"""
        with platform().db.write() as session:
            return experiment_body(
                tracking_service.update_experiment(session, caller(), project, experiment_id, body, platform=platform())
            )

    @requires(access.project_role("developer"))
    @blp.arguments(ExperimentDeleteArgs, location="query")
    @blp.response(204)
    def delete(self, args: dict[str, Any], project: str, experiment_id: int) -> None:
        """Delete an experiment (soft, restorable); ``?purge=true`` removes it for good (admin)"""
        with platform().db.write() as session:
            tracking_service.delete_experiment(
                session, caller(), project, experiment_id, purge=args["purge"], platform=platform()
            )


@blp.route("/<project>/experiments/<int:experiment_id>/restore")
class ExperimentRestore(MethodView):
    @requires(access.project_role("developer"))
    @blp.response(200, ExperimentSchema)
    def post(self, project: str, experiment_id: int) -> dict[str, Any]:
        """Restore a deleted experiment to the stage it had"""
        with platform().db.write() as session:
            return experiment_body(
                tracking_service.restore_experiment(session, caller(), project, experiment_id, platform=platform())
            )
