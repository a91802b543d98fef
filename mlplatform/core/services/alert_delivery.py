"""Alert notifications: recorded in the change's transaction, delivered by a job after commit.

:func:`notify` writes one ``alert_notifications`` row per channel (``pending``) and enqueues
``deliver_alert_notification`` for it. The job (:func:`deliver_notification`) sends the
alert through the configured channel of that name and records ``delivered`` or ``failed``
with the error. Retrying a delivery is the channel's business (webhook, slack); the job
never raises for a failed delivery, so the job queue does not send it again. A notification
that is no longer ``pending`` is not sent again (a job delivered twice is a no-op).

Channels are instantiated once per platform and name (``alert_channels`` in the config)
through ``Platform.shared``, and closed with the platform.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mlplatform.core.backends import Alert as AlertMessage
from mlplatform.core.backends import AlertChannel
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Project
from mlplatform.core.db.monitoring import Alert, AlertNotification
from mlplatform.core.errors import ConfigError, MLPlatformError

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.alerts")

DELIVER_JOB = "deliver_alert_notification"
MAX_ERROR_LENGTH = 2000


def configured_channels(platform: Platform) -> list[str]:
    """The names of the channels in the config's ``alert_channels``, in order."""
    return [item["name"] for item in platform.config["alert_channels"]]


def channel(platform: Platform, name: str) -> AlertChannel:
    """The channel named ``name`` in ``alert_channels``, built on first use and then reused.

    Raises ``ConfigError`` when no channel has that name (the config changed since the rule
    was written) or when the backend cannot start.
    """
    for index, item in enumerate(platform.config["alert_channels"]):
        if item["name"] == name:
            build = functools.partial(
                platform.backend, "alert_channel", item["backend"], item["options"], f"alert_channels.{index}"
            )
            backend = platform.shared(f"alert_channel:{name}", build)
            assert isinstance(backend, AlertChannel)
            return backend
    raise ConfigError(
        "alert_channels",
        f"no alert channel is named {name!r}; configured: {', '.join(configured_channels(platform)) or 'none'}",
    )


def notify(
    session: Session, platform: Platform, alert: Alert, channels: Iterable[str], event: str, *, project: str
) -> list[int]:
    """Record a pending notification of ``event`` per channel and enqueue its delivery.

    Runs in the caller's transaction; the jobs start only after it commits. Returns the
    notification ids.
    """
    ids = []
    for name in channels:
        notification = AlertNotification(alert_id=alert.id, channel=name, event=event, status="pending", error="")
        session.add(notification)
        session.flush()
        platform.jobs.enqueue(session, DELIVER_JOB, {"notification_id": notification.id}, project=project)
        ids.append(notification.id)
    return ids


def deliver_notification(platform: Platform, notification_id: int) -> str:
    """Job handler: send one pending notification and record the outcome.

    Returns the final status (``delivered``, ``failed``, or the status it already had).
    Never raises for a failed delivery; a database error propagates so the job is retried.
    """
    with platform.db.read() as session:
        found = session.execute(
            select(AlertNotification, Alert, Project.name)
            .join(Alert, Alert.id == AlertNotification.alert_id)
            .join(Project, Project.id == Alert.project_id)
            .where(AlertNotification.id == notification_id)
        ).first()
        if found is None:
            return "gone"  # the alert or its rule was deleted since
        notification, alert, project = found
        if notification.status != "pending":
            return notification.status
        message = message_for(alert, notification.event, project)
        channel_name = notification.channel
    # No transaction stays open while the channel talks to the outside world.
    status, error = "delivered", ""
    try:
        channel(platform, channel_name).send(message)
    except MLPlatformError as exc:
        status, error = "failed", exc.message
    except Exception as exc:  # noqa: BLE001 - a broken channel plugin is recorded, not raised into the queue
        log.exception("alert channel %r raised while sending alert %s", channel_name, message.alert_id)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    if status == "failed":
        log.warning(
            "alert %s: %s notification through %r failed: %s", message.alert_id, message.state, channel_name, error
        )
    with platform.db.write() as session:
        session.execute(
            update(AlertNotification)
            .where(AlertNotification.id == notification_id, AlertNotification.status == "pending")
            .values(
                status=status, error=error[:MAX_ERROR_LENGTH], delivered_at=utcnow() if status == "delivered" else None
            )
        )
    return status


def message_for(alert: Alert, event: str, project: str) -> AlertMessage:
    """The channel's view of ``alert`` for ``event`` (``firing`` or ``resolved``)."""
    d: dict[str, Any] = alert.details or {}
    value = d.get("resolved_value") if event == "resolved" else d.get("fired_value")
    target = f"{d.get('model')}/{d.get('environment')}"
    series = f"{d.get('metric')}[{alert.feature}]" if alert.feature else str(d.get("metric"))
    condition = f"{d.get('comparison')} {d.get('threshold')}"
    if event == "resolved":
        text = f"{series} on {target} is back to {value} (rule: {condition})"
    else:
        windows = d.get("for_windows", 1)
        text = f"{series} on {target} is {value}, {condition} for {windows} window{'s' if windows != 1 else ''}"
    return AlertMessage(
        title=f"{d.get('rule')}: {series} {condition} on {target}",
        severity=str(d.get("severity", "warning")),
        state=event,
        project=project,
        message=text,
        labels={
            "rule": str(d.get("rule")),
            "model": str(d.get("model")),
            "environment": str(d.get("environment")),
            "metric": str(d.get("metric")),
            "feature": alert.feature,
        },
        values={
            "value": value,
            "threshold": d.get("threshold"),
            "window_start": d.get("resolved_window" if event == "resolved" else "first_window"),
        },
        alert_id=alert.id,
        occurred_at=alert.resolved_at if event == "resolved" else alert.started_at,
    )
