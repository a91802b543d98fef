"""``/projects/{p}/alert-rules`` and ``/projects/{p}/alerts``.

Rules carry an explicit ETag (their revision): GET, POST and PATCH send it, PATCH and
DELETE honour ``If-Match`` (412 when it names an older revision).
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.security import requires
from api.views.common import API_PREFIX, Blueprint, PageArgs, caller, json_response, page_schema, platform
from mlplatform.core.db.monitoring import ALERT_STATES, COMPARISONS, SEVERITIES
from mlplatform.core.services import access, alert_rules, alerting

blp = Blueprint(
    "alerts", __name__, url_prefix=f"{API_PREFIX}/projects", description="Alert rules and the alerts they raise"
)

IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": "The rule's ETag; 412 if it changed",
}


class AlertRuleUpdateSchema(Schema):
    """Every field optional: PATCH sends what changes. Omitted on create: the defaults shown."""

    name = fields.String(validate=validate.Length(min=1, max=250))
    metric = fields.String(
        validate=validate.Length(min=1, max=100), metadata={"description": "A monitor metric; 422 names an unknown one"}
    )
    feature = fields.String(
        allow_none=True,
        validate=validate.Length(max=250),
        metadata={
            "description": 'null (default): any feature; "": the whole-window series (row_count, latency_p99, ...)'
        },
    )
    comparison = fields.String(validate=validate.OneOf(COMPARISONS))
    threshold = fields.Float(allow_nan=False)
    for_windows = fields.Integer(
        validate=validate.Range(min=1, max=1000), metadata={"description": "consecutive windows with data; default 1"}
    )
    severity = fields.String(validate=validate.OneOf(SEVERITIES), metadata={"description": "default warning"})
    channels = fields.List(
        fields.String(),
        validate=validate.Length(max=20),
        metadata={"description": "names in the config's alert_channels; default none"},
    )
    model = fields.String(allow_none=True, metadata={"description": "null (default): every model of the project"})
    environment = fields.String(allow_none=True, metadata={"description": "null (default): every environment"})
    enabled = fields.Boolean(metadata={"description": "default true"})


class AlertRuleCreateSchema(AlertRuleUpdateSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=250))
    metric = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "A monitor metric; 422 names an unknown one"},
    )
    comparison = fields.String(required=True, validate=validate.OneOf(COMPARISONS))
    threshold = fields.Float(required=True, allow_nan=False)


class AlertRuleSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    metric = fields.String()
    feature = fields.String(allow_none=True)
    comparison = fields.String()
    threshold = fields.Float()
    for_windows = fields.Integer()
    severity = fields.String()
    channels = fields.List(fields.String())
    model = fields.String(allow_none=True)
    environment = fields.String(allow_none=True)
    enabled = fields.Boolean()
    revision = fields.Integer()
    created_at = fields.AwareDateTime()
    created_by = fields.String()
    updated_at = fields.AwareDateTime()


class AlertNotificationSchema(Schema):
    id = fields.Integer()
    channel = fields.String()
    event = fields.String(metadata={"enum": ["firing", "resolved"]})
    status = fields.String(metadata={"enum": ["pending", "delivered", "failed"]})
    error = fields.String()
    created_at = fields.AwareDateTime()
    delivered_at = fields.AwareDateTime(allow_none=True)


class AlertSchema(Schema):
    id = fields.Integer()
    rule_id = fields.Integer()
    rule = fields.String()
    deployment_id = fields.Integer()
    model = fields.String()
    environment = fields.String()
    metric = fields.String()
    feature = fields.String()
    comparison = fields.String()
    threshold = fields.Float()
    for_windows = fields.Integer()
    severity = fields.String()
    state = fields.String(metadata={"enum": list(ALERT_STATES)})
    value = fields.Float(allow_none=True, metadata={"description": "latest value seen"})
    started_at = fields.AwareDateTime()
    resolved_at = fields.AwareDateTime(allow_none=True)
    acknowledged_at = fields.AwareDateTime(allow_none=True)
    acknowledged_by = fields.String(allow_none=True)
    first_window = fields.AwareDateTime()
    last_window = fields.AwareDateTime()
    notifications = fields.List(
        fields.Nested(AlertNotificationSchema), metadata={"description": "only on GET of one alert"}
    )


class AlertListArgs(PageArgs):
    state = fields.String(load_default=None, validate=validate.OneOf(ALERT_STATES))
    rule_id = fields.Integer(load_default=None)


AlertRulePage = page_schema(AlertRuleSchema, "AlertRulePage")
AlertPage = page_schema(AlertSchema, "AlertPage")


def _rule_response(rule: Any, status: int = 200) -> Response:
    return json_response(alert_rules.rule_body(rule), status, {"ETag": alert_rules.etag(rule)})


@blp.route("/<project>/alert-rules")
class AlertRules(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, AlertRulePage)
    def get(self, args: dict[str, Any], project: str) -> Response:
        """List the project's alert rules"""
        with platform().db.read() as session:
            page = alert_rules.list_rules(session, project, page_size=args["page_size"], page_token=args["page_token"])
            return json_response(
                {"items": [alert_rules.rule_body(r) for r in page.items], "next_page_token": page.next_page_token}
            )

    @requires(access.project_role("developer"))
    @blp.arguments(AlertRuleCreateSchema)
    @blp.response(201, AlertRuleSchema, headers={"ETag": {"schema": {"type": "string"}}})
    def post(self, body: dict[str, Any], project: str) -> Response:
        """Create an alert rule (422 names an unknown metric, channel, environment or model)"""
        with platform().db.write() as session:
            rule = alert_rules.create_rule(session, caller(), project, body, platform=platform())
            return _rule_response(rule, 201)


@blp.route("/<project>/alert-rules/<int:rule_id>")
class AlertRuleById(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, AlertRuleSchema, headers={"ETag": {"schema": {"type": "string"}}})
    def get(self, project: str, rule_id: int) -> Response:
        """Get an alert rule and its ETag"""
        with platform().db.read() as session:
            return _rule_response(alert_rules.get_rule(session, project, rule_id))

    @requires(access.project_role("developer"))
    @blp.arguments(AlertRuleUpdateSchema)
    @blp.doc(parameters=[IF_MATCH])
    @blp.response(200, AlertRuleSchema, headers={"ETag": {"schema": {"type": "string"}}})
    def patch(self, body: dict[str, Any], project: str, rule_id: int) -> Response:
        """Change an alert rule (If-Match: its ETag)"""
        with platform().db.write() as session:
            rule = alert_rules.update_rule(
                session, caller(), project, rule_id, body, if_match=request.headers.get("If-Match"), platform=platform()
            )
            return _rule_response(rule)

    @requires(access.project_role("developer"))
    @blp.doc(parameters=[IF_MATCH])
    @blp.response(204)
    def delete(self, project: str, rule_id: int) -> None:
        """Delete an alert rule with its alerts (idempotent; If-Match: its ETag)"""
        with platform().db.write() as session:
            alert_rules.delete_rule(
                session, caller(), project, rule_id, if_match=request.headers.get("If-Match"), platform=platform()
            )


@blp.route("/<project>/alerts")
class Alerts(MethodView):
    @requires(access.project_role("viewer"))
    @blp.arguments(AlertListArgs, location="query")
    @blp.response(200, AlertPage)
    def get(self, args: dict[str, Any], project: str) -> Response:
        """List the project's alerts, oldest first (?state=firing|resolved, ?rule_id=)"""
        with platform().db.read() as session:
            page = alerting.list_alerts(
                session,
                project,
                state=args["state"],
                rule_id=args["rule_id"],
                page_size=args["page_size"],
                page_token=args["page_token"],
            )
            return json_response(
                {"items": [alerting.alert_body(a) for a in page.items], "next_page_token": page.next_page_token}
            )


@blp.route("/<project>/alerts/<int:alert_id>")
class AlertById(MethodView):
    @requires(access.project_role("viewer"))
    @blp.response(200, AlertSchema)
    def get(self, project: str, alert_id: int) -> Response:
        """Get an alert with its notifications and their delivery status"""
        with platform().db.read() as session:
            return json_response(alerting.alert_body(*alerting.get_alert(session, project, alert_id)))


@blp.route("/<project>/alerts/<int:alert_id>/acknowledge")
class AlertAcknowledge(MethodView):
    @requires(access.project_role("developer"))
    @blp.response(200, AlertSchema)
    def post(self, project: str, alert_id: int) -> Response:
        """Acknowledge a firing alert (it keeps firing until the value comes back)"""
        with platform().db.write() as session:
            return json_response(
                alerting.alert_body(alerting.acknowledge(session, caller(), project, alert_id, platform=platform()))
            )
