"""``/projects/{p}/audit``, ``/audit`` and ``/audit/verify``."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, PageArgs, page_body, page_schema, platform
from mlplatform.core.services import access, audit

blp = Blueprint("audit", __name__, url_prefix=API_PREFIX, description="The tamper-evident audit trail")


class AuditArgs(PageArgs):
    resource_type = fields.String(load_default=None)
    resource_id = fields.String(load_default=None)
    actor = fields.String(load_default=None)
    action = fields.String(load_default=None)
    start = fields.AwareDateTime(load_default=None)
    end = fields.AwareDateTime(load_default=None)


class AdminAuditArgs(AuditArgs):
    project = fields.String(load_default=None)


class AuditEventSchema(Schema):
    id = fields.Integer()
    occurred_at = fields.AwareDateTime()
    actor = fields.String()
    project = fields.String(allow_none=True)
    action = fields.String()
    resource_type = fields.String()
    resource_id = fields.String()
    summary = fields.Dict()
    prev_hash = fields.String()
    row_hash = fields.String()


class VerificationSchema(Schema):
    ok = fields.Boolean()
    checked = fields.Integer()
    first_broken_id = fields.Integer(allow_none=True)
    reason = fields.String()


AuditPage = page_schema(AuditEventSchema, "AuditPage")


@blp.route("/projects/<project>/audit")
class ProjectAudit(MethodView):
    @requires(access.project_role("maintainer"))
    @blp.arguments(AuditArgs, location="query")
    @blp.response(200, AuditPage)
    def get(self, args: dict[str, Any], project: str) -> dict[str, Any]:
        """A project's audit events, filtered by resource, actor, action and time"""
        with platform().db.read() as session:
            return page_body(audit.search(session, project=project, **args))


@blp.route("/audit")
class Audit(MethodView):
    @requires(access.ADMIN)
    @blp.arguments(AdminAuditArgs, location="query")
    @blp.response(200, AuditPage)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Every audit event"""
        with platform().db.read() as session:
            return page_body(audit.search(session, **args))


@blp.route("/audit/verify")
class AuditVerify(MethodView):
    @requires(access.ADMIN)
    @blp.response(200, VerificationSchema)
    def get(self) -> dict[str, Any]:
        """Recompute the hash chain and name the first broken event"""
        with platform().db.snapshot() as session:
            return audit.verify(session).to_dict()
