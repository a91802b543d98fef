"""Alert rules of a project: create, read, update, delete, each change audited.

A rule watches one metric (:func:`alerting.known_metrics`) on one feature or on any
(``feature`` None; ``""`` is the whole-window series such as ``row_count``), of every model
and environment of the project or only the ones named, and fires when ``value <comparison>
threshold`` holds for ``for_windows`` consecutive windows with data. ``channels`` name
entries of the config's ``alert_channels``.

``revision`` is the ETag: every update bumps it, and ``If-Match`` (when sent) must name the
current one or the change is refused with ``PreconditionFailed`` (412).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.monitoring import COMPARISONS, SEVERITIES, AlertRule
from mlplatform.core.db.registry import RegisteredModel
from mlplatform.core.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from mlplatform.core.services import audit
from mlplatform.core.services.access import get_project
from mlplatform.core.services.alert_delivery import configured_channels
from mlplatform.core.services.alerting import known_metrics
from mlplatform.core.services.pagination import Page, paginate

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

#: Fields a client may set; the rest (id, revision, timestamps, author) are the server's.
FIELDS = (
    "name",
    "model",
    "environment",
    "metric",
    "feature",
    "comparison",
    "threshold",
    "for_windows",
    "severity",
    "channels",
    "enabled",
)
DEFAULTS: dict[str, Any] = {
    "model": None,
    "environment": None,
    "feature": None,
    "for_windows": 1,
    "severity": "warning",
    "channels": [],
    "enabled": True,
}


def etag(rule: AlertRule) -> str:
    return f'"{rule.revision}"'


def check_if_match(rule: AlertRule | None, if_match: str | None) -> None:
    """Raise ``PreconditionFailed`` unless ``If-Match`` (if sent) names the rule's current ETag."""
    if if_match is None:
        return
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in if_match.split(",") if tag.strip()}
    if rule is not None and ("*" in tags or str(rule.revision) in tags):
        return
    current = etag(rule) if rule is not None else "none (it does not exist)"
    raise PreconditionFailed(f"the alert rule changed: its ETag is {current}, If-Match sent {if_match}; read it again")


def validate(session: Session, platform: Platform, project_id: int, rule: Mapping[str, Any]) -> None:
    """Check what a schema cannot: the names a rule refers to. ``Unprocessable`` names the field."""
    metrics = known_metrics(platform)
    if rule["metric"] not in metrics:
        raise Unprocessable(
            f"unknown metric {rule['metric']!r}",
            errors={"metric": [f"unknown metric {rule['metric']!r}; known: {', '.join(metrics)}"]},
        )
    channels = configured_channels(platform)
    unknown = [name for name in rule["channels"] if name not in channels]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise Unprocessable(
            f"unknown alert channel {listed}",
            errors={"channels": [f"unknown alert channel {listed}; configured: {', '.join(channels) or 'none'}"]},
        )
    if len(set(rule["channels"])) != len(rule["channels"]):
        raise Unprocessable("a channel is named twice", errors={"channels": ["names a channel twice"]})
    for field, allowed in (("comparison", COMPARISONS), ("severity", SEVERITIES)):
        if rule[field] not in allowed:
            raise Unprocessable(
                f"bad {field} {rule[field]!r}", errors={field: [f"must be one of: {', '.join(allowed)}"]}
            )
    environments = [env["name"] for env in platform.environments]
    if rule["environment"] is not None and rule["environment"] not in environments:
        raise Unprocessable(
            f"unknown environment {rule['environment']!r}",
            errors={
                "environment": [
                    f"unknown environment {rule['environment']!r}; configured: {', '.join(environments) or 'none'}"
                ]
            },
        )
    if (
        rule["model"] is not None
        and session.scalar(
            select(RegisteredModel.id).where(
                RegisteredModel.project_id == project_id, RegisteredModel.name == rule["model"]
            )
        )
        is None
    ):
        raise Unprocessable(
            f"model {rule['model']!r} does not exist in this project",
            errors={"model": [f"no model {rule['model']!r} in this project"]},
        )


def list_rules(
    session: Session, project: str, *, page_size: int = 100, page_token: str | None = None
) -> Page[AlertRule]:
    query = select(AlertRule).where(AlertRule.project_id == get_project(session, project).id)
    return paginate(session, query, AlertRule.id, page_size, page_token)


def get_rule(session: Session, project: str, rule_id: int, *, lock: bool = False) -> AlertRule:
    rule = _find(session, get_project(session, project).id, rule_id, lock=lock)
    if rule is None:
        raise NotFound(f"alert rule {rule_id} does not exist in project {project!r}")
    return rule


def create_rule(
    session: Session, identity: Identity, project: str, body: Mapping[str, Any], *, platform: Platform
) -> AlertRule:
    """Create a rule from ``body`` (``FIELDS``; omitted ones take ``DEFAULTS``).

    Raises ``Unprocessable`` naming the field for an unknown metric, channel, environment or
    model, and ``Conflict`` when the project already has a rule of that name.
    """
    project_row = get_project(session, project)
    values = {**DEFAULTS, **{k: v for k, v in body.items() if k in FIELDS}}
    values["channels"] = list(values["channels"])
    validate(session, platform, project_row.id, values)
    _check_name_free(session, project_row.id, values["name"])
    now = utcnow()
    rule = AlertRule(
        project_id=project_row.id, revision=1, created_by=identity.username, created_at=now, updated_at=now, **values
    )
    session.add(rule)
    session.flush()
    _audit(session, identity, "alert_rule.create", rule, project, platform, {k: values[k] for k in FIELDS})
    return rule


def update_rule(
    session: Session,
    identity: Identity,
    project: str,
    rule_id: int,
    changes: Mapping[str, Any],
    *,
    if_match: str | None = None,
    platform: Platform,
) -> AlertRule:
    """Apply ``changes`` (a subset of ``FIELDS``) and bump the revision.

    Raises ``NotFound``, ``PreconditionFailed``, ``Unprocessable`` and ``Conflict`` as
    :func:`create_rule`. A change that changes nothing keeps the revision.
    """
    rule = get_rule(session, project, rule_id, lock=True)
    check_if_match(rule, if_match)
    current = {k: getattr(rule, k) for k in FIELDS}
    merged = {**current, **{k: v for k, v in changes.items() if k in FIELDS}}
    merged["channels"] = list(merged["channels"])
    changed = {k: merged[k] for k in FIELDS if merged[k] != current[k]}
    if not changed:
        return rule
    validate(session, platform, rule.project_id, merged)
    if "name" in changed:
        _check_name_free(session, rule.project_id, merged["name"])
    for key, value in changed.items():
        setattr(rule, key, value)
    rule.revision += 1
    rule.updated_at = utcnow()
    session.flush()
    _audit(session, identity, "alert_rule.update", rule, project, platform, {"changes": changed})
    return rule


def delete_rule(
    session: Session, identity: Identity, project: str, rule_id: int, *, if_match: str | None = None, platform: Platform
) -> None:
    """Delete a rule and, with it, its alerts and their notifications.

    Idempotent: deleting a rule that does not exist does nothing, unless ``If-Match`` was
    sent (``PreconditionFailed``: the client expected a rule that is gone).
    """
    rule = _find(session, get_project(session, project).id, rule_id, lock=True)
    check_if_match(rule, if_match)
    if rule is None:
        return
    summary = {"name": rule.name, "metric": rule.metric}
    _audit(session, identity, "alert_rule.delete", rule, project, platform, summary)
    session.delete(rule)
    session.flush()


def rule_body(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        **{k: getattr(rule, k) for k in FIELDS},
        "revision": rule.revision,
        "created_at": rule.created_at.isoformat(),
        "created_by": rule.created_by,
        "updated_at": rule.updated_at.isoformat(),
    }


def _find(session: Session, project_id: int, rule_id: int, *, lock: bool) -> AlertRule | None:
    query = select(AlertRule).where(AlertRule.id == rule_id, AlertRule.project_id == project_id)
    return session.scalar(query.with_for_update() if lock else query)


def _check_name_free(session: Session, project_id: int, name: str) -> None:
    if (
        session.scalar(select(AlertRule.id).where(AlertRule.project_id == project_id, AlertRule.name == name))
        is not None
    ):
        raise Conflict(f"an alert rule named {name!r} already exists in this project")


def _audit(
    session: Session,
    identity: Identity,
    action: str,
    rule: AlertRule,
    project: str,
    platform: Platform,
    summary: Mapping[str, Any],
) -> None:
    audit.record(
        session,
        actor=identity.username,
        action=action,
        resource_type="alert_rule",
        resource_id=rule.id,
        project=project,
        platform=platform,
        summary=summary,
    )
