"""Alerts: rules evaluated against each computed window, and the alerts they raise.

The monitoring job calls :func:`evaluate_window` inside its own transaction once a window's
``monitor_points`` are written. For each enabled rule of the deployment's project whose
model and environment filters match, and for each feature the rule watches (one, or any):

- the window's value is the *worst* of the window's points for that series (several
  versions may serve one deployment): the largest for ``>``/``>=``, the smallest for
  ``<``/``<=``. A series without a finite value in the window has no data and changes nothing;
- breaching, with no open alert: the rule fires when the previous ``for_windows - 1``
  points of the series (looking back through ``monitor_points``; windows without data are
  skipped, not counted) breach too. One ``alerts`` row, state ``firing``;
- breaching, already firing: the alert's latest value is updated; nothing is sent again;
- not breaching, firing: the alert resolves.

Firing and resolving are audited (``alert.fire``, ``alert.resolve``) and write one
``alert_notifications`` row per channel of the rule (``pending``); a
``deliver_alert_notification`` job per row sends it after commit (``alert_delivery``).
Evaluating a window older than the deployment's latest window does nothing: a recompute of
the past must not resolve or raise what the newer windows decided.

Acknowledging marks a firing alert as seen (``alert.acknowledge``); it keeps firing until
the value comes back.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.models import Project
from mlplatform.core.db.monitoring import ALERT_STATES, Alert, AlertNotification, AlertRule, MonitorPoint
from mlplatform.core.db.registry import RegisteredModel
from mlplatform.core.errors import Conflict, NotFound
from mlplatform.core.monitoring.quality import PREDICTION_QUANTILES
from mlplatform.core.services import alert_delivery, audit
from mlplatform.core.services.access import get_project
from mlplatform.core.services.pagination import Page, paginate

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

#: Metric names the monitoring job writes to ``monitor_points`` besides the drift metrics
#: (every registered ``drift_metric`` backend writes under its own name). Alert rules and
#: time-series queries accept these and :func:`known_metrics` adds the drift metrics.
# The figures a monitoring window writes (see mlplatform.core.monitoring.quality,
# performance and analysis); drift metrics add ``<m>``, ``<m>_drifted`` and ``<m>_statistic``.
KNOWN_METRICS: tuple[str, ...] = (
    "row_count",
    "labeled_count",
    "missing_rate",
    "schema_violation_rate",
    "type_violation_rate",
    "null_violation_rate",
    "unknown_feature_rate",
    "out_of_range_rate",
    "unseen_category_rate",
    "unseen_categories",
    "mean",
    "latency_p50",
    "latency_p99",
    "error_rate",
    "accuracy",
    "f1",
    "mae",
    "rmse",
    "prediction_mean",
    "prediction_std",
    *(f"prediction_{q}" for q in PREDICTION_QUANTILES),
    "prediction_share",
    "prediction_missing_rate",
    "drifted",
    "drifted_features",
    "drift_share",
)

ACTOR = "system:alerting"

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def known_metrics(platform: Platform) -> list[str]:
    """Every metric name a rule or a query may name: :data:`KNOWN_METRICS` and the drift metrics."""
    drift = platform.pm.backends.names("drift_metric")
    return sorted({*KNOWN_METRICS, *drift, *(f"{m}_drifted" for m in drift), *(f"{m}_statistic" for m in drift)})


@dataclass(frozen=True)
class AlertChange:
    """What one evaluation did to one alert: ``fired`` or ``resolved``."""

    alert_id: int
    rule_id: int
    feature: str
    event: str
    value: float


# --- evaluation ---------------------------------------------------------------------------


def evaluate_window(
    session: Session, platform: Platform, deployment_id: int, window_start: dt.datetime
) -> list[AlertChange]:
    """Evaluate every matching rule on the deployment's window starting at ``window_start``.

    Runs in the caller's transaction and only writes there; notifications leave after it
    commits, and a failed delivery is recorded on its notification, never raised here.
    Returns the alerts that fired or resolved. Raises nothing of its own for a deployment
    that no longer exists (returns ``[]``).
    """
    found = session.execute(
        select(Deployment, RegisteredModel.name, Project.name)
        .join(RegisteredModel, RegisteredModel.id == Deployment.model_id)
        .join(Project, Project.id == Deployment.project_id)
        .where(Deployment.id == deployment_id)
    ).first()
    if found is None:
        return []
    deployment, model, project = found
    rules = _matching_rules(session, deployment, model)
    if not rules or _newer_window_exists(session, deployment_id, window_start):
        return []
    current = _window_values(session, deployment_id, window_start, {rule.metric for rule in rules})
    open_alerts = {
        (alert.rule_id, alert.feature): alert
        for alert in session.scalars(
            select(Alert).where(
                Alert.deployment_id == deployment_id,
                Alert.rule_id.in_([rule.id for rule in rules]),
                Alert.state == "firing",
            )
        )
    }
    context = _Context(session, platform, deployment, model, project, window_start)
    changes: list[AlertChange] = []
    for rule in rules:
        for feature, values in sorted(current.get(rule.metric, {}).items()):
            if rule.feature is not None and feature != rule.feature:
                continue
            value = worst(values, rule.comparison)
            alert = open_alerts.get((rule.id, feature))
            breached = COMPARE[rule.comparison](value, rule.threshold)
            if breached and alert is not None:
                alert.value = value
                alert.details = {**alert.details, "last_window": window_start.isoformat(), "last_value": value}
            elif breached and _streak(session, deployment_id, rule, feature, window_start):
                changes.append(context.fire(rule, feature, value))
            elif not breached and alert is not None:
                changes.append(context.resolve(rule, alert, value))
    return changes


def worst(values: Iterable[float], comparison: str) -> float:
    """The value of a window with several points: the one closest to breaching ``comparison``."""
    return max(values) if comparison in (">", ">=") else min(values)


def _matching_rules(session: Session, deployment: Deployment, model: str) -> list[AlertRule]:
    query = (
        select(AlertRule)
        .where(
            AlertRule.project_id == deployment.project_id,
            AlertRule.enabled.is_(True),
            (AlertRule.model.is_(None)) | (AlertRule.model == model),
            (AlertRule.environment.is_(None)) | (AlertRule.environment == deployment.environment),
        )
        .order_by(AlertRule.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Two window jobs of one deployment must not both see "no open alert" and both fire.
        # (SQLite write transactions begin IMMEDIATE, which serialises them already.)
        query = query.with_for_update()
    return list(session.scalars(query))


def _newer_window_exists(session: Session, deployment_id: int, window_start: dt.datetime) -> bool:
    latest = session.scalar(
        select(func.max(MonitorPoint.window_start)).where(MonitorPoint.deployment_id == deployment_id)
    )
    return latest is not None and latest > window_start


def _finite(session: Session) -> list[ColumnElement[bool]]:
    """Conditions keeping points with a number: NULL everywhere, and NaN on PostgreSQL (SQLite stores NaN as NULL)."""
    conditions: list[ColumnElement[bool]] = [MonitorPoint.value.is_not(None)]
    if session.get_bind().dialect.name == "postgresql":
        conditions.append(MonitorPoint.value != float("nan"))  # PostgreSQL: NaN = NaN, so this drops them
    return conditions


def _window_values(
    session: Session, deployment_id: int, window_start: dt.datetime, metrics: set[str]
) -> dict[str, dict[str, list[float]]]:
    """metric -> feature -> the window's finite values (one per version that wrote one)."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rows = session.execute(
        select(MonitorPoint.metric, MonitorPoint.feature, MonitorPoint.value).where(
            MonitorPoint.deployment_id == deployment_id,
            MonitorPoint.window_start == window_start,
            MonitorPoint.metric.in_(sorted(metrics)),
            *_finite(session),
        )
    )
    for metric, feature, value in rows:
        if value is not None and math.isfinite(value):
            values[metric][feature].append(value)
    return values


def _streak(session: Session, deployment_id: int, rule: AlertRule, feature: str, window_start: dt.datetime) -> bool:
    """Whether the ``for_windows - 1`` windows with data before ``window_start`` all breached."""
    needed = rule.for_windows - 1
    if needed <= 0:
        return True
    series = (
        MonitorPoint.deployment_id == deployment_id,
        MonitorPoint.metric == rule.metric,
        MonitorPoint.feature == feature,
        MonitorPoint.window_start < window_start,
        *_finite(session),
    )
    previous = (
        select(MonitorPoint.window_start)
        .where(*series)
        .distinct()
        .order_by(MonitorPoint.window_start.desc())
        .limit(needed)
    ).subquery()
    by_window: dict[dt.datetime, list[float]] = defaultdict(list)
    for start, value in session.execute(
        select(MonitorPoint.window_start, MonitorPoint.value).where(
            *series, MonitorPoint.window_start.in_(select(previous.c.window_start))
        )
    ):
        if value is not None and math.isfinite(value):
            by_window[start].append(value)
    if len(by_window) < needed:  # fewer windows with data than needed, or one held only non-finite values
        return False
    return all(
        COMPARE[rule.comparison](worst(values, rule.comparison), rule.threshold) for values in by_window.values()
    )


@dataclass
class _Context:
    """One evaluation: where it runs and what it writes for a firing or resolving alert."""

    session: Session
    platform: Platform
    deployment: Deployment
    model: str
    project: str
    window_start: dt.datetime

    def fire(self, rule: AlertRule, feature: str, value: float) -> AlertChange:
        window = self.window_start.isoformat()
        alert = Alert(
            project_id=self.deployment.project_id,
            rule_id=rule.id,
            deployment_id=self.deployment.id,
            feature=feature,
            state="firing",
            value=value,
            started_at=utcnow(),
            # A snapshot of what fired: the rule may be edited later, the alert's story may not.
            details={
                "rule": rule.name,
                "metric": rule.metric,
                "comparison": rule.comparison,
                "threshold": rule.threshold,
                "for_windows": rule.for_windows,
                "severity": rule.severity,
                "model": self.model,
                "environment": self.deployment.environment,
                "first_window": window,
                "last_window": window,
                "fired_value": value,
                "last_value": value,
            },
        )
        self.session.add(alert)
        self.session.flush()
        self._record(alert, "alert.fire", value)
        alert_delivery.notify(self.session, self.platform, alert, rule.channels, "firing", project=self.project)
        return AlertChange(alert.id, rule.id, feature, "fired", value)

    def resolve(self, rule: AlertRule, alert: Alert, value: float) -> AlertChange:
        alert.state = "resolved"
        alert.value = value
        alert.resolved_at = utcnow()
        alert.details = {
            **alert.details,
            "resolved_window": self.window_start.isoformat(),
            "resolved_value": value,
            "last_value": value,
        }
        self._record(alert, "alert.resolve", value)
        alert_delivery.notify(self.session, self.platform, alert, rule.channels, "resolved", project=self.project)
        return AlertChange(alert.id, rule.id, alert.feature, "resolved", value)

    def _record(self, alert: Alert, action: str, value: float) -> None:
        details = alert.details
        audit.record(
            self.session,
            actor=ACTOR,
            action=action,
            resource_type="alert",
            resource_id=alert.id,
            project=self.project,
            platform=self.platform,
            summary={
                "rule": details["rule"],
                "model": self.model,
                "environment": self.deployment.environment,
                "metric": details["metric"],
                "feature": alert.feature,
                "value": value,
                "threshold": details["threshold"],
                "window_start": self.window_start.isoformat(),
            },
        )


# --- reading and acknowledging ------------------------------------------------------------


def list_alerts(
    session: Session,
    project: str,
    *,
    state: str | None = None,
    rule_id: int | None = None,
    page_size: int = 100,
    page_token: str | None = None,
) -> Page[Alert]:
    """The project's alerts, oldest first, optionally only those in ``state`` or of one rule."""
    if state is not None and state not in ALERT_STATES:
        raise ValueError(f"unknown alert state {state!r}")
    query = select(Alert).where(Alert.project_id == get_project(session, project).id)
    if state is not None:
        query = query.where(Alert.state == state)
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    return paginate(session, query, Alert.id, page_size, page_token)


def get_alert(session: Session, project: str, alert_id: int) -> tuple[Alert, list[AlertNotification]]:
    """An alert of the project with its notifications (oldest first); ``NotFound`` otherwise."""
    alert = _alert_in(session, project, alert_id)
    notifications = list(
        session.scalars(
            select(AlertNotification).where(AlertNotification.alert_id == alert.id).order_by(AlertNotification.id)
        )
    )
    return alert, notifications


def acknowledge(session: Session, identity: Identity, project: str, alert_id: int, *, platform: Platform) -> Alert:
    """Mark a firing alert as seen by ``identity``; it keeps firing until the value comes back.

    Acknowledging it again returns it unchanged. Raises ``NotFound``, and ``Conflict`` for
    an alert that has already resolved.
    """
    alert = _alert_in(session, project, alert_id, lock=True)
    if alert.acknowledged_at is not None:
        return alert
    if alert.state != "firing":
        raise Conflict(f"alert {alert_id} has already resolved; only a firing alert can be acknowledged")
    alert.acknowledged_at = utcnow()
    alert.acknowledged_by = identity.username
    audit.record(
        session,
        actor=identity.username,
        action="alert.acknowledge",
        resource_type="alert",
        resource_id=alert.id,
        project=project,
        platform=platform,
        summary={"rule": alert.details.get("rule"), "feature": alert.feature},
    )
    return alert


def _alert_in(session: Session, project: str, alert_id: int, *, lock: bool = False) -> Alert:
    query = select(Alert).where(Alert.id == alert_id, Alert.project_id == get_project(session, project).id)
    alert = session.scalar(query.with_for_update() if lock else query)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist in project {project!r}")
    return alert


def alert_body(alert: Alert, notifications: list[AlertNotification] | None = None) -> dict[str, Any]:
    """The wire form of an alert (and its notifications, when given)."""
    details = alert.details or {}
    body: dict[str, Any] = {
        "id": alert.id,
        "rule_id": alert.rule_id,
        "rule": details.get("rule"),
        "deployment_id": alert.deployment_id,
        "model": details.get("model"),
        "environment": details.get("environment"),
        "metric": details.get("metric"),
        "feature": alert.feature,
        "comparison": details.get("comparison"),
        "threshold": details.get("threshold"),
        "for_windows": details.get("for_windows"),
        "severity": details.get("severity"),
        "state": alert.state,
        "value": alert.value,
        "started_at": _iso(alert.started_at),
        "resolved_at": _iso(alert.resolved_at),
        "acknowledged_at": _iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "first_window": details.get("first_window"),
        "last_window": details.get("last_window"),
    }
    if notifications is not None:
        body["notifications"] = [
            {
                "id": n.id,
                "channel": n.channel,
                "event": n.event,
                "status": n.status,
                "error": n.error,
                "created_at": _iso(n.created_at),
                "delivered_at": _iso(n.delivered_at),
            }
            for n in notifications
        ]
    return body


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()
