"""The promotion state machine: transitions by compare-and-set, the step log, rollback, views.

States::

    pending_approval -> approved -> rolling_out -> completed
           |               |            |             |
           v               v            v             v
    rejected, expired   rejected,    rolled_back,  rolled_back (SLO guard or by hand)
                        rolled_back  failed

Every transition is one ``UPDATE ... WHERE id = ? AND revision = ? AND state IN (...)``
(:func:`transition`): of two writers that read the same revision (two approvals, a
rollback and a step job) exactly one moves the promotion; the other gets ``Conflict`` and
re-reads. Each transition is audited (``promotion.<state>``) in the same transaction and
sets ``reason``. Leaving the active states clears ``active_key``, freeing the model and
environment for the next promotion.

Rollback (:func:`rollback`) puts the traffic back as it was before the rollout
(``previous_weights``) with ``set_traffic`` when those versions are still deployed, or
redeploys the previous main version when they were retired, or undeploys when nothing
served before; then tells the alert channels (job ``promotion_notify``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mlplatform.core.backends import Alert as AlertMessage
from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment, DeploymentVersion
from mlplatform.core.db.models import Project
from mlplatform.core.db.promotions import ACTIVE_STATES, FINAL_STATES, Promotion, PromotionApproval, PromotionStep
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.errors import Conflict, MLPlatformError
from mlplatform.core.services import alert_delivery, audit, deployments

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.promotions")

SYSTEM = "system:promotions"
NOTIFY_JOB = "promotion_notify"
STEP_JOB = "promotion_step"
ROLLBACK_FROM = ("approved", "rolling_out", "completed")


def names(session: Session, promotion: Promotion) -> tuple[str, str, int]:
    """``(project, model, version number)`` of ``promotion``."""
    project = session.get(Project, promotion.project_id)
    model = session.get(RegisteredModel, promotion.model_id)
    version = session.get(ModelVersion, promotion.version_id)
    assert project is not None and model is not None and version is not None
    return project.name, model.name, version.version


def load(session: Session, promotion_id: int, *, lock: bool = False) -> Promotion | None:
    query = select(Promotion).where(Promotion.id == promotion_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query.execution_options(populate_existing=True))


def transition(
    session: Session,
    promotion: Promotion,
    to: str,
    *,
    expect: tuple[str, ...],
    reason: str,
    actor: str,
    platform: Platform | None,
    summary: Mapping[str, Any] | None = None,
    **changes: Any,
) -> None:
    """Move ``promotion`` to state ``to`` if it still has the revision and a state in ``expect``.

    Raises ``Conflict`` (naming the state it is in now) when another writer moved it first.
    ``changes`` are other columns set in the same update.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "state": to,
        "reason": reason,
        "revision": promotion.revision + 1,
        "updated_at": now,
        **changes,
    }
    if to in FINAL_STATES:
        values.setdefault("active_key", None)
        values.setdefault("finished_at", now)
    result = session.execute(
        update(Promotion)
        .where(Promotion.id == promotion.id, Promotion.revision == promotion.revision, Promotion.state.in_(expect))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = load(session, promotion.id)
        state = current.state if current else "deleted"
        raise Conflict(f"promotion {promotion.id} is {state} now; it cannot become {to}", errors={"state": [state]})
    session.refresh(promotion)
    project, model, number = names(session, promotion)
    audit.record(
        session,
        actor=actor,
        action=f"promotion.{to}",
        resource_type="promotion",
        resource_id=promotion.id,
        project=project,
        summary={
            "model": model,
            "version": number,
            "environment": promotion.environment,
            "reason": reason,
            **(summary or {}),
        },
        platform=platform,
    )


def bump(session: Session, promotion: Promotion, *, expect_state: str, **changes: Any) -> bool:
    """Compare-and-set ``changes`` without a state change; False if another writer got there first."""
    result = session.execute(
        update(Promotion)
        .where(Promotion.id == promotion.id, Promotion.revision == promotion.revision, Promotion.state == expect_state)
        .values(revision=promotion.revision + 1, updated_at=utcnow(), **changes)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.refresh(promotion)
    return True


# --- the step log ---------------------------------------------------------------------------


def step_row(session: Session, promotion_id: int, index: int, kind: str, weight: int | None = None) -> PromotionStep:
    """The step ``index`` of the promotion, created ``running`` if it is not there yet (a re-run resumes it)."""
    row = session.scalar(
        select(PromotionStep).where(PromotionStep.promotion_id == promotion_id, PromotionStep.index == index)
    )
    if row is None:
        row = PromotionStep(
            promotion_id=promotion_id, index=index, kind=kind, weight=weight, state="running", message="", measured={}
        )
        session.add(row)
        session.flush()
    return row


def finish_step(step: PromotionStep, state: str, message: str = "", measured: Mapping[str, Any] | None = None) -> None:
    step.state, step.message, step.finished_at = state, message, utcnow()
    if measured is not None:
        step.measured = dict(measured)


# --- rollback ---------------------------------------------------------------------------------


def rollback(
    session: Session,
    platform: Platform,
    promotion: Promotion,
    *,
    actor: str,
    reason: str,
    measured: Mapping[str, Any] | None = None,
) -> None:
    """Put traffic back as it was before ``promotion`` and mark it ``rolled_back``; see the module docstring.

    The caller holds the promotion's row (``load(..., lock=True)``). Raises ``Conflict`` when it is
    not approved, rolling out or completed, or when another writer moved it first.
    """
    if promotion.state not in ROLLBACK_FROM:
        raise Conflict(
            f"promotion {promotion.id} is {promotion.state}; only an approved, rolling-out or completed promotion can be rolled back"
            + (" (reject a pending one)" if promotion.state == "pending_approval" else "")
        )
    expected_state = promotion.state
    traffic = _restore_traffic(session, platform, promotion, actor=actor, reason=reason)
    details = {**dict(measured or {}), "traffic": traffic}
    transition(
        session,
        promotion,
        "rolled_back",
        expect=(expected_state,),
        reason=reason,
        actor=actor,
        platform=platform,
        summary={"measured": details},
        guard_until=None,
    )
    step = step_row(session, promotion.id, _next_index(session, promotion.id), "rollback")
    finish_step(step, "passed", reason, details)
    notify(session, platform, promotion, reason, details)


def _next_index(session: Session, promotion_id: int) -> int:
    last = session.scalar(
        select(PromotionStep.index)
        .where(PromotionStep.promotion_id == promotion_id)
        .order_by(PromotionStep.index.desc())
        .limit(1)
    )
    return 1000 if last is None or last < 1000 else last + 1  # rollback rows sort after every rollout step


def _restore_traffic(session: Session, platform: Platform, promotion: Promotion, *, actor: str, reason: str) -> str:
    """Move the deployment back; returns what was done (for the record)."""
    if promotion.deployment_id is None:
        return "nothing had moved"
    deployment = session.scalar(select(Deployment).where(Deployment.id == promotion.deployment_id).with_for_update())
    if deployment is None:
        return "the deployment is gone"
    previous = {int(k): int(v) for k, v in (promotion.previous_weights or {}).items()}
    project, model, _ = names(session, promotion)
    identity = Identity(actor, "system")
    message = f"promotion {promotion.id} rolled back: {reason}"
    if not previous:
        deployments.request_undeploy(session, identity, project, model, promotion.environment, platform=platform)
        return "nothing served before: undeploying"
    rows = {
        r.version_id: r
        for r in session.scalars(select(DeploymentVersion).where(DeploymentVersion.deployment_id == deployment.id))
    }
    if all(v in rows and rows[v].status == "healthy" for v in previous):
        deployments.set_traffic(session, deployment, previous, actor=actor, message=message, platform=platform)
        return "traffic restored: " + ", ".join(f"version id {v} at {w}%" for v, w in sorted(previous.items()))
    main = max(previous, key=lambda v: previous[v])
    number = session.scalar(select(ModelVersion.version).where(ModelVersion.id == main))
    deployments.request_deploy(
        session,
        identity,
        project,
        model,
        promotion.environment,
        int(number or 0),
        weight=100,
        via_promotion=True,
        platform=platform,
    )
    return f"the previous version {number} was retired: redeploying it at 100%"


# --- notifications ----------------------------------------------------------------------------


def channels_for(platform: Platform, promotion: Promotion) -> list[str]:
    chosen = (promotion.settings or {}).get("alert_channels")
    return list(chosen) if chosen is not None else alert_delivery.configured_channels(platform)


def notify(
    session: Session, platform: Platform, promotion: Promotion, reason: str, measured: Mapping[str, Any]
) -> None:
    """Record a pending notification per channel and enqueue its delivery (after commit)."""
    channels = channels_for(platform, promotion)
    promotion.notifications = [
        {"channel": c, "event": "rolled_back", "status": "pending", "error": ""} for c in channels
    ]
    project, _, _ = names(session, promotion)
    for name in channels:
        platform.jobs.enqueue(session, NOTIFY_JOB, {"promotion_id": promotion.id, "channel": name}, project=project)


def message_for(session: Session, promotion: Promotion) -> AlertMessage:
    project, model, number = names(session, promotion)
    rollback_step = session.scalar(
        select(PromotionStep).where(PromotionStep.promotion_id == promotion.id, PromotionStep.kind == "rollback")
    )
    return AlertMessage(
        title=f"promotion {promotion.id} rolled back: {model} v{number} in {promotion.environment}",
        severity="critical",
        state="firing",
        project=project,
        message=promotion.reason,
        labels={
            "kind": "promotion_rollback",
            "model": model,
            "environment": promotion.environment,
            "version": str(number),
            "promotion": str(promotion.id),
        },
        values=dict(rollback_step.measured) if rollback_step else {},
        occurred_at=promotion.finished_at,
    )


def deliver_notification(platform: Platform, promotion_id: int, channel: str) -> str:
    """Job handler: send the rollback notice through ``channel``; a sent one is not sent again."""
    with platform.db.read() as session:
        promotion = load(session, promotion_id)
        entry = (
            next((n for n in (promotion.notifications or []) if n["channel"] == channel), None) if promotion else None
        )
        if promotion is None or entry is None or entry["status"] != "pending":
            return entry["status"] if entry else "gone"
        message = message_for(session, promotion)
    status, error = "delivered", ""
    try:
        alert_delivery.channel(platform, channel).send(message)
    except MLPlatformError as exc:
        status, error = "failed", exc.message
    except Exception as exc:  # noqa: BLE001 - a broken channel is recorded, not retried by the queue
        log.exception("alert channel %r raised for promotion %s", channel, promotion_id)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    with platform.db.write() as session:
        promotion = load(session, promotion_id, lock=True)
        if promotion is not None:
            promotion.notifications = [
                {**n, "status": status, "error": error[:2000], "at": utcnow().isoformat()}
                if n["channel"] == channel
                else n
                for n in promotion.notifications or []
            ]
    return status


# --- views ------------------------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def to_dict(session: Session, promotion: Promotion) -> dict[str, Any]:
    """The promotion as the API shows it: checks, approvals, steps and the last reason."""
    project, model, number = names(session, promotion)
    approvals = session.scalars(
        select(PromotionApproval).where(PromotionApproval.promotion_id == promotion.id).order_by(PromotionApproval.id)
    )
    steps = session.scalars(
        select(PromotionStep).where(PromotionStep.promotion_id == promotion.id).order_by(PromotionStep.index)
    )
    versions = dict(
        session.execute(
            select(ModelVersion.id, ModelVersion.version).where(
                ModelVersion.id.in_([int(v) for v in (promotion.previous_weights or {})])
            )
        ).all()
    )
    return {
        "id": promotion.id,
        "project": project,
        "model": model,
        "version": number,
        "environment": promotion.environment,
        "strategy": promotion.strategy,
        "steps": list(promotion.steps),
        "bake_seconds": promotion.bake_seconds,
        "state": promotion.state,
        "reason": promotion.reason,
        "revision": promotion.revision,
        "requested_by": promotion.requested_by,
        "required_approvals": promotion.required_approvals,
        "approvals": [
            {"username": a.username, "decision": a.decision, "comment": a.comment, "at": _iso(a.created_at)}
            for a in approvals
        ],
        "checks": promotion.checks or {},
        "rollout": [
            {
                "index": s.index,
                "kind": s.kind,
                "weight": s.weight,
                "state": s.state,
                "message": s.message,
                "measured": s.measured,
                "started_at": _iso(s.started_at),
                "finished_at": _iso(s.finished_at),
                "seconds": None if s.finished_at is None else round((s.finished_at - s.started_at).total_seconds(), 3),
            }
            for s in steps
        ],
        "previous_traffic": {str(versions.get(int(k), k)): w for k, w in (promotion.previous_weights or {}).items()},
        "notifications": promotion.notifications or [],
        "created_at": _iso(promotion.created_at),
        "updated_at": _iso(promotion.updated_at),
        "expires_at": _iso(promotion.expires_at) if promotion.state == "pending_approval" else None,
        "started_at": _iso(promotion.started_at),
        "finished_at": _iso(promotion.finished_at),
        "guard_until": _iso(promotion.guard_until),
        "active": promotion.state in ACTIVE_STATES,
    }


def settings(platform: Platform, env: Mapping[str, Any]) -> dict[str, Any]:
    """The promotion config in force for ``env``: the top-level section with the environment's overrides."""
    merged = dict(platform.config["promotion"])
    overrides = env.get("promotion") or {}
    for key, value in overrides.items():
        merged[key] = (
            {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged
