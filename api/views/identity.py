"""``/whoami``, ``/tokens`` and ``/users``."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, PageArgs, caller, page_body, page_schema, platform
from mlplatform.core.db.models import Membership, Project, User
from mlplatform.core.errors import PermissionDenied
from mlplatform.core.services import access
from mlplatform.core.services import identity as identity_service
from mlplatform.core.services.pagination import paginate

blp = Blueprint("identity", __name__, url_prefix=API_PREFIX, description="Who you are, your API tokens, and users")

USERNAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$", error="letters, digits and _.@- only; at most 128")


class MembershipSchema(Schema):
    project = fields.String()
    role = fields.String()


class WhoAmISchema(Schema):
    username = fields.String()
    is_admin = fields.Boolean()
    auth_backend = fields.String()
    token_id = fields.Integer(allow_none=True)
    projects = fields.List(fields.Nested(MembershipSchema))


class TokenCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=250))
    expires_at = fields.AwareDateTime(load_default=None)
    username = fields.String(load_default=None, metadata={"description": "admins: issue for another user"})


class TokenSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String(metadata={"description": "the first characters, to recognise a token"})
    created_at = fields.AwareDateTime()
    expires_at = fields.AwareDateTime(allow_none=True)
    last_used_at = fields.AwareDateTime(allow_none=True)
    revoked_at = fields.AwareDateTime(allow_none=True)


class NewTokenSchema(TokenSchema):
    token = fields.String(metadata={"description": "shown once; store it now"})


class UserCreateSchema(Schema):
    username = fields.String(required=True, validate=USERNAME)
    email = fields.Email(load_default=None)
    display_name = fields.String(load_default="", validate=validate.Length(max=250))
    is_admin = fields.Boolean(load_default=False)


class UserSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    email = fields.String(allow_none=True)
    display_name = fields.String()
    is_admin = fields.Boolean()
    is_active = fields.Boolean()
    created_at = fields.AwareDateTime()


UserPage = page_schema(UserSchema, "UserPage")


@blp.route("/whoami")
class WhoAmI(MethodView):
    @requires(access.AUTHENTICATED)
    @blp.response(200, WhoAmISchema)
    def get(self) -> dict[str, Any]:
        """The caller's identity and project roles"""
        identity = caller()
        with platform().db.read() as session:
            rows = session.execute(
                select(Project.name, Membership.role)
                .join(Membership, Membership.project_id == Project.id)
                .where(Membership.user_id == identity.user_id)
                .order_by(Project.name)
            )
            projects = [{"project": name, "role": role} for name, role in rows]
        return {
            "username": identity.username,
            "is_admin": identity.is_admin,
            "auth_backend": identity.backend,
            "token_id": identity.token_id,
            "projects": projects,
        }


@blp.route("/tokens")
class Tokens(MethodView):
    @requires(access.AUTHENTICATED)
    @blp.response(200, TokenSchema(many=True))
    def get(self) -> Any:
        """List your API tokens (never their values)"""
        with platform().db.read() as session:
            return identity_service.list_tokens(session, caller().user_id)

    @requires(access.AUTHENTICATED)
    @blp.arguments(TokenCreateSchema)
    @blp.response(201, NewTokenSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Issue an API token; its value is in this response only"""
        identity = caller()
        with platform().db.write() as session:
            if body["username"] and body["username"] != identity.username:
                if not identity.is_admin:
                    raise PermissionDenied("only admins issue tokens for other users")
                user = identity_service.get_user(session, body["username"])
            else:
                user = session.get(User, identity.user_id)
            token, plaintext = identity_service.issue_token(
                session, identity.username, user, body["name"], expires_at=body["expires_at"], platform=platform()
            )
        return {**{name: getattr(token, name) for name in TokenSchema().fields}, "token": plaintext}


@blp.route("/tokens/<int:token_id>")
class TokenById(MethodView):
    @requires(access.AUTHENTICATED)
    @blp.response(204)
    def delete(self, token_id: int) -> None:
        """Revoke a token (yours; admins: anyone's)"""
        with platform().db.write() as session:
            identity_service.revoke_token(session, caller(), token_id, platform=platform())


@blp.route("/users")
class Users(MethodView):
    @requires(access.ADMIN)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, UserPage)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List users"""
        with platform().db.read() as session:
            return page_body(paginate(session, select(User), User.id, args["page_size"], args["page_token"]))

    @requires(access.ADMIN)
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Create a user"""
        with platform().db.write() as session:
            return identity_service.create_user(
                session,
                caller().username,
                body["username"],
                email=body["email"],
                display_name=body["display_name"],
                is_admin=body["is_admin"],
                platform=platform(),
            )


@blp.route("/users/<username>")
class UserByName(MethodView):
    @requires(access.ADMIN)
    @blp.response(200, UserSchema)
    def get(self, username: str) -> Any:
        """Get a user"""
        with platform().db.read() as session:
            return identity_service.get_user(session, username)
