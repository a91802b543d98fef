"""Monitoring pages: every live deployment with its latest window and firing alerts, and one
deployment's drift heat map, line charts, latest-window quality and alerts (acknowledge).

Everything is read from ``services/monitoring.py`` (the latest window), ``services/timeseries.py``
(the series behind the heat map and the charts) and ``services/alerting.py`` (alerts), in one
read transaction per page. The alert-rule editor lives in ``alert_rule_pages.py``.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for

from api.portal import monitoring_data as data
from api.portal.forms import FLASH_OK, done
from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.db.monitoring import OVERALL
from mlplatform.core.services import access, alerting
from mlplatform.core.services import deployments as deployment_service
from mlplatform.core.services import monitoring as monitoring_service

MAX_ALERTS = 500
RESOLVED_SHOWN = 10


def _alerts(session: Any, project: str) -> list[Any]:
    """The project's alerts, newest first."""
    return list(reversed(alerting.list_alerts(session, project, page_size=MAX_ALERTS).items))


@bp.route("/projects/<project>/monitoring")
@requires(access.project_role("viewer"))
def monitoring(project: str) -> Any:
    """Every live deployment with its latest window, and the project's firing alerts."""
    with platform().db.read() as session:
        views = [v for v in deployment_service.list_deployments(session, project) if v.deployment.status != "retired"]
        latest = {
            v.deployment.id: monitoring_service.summary(session, project, v.model, v.deployment.environment)
            for v in views
        }
        alerts = _alerts(session, project)
    names = {v.deployment.id: (v.model, v.deployment.environment) for v in views}
    return render_template(
        "portal/monitoring.html",
        views=views,
        latest=latest,
        names=names,
        firing=[a for a in alerts if a.state == "firing"],
        recent=[a for a in alerts if a.state != "firing"][:RESOLVED_SHOWN],
    )


@bp.route("/projects/<project>/models/<model>/deployments/<environment>/monitoring")
@requires(access.project_role("viewer"))
def monitoring_deployment(project: str, model: str, environment: str) -> Any:
    """One deployment: drift heat map and charts over ``?range=``, quality of the latest window, alerts."""
    metrics = data.drift_metrics(platform())
    chosen = next((m for m in metrics if m.name == request.args.get("metric")), metrics[0] if metrics else None)
    asked = request.args.get("range", "")
    range_name = asked if asked in data.RANGES else data.DEFAULT_RANGE
    with platform().db.read() as session:
        view = deployment_service.get_deployment(session, project, model, environment, events=0)
        summary = monitoring_service.summary(session, project, model, environment)
        span = data.span(session, platform(), view.deployment.id, range_name)
        heat = data.heat_map(session, platform(), view.deployment.id, span, chosen) if chosen else None
        charts = data.chart_config(session, platform(), view.deployment.id, span, chosen) if chosen else None
        alerts = [a for a in _alerts(session, project) if a.deployment_id == view.deployment.id]
    return render_template(
        "portal/monitoring_deployment.html",
        view=view,
        model_name=model,
        environment=environment,
        summary=summary,
        heat=heat,
        charts=charts,
        span=span,
        metrics=metrics,
        metric=chosen,
        ranges=list(data.RANGES),
        range_name=range_name,
        firing=[a for a in alerts if a.state == "firing"],
        resolved=[a for a in alerts if a.state != "firing"][:RESOLVED_SHOWN],
        overall=OVERALL,
    )


@bp.route("/projects/<project>/alerts/<int:alert_id>/acknowledge", methods=["POST"])
@requires(access.project_role("developer"))
def acknowledge_alert(project: str, alert_id: int) -> Any:
    """Mark a firing alert as seen; it keeps firing until the value comes back."""
    with platform().db.write() as session:
        alert = alerting.acknowledge(session, g.identity, project, alert_id, platform=platform())
        rule = (alert.details or {}).get("rule") or f"alert {alert_id}"
    target = request.form.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        flash(f"Acknowledged {rule}.", FLASH_OK)
        return redirect(target)
    return done(f"Acknowledged {rule}.", "portal.monitoring", project=project)


def alert_target(alert: Any) -> str | None:
    """The monitoring page of the deployment an alert is about (from its details)."""
    details = alert.details or {}
    if not details.get("model") or not details.get("environment"):
        return None
    return url_for(
        "portal.monitoring_deployment",
        project=g.project.name,
        model=details["model"],
        environment=details["environment"],
    )


@bp.app_template_global("alert_target")
def _alert_target(alert: Any) -> str | None:
    return alert_target(alert)
