"""Promotions of a model version into an environment: request, list, read, approve, reject, roll back.

A request whose policy checks fail is answered 422 with every failed check under
``errors.checks``; nothing is stored. A second active promotion of the same model to the
same environment is 409. Pending requests past their expiry are expired (in their own
transaction) before a promotion is read, approved or rejected.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, PageArgs, caller, json_response, platform
from api.views.deployments import VersionRef
from mlplatform.core.db.promotions import PROMOTION_STATES, STRATEGIES
from mlplatform.core.services import access
from mlplatform.core.services import promotions as service

blp = Blueprint(
    "promotions",
    __name__,
    url_prefix=f"{API_PREFIX}/projects",
    description="Promotions: policy checks, approvals, canary and blue/green rollouts with automatic rollback",
)


class PromotionRequestSchema(Schema):
    version = VersionRef(required=True, metadata={"description": "3, 'v3', 'latest' or an alias"})
    to = fields.String(required=True, metadata={"description": "The target environment"})
    strategy = fields.String(
        load_default=None, validate=validate.OneOf(STRATEGIES), metadata={"description": "Default: promotion.strategy"}
    )
    steps = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=100)),
        load_default=None,
        metadata={"description": "Canary traffic percentages ending at 100; default promotion.canary_steps"},
    )
    bake_seconds = fields.Float(
        load_default=None,
        validate=validate.Range(min=0, max=7 * 86400),
        allow_nan=False,
        metadata={"description": "Time per canary step; default promotion.bake_time"},
    )


class ApproveSchema(Schema):
    comment = fields.String(load_default="", validate=validate.Length(max=2000))


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class RollbackSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=2000))


class ListArgs(PageArgs):
    state = fields.String(load_default=None, validate=validate.OneOf(PROMOTION_STATES))
    environment = fields.String(load_default=None)


class StepSchema(Schema):
    index = fields.Integer()
    kind = fields.String(metadata={"enum": ["prepare", "traffic", "guard", "rollback"]})
    weight = fields.Integer(allow_none=True)
    state = fields.String()
    message = fields.String()
    measured = fields.Dict()
    started_at = fields.String()
    finished_at = fields.String(allow_none=True)
    seconds = fields.Float(allow_none=True)


class PromotionSchema(Schema):
    id = fields.Integer()
    project = fields.String()
    model = fields.String()
    version = fields.Integer()
    environment = fields.String()
    strategy = fields.String(metadata={"enum": list(STRATEGIES)})
    steps = fields.List(fields.Integer())
    bake_seconds = fields.Float()
    state = fields.String(metadata={"enum": list(PROMOTION_STATES)})
    reason = fields.String(metadata={"description": "Why the last transition happened"})
    revision = fields.Integer()
    requested_by = fields.String()
    required_approvals = fields.Integer()
    approvals = fields.List(fields.Dict())
    checks = fields.Dict(metadata={"description": "Policy results per phase: request, pre_traffic"})
    rollout = fields.List(fields.Nested(StepSchema))
    previous_traffic = fields.Dict(metadata={"description": "Version -> weight before traffic moved"})
    notifications = fields.List(fields.Dict())
    created_at = fields.String()
    updated_at = fields.String()
    expires_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    guard_until = fields.String(allow_none=True)
    active = fields.Boolean()


class PromotionListSchema(Schema):
    items = fields.List(fields.Nested(PromotionSchema))
    next_page_token = fields.String(allow_none=True)


def _expire(project: str, promotion_id: int | None = None) -> None:
    with platform().db.write() as session:
        service.expire_due(session, platform(), promotion_id=promotion_id, project=project)


@blp.route("/<project>/models/<model>/promotions")
class ModelPromotions(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(ListArgs, location="query")
    @blp.response(200, PromotionListSchema)
    def get(self, args: dict[str, Any], project: str, model: str) -> Response:
        """List the model's promotions, oldest first"""
        _expire(project)
        with platform().db.read() as session:
            page = service.list_promotions(
                session,
                project,
                model,
                state_filter=args["state"],
                environment=args["environment"],
                page_size=args["page_size"],
                page_token=args["page_token"],
            )
            return json_response({"items": page.items, "next_page_token": page.next_page_token})

    @requires(access.project_role("developer"))
    @blp.arguments(PromotionRequestSchema)
    @blp.response(201, PromotionSchema)
    def post(self, body: dict[str, Any], project: str, model: str) -> Response:
        """Request a promotion; 422 lists every failed policy check, 409 if one is already active"""
        with platform().db.write() as session:
            view = service.request_promotion(
                session,
                caller(),
                project,
                model,
                version=body["version"],
                to=body["to"],
                strategy=body["strategy"],
                steps=body["steps"],
                bake_seconds=body["bake_seconds"],
                platform=platform(),
            )
            return json_response(view, 201)


@blp.route("/<project>/promotions/<int:promotion_id>")
class PromotionById(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, PromotionSchema)
    def get(self, project: str, promotion_id: int) -> Response:
        """A promotion: its checks, approvals, rollout steps with timings and measurements, and the last reason"""
        _expire(project, promotion_id)
        with platform().db.read() as session:
            return json_response(service.get_promotion(session, project, promotion_id))


@blp.route("/<project>/promotions/<int:promotion_id>/approve")
class Approve(MethodView):
    @requires(access.project_role("maintainer"))
    @blp.arguments(ApproveSchema)
    @blp.response(200, PromotionSchema)
    def post(self, body: dict[str, Any], project: str, promotion_id: int) -> Response:
        """Approve (maintainers; not the requester). The last approval needed starts the rollout"""
        _expire(project, promotion_id)
        with platform().db.write() as session:
            view = service.approve(
                session, caller(), project, promotion_id, comment=body["comment"], platform=platform()
            )
            return json_response(view)


@blp.route("/<project>/promotions/<int:promotion_id>/reject")
class Reject(MethodView):
    @requires(access.project_role("maintainer"))
    @blp.arguments(RejectSchema)
    @blp.response(200, PromotionSchema)
    def post(self, body: dict[str, Any], project: str, promotion_id: int) -> Response:
        """Reject a pending or approved promotion, with a reason"""
        _expire(project, promotion_id)
        with platform().db.write() as session:
            view = service.reject(session, caller(), project, promotion_id, reason=body["reason"], platform=platform())
            return json_response(view)


@blp.route("/<project>/promotions/<int:promotion_id>/rollback")
class Rollback(MethodView):
    @requires(access.project_role("developer"))
    @blp.arguments(RollbackSchema)
    @blp.response(200, PromotionSchema)
    def post(self, body: dict[str, Any], project: str, promotion_id: int) -> Response:
        """Return the environment to what served before this promotion, now"""
        with platform().db.write() as session:
            view = service.rollback(
                session, caller(), project, promotion_id, reason=body["reason"], platform=platform()
            )
            return json_response(view)
