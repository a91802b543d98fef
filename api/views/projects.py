"""``/projects`` and ``/projects/{p}/members``."""

from __future__ import annotations

from typing import Any

from flask import g
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, PageArgs, caller, page_body, page_schema, platform
from mlplatform.core.db.models import ROLES
from mlplatform.core.services import access
from mlplatform.core.services import projects as project_service

blp = Blueprint(
    "projects", __name__, url_prefix=f"{API_PREFIX}/projects", description="Projects (tenants) and their members"
)

PROJECT_NAME = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,62}$", error="lower-case letters, digits, _ and -; at most 63")


class ProjectCreateSchema(Schema):
    name = fields.String(required=True, validate=PROJECT_NAME)
    description = fields.String(load_default="", validate=validate.Length(max=10000))


class ProjectUpdateSchema(Schema):
    description = fields.String(validate=validate.Length(max=10000))


class ProjectSchema(Schema):
    name = fields.String()
    description = fields.String()
    created_at = fields.AwareDateTime()
    created_by = fields.String()


class MemberSchema(Schema):
    username = fields.String()
    role = fields.String()
    since = fields.AwareDateTime()


class MemberRoleSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


ProjectPage = page_schema(ProjectSchema, "ProjectPage")


def member_body(membership: Any, user: Any) -> dict[str, Any]:
    return {"username": user.username, "role": membership.role, "since": membership.created_at}


@blp.route("")
class Projects(MethodView):
    @requires(access.AUTHENTICATED)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, ProjectPage)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the projects you belong to (admins: all)"""
        with platform().db.read() as session:
            return page_body(project_service.list_projects(session, caller(), args["page_size"], args["page_token"]))

    @requires(access.AUTHENTICATED)
    @blp.arguments(ProjectCreateSchema)
    @blp.response(201, ProjectSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Create a project; you become its admin"""
        with platform().db.write() as session:
            return project_service.create_project(
                session, caller(), body["name"], body["description"], platform=platform()
            )


@blp.route("/<project>")
class ProjectByName(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, ProjectSchema)
    def get(self, project: str) -> Any:
        """Get a project"""
        return g.project

    @requires(access.project_role("maintainer"))
    @blp.arguments(ProjectUpdateSchema)
    @blp.response(200, ProjectSchema)
    def patch(self, body: dict[str, Any], project: str) -> Any:
        """Update a project's description"""
        with platform().db.write() as session:
            return project_service.update_project(session, caller(), project, body, platform=platform())


@blp.route("/<project>/members")
class Members(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, MemberSchema(many=True))
    def get(self, project: str) -> list[dict[str, Any]]:
        """List a project's members and their roles"""
        with platform().db.read() as session:
            return [member_body(m, u) for m, u in project_service.list_members(session, project)]


@blp.route("/<project>/members/<username>")
class Member(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, MemberSchema)
    def get(self, project: str, username: str) -> dict[str, Any]:
        """Get one member's role"""
        with platform().db.read() as session:
            return member_body(*project_service.get_member(session, project, username))

    @requires(access.project_role("admin"))
    @blp.arguments(MemberRoleSchema)
    @blp.response(200, MemberSchema)
    def put(self, body: dict[str, Any], project: str, username: str) -> dict[str, Any]:
        """Add a member or change their role"""
        with platform().db.write() as session:
            membership, user, _created = project_service.set_member(
                session, caller(), project, username, body["role"], platform=platform()
            )
            return member_body(membership, user)

    @requires(access.project_role("admin"))
    @blp.response(204)
    def delete(self, project: str, username: str) -> None:
        """Remove a member (idempotent)"""
        with platform().db.write() as session:
            project_service.remove_member(session, caller(), project, username, platform=platform())
