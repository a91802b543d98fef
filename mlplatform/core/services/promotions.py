"""Promotions: request, approve, reject, roll back, read. The rollout itself is a job chain
(``promotions_rollout``); the state machine and rollback live in ``promotions_state``.

A request runs every ``check_promotion`` policy first. When any fails the request is
refused with ``Unprocessable`` (422) listing every failed check, and nothing is stored: a
refused request holds no slot and needs no clean-up. Otherwise the promotion is stored
``pending_approval`` when the environment needs approvals (``approvals``), or ``approved``
and its rollout queued at once.

Approvals come from maintainers of the project; the requester's own does not count (403).
A pending request expires ``promotion.approval_expiry`` after it was made: checked lazily
when the promotion is read, approved or rejected (:func:`expire_due`), and by
:func:`expire_pending` for a periodic runner (``mlplatform promotions expire``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.promotions import ACTIVE_STATES, PROMOTION_STATES, STRATEGIES, Promotion, PromotionApproval
from mlplatform.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unprocessable
from mlplatform.core.services import audit, deployments, registry, targets
from mlplatform.core.services import promotions_checks as checks
from mlplatform.core.services import promotions_state as state
from mlplatform.core.services.access import get_project
from mlplatform.core.services.pagination import Page, paginate
from mlplatform.core.services.promotions_rollout import enqueue_step

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform


def active_key(model_id: int, environment: str) -> str:
    return f"{model_id}:{environment}"


def request_promotion(
    session: Session,
    identity: Identity,
    project: str,
    model_name: str,
    *,
    version: int | str,
    to: str,
    strategy: str | None = None,
    steps: Sequence[int] | None = None,
    bake_seconds: float | None = None,
    platform: Platform,
) -> dict[str, Any]:
    """Request the promotion of ``version`` (a number, ``v3``, ``latest`` or an alias) to ``to``.

    Raises ``NotFound`` (environment, model, version), ``Conflict`` (a version that cannot be
    deployed, or another active promotion of the model to ``to``), ``InvalidInput`` (bad
    strategy, steps or bake time) and ``Unprocessable`` with ``errors["checks"]``, every
    failed policy check, when any fails.
    """
    env = targets.environment(platform, to)
    project_row = get_project(session, project)
    model, candidate = registry.resolve_version(session, project_row, model_name, version)
    deployments.check_deployable(candidate, model_name)
    config = state.settings(platform, env)
    strategy = strategy or config["strategy"]
    if strategy not in STRATEGIES:
        raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)}", errors={"strategy": ["unknown"]})
    plan = _steps(strategy, steps, config)
    bake = float(config["bake_time"] if bake_seconds is None else bake_seconds)
    if bake < 0:
        raise InvalidInput("bake_seconds must be 0 or more", errors={"bake_seconds": ["negative"]})
    expire_due(session, platform, model_id=model.id)
    _refuse_second(session, model.id, to, model_name)

    context = checks.build_context(
        session,
        platform,
        project=project,
        model=model_name,
        model_id=model.id,
        version=candidate,
        environment=to,
        requested_by=identity.username,
        strategy=strategy,
        phase="request",
    )
    results = checks.run_checks(platform, checks.candidate(candidate, project, model_name), env, context)
    failures = checks.failed(results)
    if failures:
        raise Unprocessable(
            f"{len(failures)} promotion check(s) failed: "
            + "; ".join(f"{r['policy']}: {r['message']}" for r in failures),
            errors={"checks": failures},
        )

    required = int(env["approvals"])
    now = utcnow()
    promotion = Promotion(
        project_id=project_row.id,
        model_id=model.id,
        version_id=candidate.id,
        environment=to,
        strategy=strategy,
        steps=plan,
        bake_seconds=bake,
        state="pending_approval" if required else "approved",
        reason=f"waiting for {required} approval(s)" if required else "no approval needed",
        revision=1,
        active_key=active_key(model.id, to),
        required_approvals=required,
        requested_by=identity.username,
        checks={"request": results},
        settings=config,
        notifications=[],
        created_at=now,
        updated_at=now,
        expires_at=now + dt.timedelta(seconds=config["approval_expiry"]) if required else None,
    )
    session.add(promotion)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"another promotion of {model_name!r} to {to!r} is active; finish, reject or roll it back first"
        ) from None
    audit.record(
        session,
        actor=identity.username,
        action="promotion.request",
        resource_type="promotion",
        resource_id=promotion.id,
        project=project,
        platform=platform,
        summary={
            "model": model_name,
            "version": candidate.version,
            "environment": to,
            "strategy": strategy,
            "steps": plan,
            "bake_seconds": bake,
            "state": promotion.state,
        },
    )
    if not required:
        enqueue_step(session, platform, promotion, 0, project)
    return state.to_dict(session, promotion)


def _steps(strategy: str, steps: Sequence[int] | None, config: dict[str, Any]) -> list[int]:
    if strategy != "canary":
        if steps and list(steps) != [100]:
            raise InvalidInput(f"steps apply to canary promotions, not {strategy}", errors={"steps": ["canary only"]})
        return [100]
    plan = [int(s) for s in (steps if steps else config["canary_steps"])]
    if (
        not plan
        or plan[-1] != 100
        or any(not 1 <= s <= 100 for s in plan)
        or any(b <= a for a, b in zip(plan, plan[1:], strict=False))
    ):
        raise InvalidInput(
            "steps must be increasing percentages ending at 100, e.g. [10, 50, 100]", errors={"steps": ["invalid"]}
        )
    return plan


def _refuse_second(session: Session, model_id: int, env: str, model_name: str) -> None:
    """A friendly 409 naming the active promotion; the unique ``active_key`` is what guarantees it."""
    found = session.scalar(select(Promotion.id).where(Promotion.active_key == active_key(model_id, env)))
    if found is not None:
        raise Conflict(
            f"promotion {found} of {model_name!r} to {env!r} is still active; finish, reject or roll it back first",
            errors={"active_promotion": [str(found)]},
        )


def _get(session: Session, project: str, promotion_id: int, *, lock: bool = False) -> Promotion:
    project_row = get_project(session, project)
    promotion = state.load(session, promotion_id, lock=lock)
    if promotion is None or promotion.project_id != project_row.id:
        raise NotFound(f"promotion {promotion_id} does not exist in project {project!r}")
    return promotion


def approve(
    session: Session, identity: Identity, project: str, promotion_id: int, *, comment: str = "", platform: Platform
) -> dict[str, Any]:
    """Add the caller's approval; the last one needed approves the promotion and queues its rollout.

    Raises ``PermissionDenied`` for the requester, ``Conflict`` when it is not pending (or
    the caller already voted), ``NotFound``. Expired requests are ``Conflict`` once
    :func:`expire_due` has run (the API runs it first, in its own transaction).
    """
    promotion = _get(session, project, promotion_id, lock=True)
    _pending(promotion)
    if identity.username == promotion.requested_by:
        raise PermissionDenied("you requested this promotion; another maintainer must approve it")
    _vote(session, promotion, identity.username, "approve", comment)
    count = (
        session.scalar(
            select(func.count())
            .select_from(PromotionApproval)
            .where(PromotionApproval.promotion_id == promotion.id, PromotionApproval.decision == "approve")
        )
        or 0
    )
    audit.record(
        session,
        actor=identity.username,
        action="promotion.approve",
        resource_type="promotion",
        resource_id=promotion.id,
        project=project,
        summary={"approvals": count, "required": promotion.required_approvals, "comment": comment},
        platform=platform,
    )
    if count >= promotion.required_approvals:
        state.transition(
            session,
            promotion,
            "approved",
            expect=("pending_approval",),
            actor=identity.username,
            platform=platform,
            reason=f"approved by {count} of {promotion.required_approvals} maintainer(s)",
            expires_at=None,
        )
        enqueue_step(session, platform, promotion, 0, project)
    else:
        state.bump(
            session,
            promotion,
            expect_state="pending_approval",
            reason=f"{count} of {promotion.required_approvals} approval(s)",
        )
    return state.to_dict(session, promotion)


def reject(
    session: Session, identity: Identity, project: str, promotion_id: int, *, reason: str, platform: Platform
) -> dict[str, Any]:
    """Reject a promotion that has not started rolling out; ``reason`` is required."""
    if not reason.strip():
        raise InvalidInput("a rejection needs a reason", errors={"reason": ["required"]})
    promotion = _get(session, project, promotion_id, lock=True)
    if promotion.state not in ("pending_approval", "approved"):
        raise Conflict(
            f"promotion {promotion.id} is {promotion.state}; only a pending or approved one can be rejected"
            + ("; roll it back instead" if promotion.state in ("rolling_out", "completed") else "")
        )
    _vote(session, promotion, identity.username, "reject", reason)
    state.transition(
        session,
        promotion,
        "rejected",
        expect=("pending_approval", "approved"),
        actor=identity.username,
        platform=platform,
        reason=f"rejected by {identity.username}: {reason}",
    )
    return state.to_dict(session, promotion)


def rollback(
    session: Session, identity: Identity, project: str, promotion_id: int, *, reason: str = "", platform: Platform
) -> dict[str, Any]:
    """Return the environment to what served before the promotion, at once; see ``promotions_state.rollback``."""
    promotion = _get(session, project, promotion_id, lock=True)
    state.rollback(
        session,
        platform,
        promotion,
        actor=identity.username,
        reason=f"rolled back by {identity.username}" + (f": {reason}" if reason else ""),
        measured={"manual": True},
    )
    return state.to_dict(session, promotion)


def _pending(promotion: Promotion) -> None:
    if promotion.state != "pending_approval":
        raise Conflict(
            f"promotion {promotion.id} is {promotion.state}, not pending approval", errors={"state": [promotion.state]}
        )


def _vote(session: Session, promotion: Promotion, username: str, decision: str, comment: str) -> None:
    existing = session.scalar(
        select(PromotionApproval).where(
            PromotionApproval.promotion_id == promotion.id, PromotionApproval.username == username
        )
    )
    if existing is not None and decision == "approve":
        raise Conflict(f"{username} already voted on promotion {promotion.id}")
    if existing is not None:
        existing.decision, existing.comment = decision, comment
        return
    session.add(PromotionApproval(promotion_id=promotion.id, username=username, decision=decision, comment=comment))
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"{username} already voted on promotion {promotion.id}") from None


# --- reading and expiry ---------------------------------------------------------------------


def get_promotion(session: Session, project: str, promotion_id: int) -> dict[str, Any]:
    return state.to_dict(session, _get(session, project, promotion_id))


def list_promotions(
    session: Session,
    project: str,
    model_name: str,
    *,
    state_filter: str | None = None,
    environment: str | None = None,
    page_size: int = 100,
    page_token: str | None = None,
) -> Page[dict[str, Any]]:
    """The model's promotions, oldest first, a page at a time."""
    model = registry.get_model(session, get_project(session, project), model_name)
    query = select(Promotion).where(Promotion.model_id == model.id)
    if state_filter is not None:
        if state_filter not in PROMOTION_STATES:
            raise InvalidInput(f"state must be one of {', '.join(PROMOTION_STATES)}", errors={"state": ["unknown"]})
        query = query.where(Promotion.state == state_filter)
    if environment is not None:
        query = query.where(Promotion.environment == environment)
    page = paginate(session, query, Promotion.id, page_size, page_token)
    return Page([state.to_dict(session, p) for p in page.items], page.next_page_token)


def expire_due(
    session: Session,
    platform: Platform,
    *,
    promotion_id: int | None = None,
    model_id: int | None = None,
    project: str | None = None,
) -> list[int]:
    """Expire pending promotions past ``expires_at`` (all, one, a model's or a project's); returns their ids."""
    query = select(Promotion).where(Promotion.state == "pending_approval", Promotion.expires_at < utcnow())
    if promotion_id is not None:
        query = query.where(Promotion.id == promotion_id)
    if model_id is not None:
        query = query.where(Promotion.model_id == model_id)
    if project is not None:
        query = query.where(Promotion.project_id == get_project(session, project).id)
    expired = []
    for promotion in session.scalars(query.with_for_update()).all():
        try:
            state.transition(
                session,
                promotion,
                "expired",
                expect=("pending_approval",),
                actor=state.SYSTEM,
                platform=platform,
                reason=f"not approved within {dt.timedelta(seconds=int((promotion.settings or {}).get('approval_expiry', 0)))}",
            )
        except Conflict:
            continue  # approved or rejected meanwhile
        expired.append(promotion.id)
    return expired


def expire_pending(platform: Platform) -> list[int]:
    """The periodic sweep: expire every overdue pending promotion in its own transaction."""
    with platform.db.write() as session:
        return expire_due(session, platform)


__all__ = [
    "ACTIVE_STATES",
    "approve",
    "expire_due",
    "expire_pending",
    "get_promotion",
    "list_promotions",
    "reject",
    "request_promotion",
    "rollback",
]
