"""The alert-rule editor: list, create, edit and delete a project's rules.

The form's fields are read here (a number that is not a number is refused beside its
field); the names a rule refers to (metric, channels, environment, model) are checked by
``services/alert_rules.py`` like the API's, and its per-field errors are shown inline. An
edit carries the revision it started from, sent as ``If-Match``: a rule changed meanwhile
is refused (412) instead of overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import g, render_template, request
from werkzeug.datastructures import MultiDict

from api.portal.forms import FormErrors, done
from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.db.monitoring import COMPARISONS, SEVERITIES
from mlplatform.core.errors import InvalidInput, MLPlatformError
from mlplatform.core.services import access, alert_rules
from mlplatform.core.services import registry as registry_service
from mlplatform.core.services.alert_delivery import configured_channels
from mlplatform.core.services.alerting import known_metrics

SCOPES = (
    ("any", "Any feature"),
    ("overall", "The whole window (row_count, latency, error_rate…)"),
    ("one", "One feature"),
)
MAX_RULES = 500


@dataclass
class RuleForm:
    """The editor's fields as typed (strings), and the rule body they make."""

    values: dict[str, Any]

    @classmethod
    def blank(cls) -> RuleForm:
        return cls(
            {
                "name": "",
                "metric": "psi",
                "scope": "any",
                "feature": "",
                "comparison": ">",
                "threshold": "",
                "for_windows": "1",
                "severity": "warning",
                "model": "",
                "environment": "",
                "channels": [],
                "enabled": True,
                "revision": "",
            }
        )

    @classmethod
    def from_rule(cls, rule: Any) -> RuleForm:
        scope = "any" if rule.feature is None else "overall" if rule.feature == "" else "one"
        return cls(
            {
                "name": rule.name,
                "metric": rule.metric,
                "scope": scope,
                "feature": rule.feature or "",
                "comparison": rule.comparison,
                "threshold": f"{rule.threshold:g}",
                "for_windows": str(rule.for_windows),
                "severity": rule.severity,
                "model": rule.model or "",
                "environment": rule.environment or "",
                "channels": list(rule.channels or []),
                "enabled": rule.enabled,
                "revision": str(rule.revision),
            }
        )

    @classmethod
    def from_form(cls, form: MultiDict[str, str]) -> RuleForm:
        values: dict[str, Any] = {
            key: form.get(key, "").strip() for key in cls.blank().values if key not in ("channels", "enabled")
        }
        values["channels"] = form.getlist("channels")
        values["enabled"] = form.get("enabled") == "on"
        return cls(values)

    def body(self) -> dict[str, Any]:
        """The service's rule fields; ``InvalidInput`` naming every field the form got wrong."""
        v, problems = self.values, {}
        if not v["name"]:
            problems["name"] = ["required"]
        try:
            threshold = float(v["threshold"])
            if threshold != threshold or threshold in (float("inf"), float("-inf")):
                raise ValueError
        except ValueError:
            problems["threshold"] = ["a number, e.g. 0.2"]
            threshold = 0.0
        windows = int(v["for_windows"]) if v["for_windows"].isdigit() else 0
        if not 1 <= windows <= 1000:
            problems["for_windows"] = ["a whole number from 1 to 1000"]
        if v["scope"] == "one" and not v["feature"]:
            problems["feature"] = ["name the feature, or choose another scope"]
        if problems:
            raise InvalidInput("check the highlighted fields", errors=problems)
        feature = None if v["scope"] == "any" else "" if v["scope"] == "overall" else v["feature"]
        return {
            "name": v["name"],
            "metric": v["metric"],
            "feature": feature,
            "comparison": v["comparison"],
            "threshold": threshold,
            "for_windows": windows,
            "severity": v["severity"],
            "model": v["model"] or None,
            "environment": v["environment"] or None,
            "channels": v["channels"],
            "enabled": v["enabled"],
        }


def _choices() -> dict[str, Any]:
    with platform().db.read() as session:
        models = [m.model.name for m in registry_service.list_models(session, g.project.name, page_size=200).items]
    return {
        "metric_names": known_metrics(platform()),
        "comparisons": COMPARISONS,
        "severities": SEVERITIES,
        "scopes": SCOPES,
        "channel_names": configured_channels(platform()),
        "environment_names": [e["name"] for e in platform().environments],
        "model_names": models,
    }


def _rules_page(form: RuleForm | None = None, errors: FormErrors | None = None) -> tuple[str, int]:
    with platform().db.read() as session:
        rules = alert_rules.list_rules(session, g.project.name, page_size=MAX_RULES).items
    body = render_template(
        "portal/alert_rules.html",
        rules=rules,
        form=(form or RuleForm.blank()).values,
        errors=errors,
        editing=None,
        **_choices(),
    )
    return body, errors.status if errors else 200


def _edit_page(rule: Any, form: RuleForm | None = None, errors: FormErrors | None = None) -> tuple[str, int]:
    body = render_template(
        "portal/alert_rule.html",
        rule=rule,
        form=(form or RuleForm.from_rule(rule)).values,
        errors=errors,
        editing=rule,
        **_choices(),
    )
    return body, errors.status if errors else 200


def _refused(exc: MLPlatformError) -> FormErrors:
    errors = FormErrors.from_error(exc)
    if "already exists" in exc.message:
        errors.fields.setdefault("name", [exc.message])
    return errors


@bp.route("/projects/<project>/alert-rules")
@requires(access.project_role("viewer"))
def alert_rules_page(project: str) -> Any:
    """The project's alert rules and the form to add one."""
    return _rules_page()


@bp.route("/projects/<project>/alert-rules", methods=["POST"])
@requires(access.project_role("developer"))
def create_alert_rule(project: str) -> Any:
    """Create a rule; what is wrong is shown beside its field."""
    form = RuleForm.from_form(request.form)
    try:
        body = form.body()
        with platform().db.write() as session:
            rule = alert_rules.create_rule(session, g.identity, project, body, platform=platform())
            name = rule.name
    except MLPlatformError as exc:
        return _rules_page(form, _refused(exc))
    return done(f"Alert rule {name} created.", "portal.alert_rules_page", project=project)


@bp.route("/projects/<project>/alert-rules/<int:rule_id>")
@requires(access.project_role("viewer"))
def alert_rule(project: str, rule_id: int) -> Any:
    """One rule in the editor."""
    with platform().db.read() as session:
        rule = alert_rules.get_rule(session, project, rule_id)
    return _edit_page(rule)


@bp.route("/projects/<project>/alert-rules/<int:rule_id>", methods=["POST"])
@requires(access.project_role("developer"))
def update_alert_rule(project: str, rule_id: int) -> Any:
    """Save an edited rule (refused if it changed since the form was opened)."""
    form = RuleForm.from_form(request.form)
    if_match = f'"{form.values["revision"]}"' if form.values["revision"] else None
    try:
        body = form.body()
        with platform().db.write() as session:
            alert_rules.update_rule(session, g.identity, project, rule_id, body, if_match=if_match, platform=platform())
    except MLPlatformError as exc:
        with platform().db.read() as session:
            rule = alert_rules.get_rule(session, project, rule_id)
        return _edit_page(rule, form, _refused(exc))
    return done(f"Alert rule {form.values['name']} saved.", "portal.alert_rules_page", project=project)


@bp.route("/projects/<project>/alert-rules/<int:rule_id>/delete", methods=["POST"])
@requires(access.project_role("developer"))
def delete_alert_rule(project: str, rule_id: int) -> Any:
    """Delete a rule with its alerts (nothing happens if it is already gone)."""
    with platform().db.write() as session:
        alert_rules.delete_rule(session, g.identity, project, rule_id, platform=platform())
    return done("Alert rule deleted.", "portal.alert_rules_page", project=project)
