"""Promotions pages: request one, see its policy checks, approve or reject it (maintainers,
never the requester), watch its rollout steps and roll it back.

Everything goes through ``services/promotions.py`` like the API: pending requests past
their expiry are expired first, a refused request lists every failed check, and a
promotion page refreshes itself while the promotion is approved or rolling out.
"""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request

from api.portal.forms import FormErrors, can, done
from api.portal.models import version_ref
from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.db.promotions import STRATEGIES
from mlplatform.core.errors import InvalidInput, MLPlatformError
from mlplatform.core.services import access
from mlplatform.core.services import promotions as service
from mlplatform.core.services import registry as registry_service
from mlplatform.core.services.promotions_state import ROLLBACK_FROM

MOVING = ("approved", "rolling_out")
REFRESH_SECONDS = 2
MAX_PER_MODEL = 200


def _expire(project: str, promotion_id: int | None = None) -> None:
    with platform().db.write() as session:
        service.expire_due(session, platform(), promotion_id=promotion_id, project=project)


def _all_promotions(session: Any, project: str, models: list[str]) -> list[dict[str, Any]]:
    """Every promotion of the project's models, newest first."""
    found = [
        p for name in models for p in service.list_promotions(session, project, name, page_size=MAX_PER_MODEL).items
    ]
    return sorted(found, key=lambda p: p["id"], reverse=True)


def _list_page(
    form: dict[str, str] | None = None, errors: FormErrors | None = None, failed: list[Any] | None = None
) -> tuple[str, int]:
    project = g.project.name
    _expire(project)
    with platform().db.read() as session:
        models = [m.model.name for m in registry_service.list_models(session, project, page_size=200).items]
        promotions = _all_promotions(session, project, models)
    args = request.args
    default = {
        "model": args.get("model", ""),
        "version": args.get("version", ""),
        "environment": args.get("environment", ""),
        "strategy": "",
        "steps": "",
        "bake_seconds": "",
    }
    body = render_template(
        "portal/promotions.html",
        promotions=promotions,
        models=models,
        strategies=STRATEGIES,
        environments=platform().environments,
        form=form or default,
        errors=errors,
        failed_checks=failed or [],
        waiting=[p for p in promotions if p["state"] == "pending_approval"],
        moving=[p for p in promotions if p["state"] in MOVING],
        history=[p for p in promotions if not p["active"]],
        refresh=REFRESH_SECONDS if any(p["state"] in MOVING for p in promotions) else None,
    )
    return body, errors.status if errors else 200


@bp.route("/projects/<project>/promotions")
@requires(access.project_role("viewer"))
def promotions(project: str) -> Any:
    """Promotions waiting for approval, rolling out and done, and the request form."""
    return _list_page()


def _steps(text: str) -> list[int] | None:
    if not text.strip():
        return None
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InvalidInput(
            "steps are percentages separated by commas, e.g. 10, 50, 100", errors={"steps": ["e.g. 10, 50, 100"]}
        ) from None


def _bake(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 7 * 86400:
        raise InvalidInput("bake time is seconds from 0 to 604800", errors={"bake_seconds": ["seconds, 0 to 604800"]})
    return value


@bp.route("/projects/<project>/promotions/request", methods=["POST"])
@requires(access.project_role("developer"))
def request_promotion(project: str) -> Any:
    """Request the promotion of a version to an environment; failed checks are listed."""
    form = {
        key: request.form.get(key, "").strip()
        for key in ("model", "version", "environment", "strategy", "steps", "bake_seconds")
    }
    missing = {key: ["required"] for key in ("model", "version", "environment") if not form[key]}
    if missing:
        return _list_page(form, FormErrors("choose a model, a version and an environment", missing, 400))
    try:
        with platform().db.write() as session:
            view = service.request_promotion(
                session,
                g.identity,
                project,
                form["model"],
                version=version_ref(form["version"]),
                to=form["environment"],
                strategy=form["strategy"] or None,
                steps=_steps(form["steps"]),
                bake_seconds=_bake(form["bake_seconds"]),
                platform=platform(),
            )
    except MLPlatformError as exc:
        failed = list((exc.errors or {}).get("checks") or [])
        errors = FormErrors.from_error(exc)
        errors.fields.pop("checks", None)
        if failed:
            errors.message = f"{len(failed)} promotion check(s) failed"
        return _list_page(form, errors, failed)
    waiting = " It waits for approval." if view["state"] == "pending_approval" else ""
    return done(
        f"Promotion {view['id']} of {form['model']} v{view['version']} to {form['environment']} requested.{waiting}",
        "portal.promotion",
        project=project,
        promotion_id=view["id"],
    )


def _detail_page(promotion_id: int, errors: FormErrors | None = None, reason: str = "") -> tuple[str, int]:
    project = g.project.name
    _expire(project, promotion_id)
    with platform().db.read() as session:
        promotion = service.get_promotion(session, project, promotion_id)
    mine = promotion["requested_by"] == g.identity.username
    voted = any(a["username"] == g.identity.username for a in promotion["approvals"])
    body = render_template(
        "portal/promotion.html",
        p=promotion,
        errors=errors,
        reason=reason,
        mine=mine,
        voted=voted,
        may_decide=can("maintainer") and promotion["state"] == "pending_approval",
        may_reject=can("maintainer") and promotion["state"] in ("pending_approval", "approved"),
        may_roll_back=can("developer") and promotion["state"] in ROLLBACK_FROM,
        refresh=REFRESH_SECONDS if promotion["state"] in MOVING else None,
    )
    return body, errors.status if errors else 200


@bp.route("/projects/<project>/promotions/<int:promotion_id>")
@requires(access.project_role("viewer"))
def promotion(project: str, promotion_id: int) -> Any:
    """One promotion: checks, approvals, rollout steps (refreshing while it moves)."""
    return _detail_page(promotion_id)


def _decide(project: str, promotion_id: int, action: str, message: str) -> Any:
    text = request.form.get("reason" if action != "approve" else "comment", "").strip()
    _expire(project, promotion_id)
    try:
        with platform().db.write() as session:
            if action == "approve":
                service.approve(session, g.identity, project, promotion_id, comment=text, platform=platform())
            elif action == "reject":
                service.reject(session, g.identity, project, promotion_id, reason=text, platform=platform())
            else:
                service.rollback(session, g.identity, project, promotion_id, reason=text, platform=platform())
    except MLPlatformError as exc:
        errors = FormErrors.from_error(exc)
        errors.fields.setdefault(f"{action}_form", [exc.message])
        return _detail_page(promotion_id, errors, text)
    return done(message, "portal.promotion", project=project, promotion_id=promotion_id)


@bp.route("/projects/<project>/promotions/<int:promotion_id>/approve", methods=["POST"])
@requires(access.project_role("maintainer"))
def approve_promotion(project: str, promotion_id: int) -> Any:
    """Approve (maintainers; not the requester). The last approval needed starts the rollout."""
    return _decide(project, promotion_id, "approve", f"You approved promotion {promotion_id}.")


@bp.route("/projects/<project>/promotions/<int:promotion_id>/reject", methods=["POST"])
@requires(access.project_role("maintainer"))
def reject_promotion(project: str, promotion_id: int) -> Any:
    """Reject a pending or approved promotion, with a reason."""
    return _decide(project, promotion_id, "reject", f"You rejected promotion {promotion_id}.")


@bp.route("/projects/<project>/promotions/<int:promotion_id>/rollback", methods=["POST"])
@requires(access.project_role("developer"))
def rollback_promotion(project: str, promotion_id: int) -> Any:
    """Return the environment to what served before this promotion, now."""
    return _decide(project, promotion_id, "rollback", f"Promotion {promotion_id} rolled back.")


LABELS = {"new": "new version", "old": "serving before"}


def _figure(key: str, value: Any) -> str:
    if value is None:
        return f"{key.replace('_', ' ')} —"
    if isinstance(value, float) and "rate" in key:
        return f"{key.replace('_', ' ')} {value:.1%}"
    if isinstance(value, float):
        return f"{key.replace('_', ' ')} {value:.4g}"
    return f"{key.replace('_', ' ')} {value}"


@bp.app_template_filter("measured_lines")
def measured_lines(measured: dict[str, Any] | None) -> list[str]:
    """What a rollout step measured, as short readable lines (nested figures on one line each)."""
    lines = []
    for key, value in sorted((measured or {}).items()):
        if key == "measured_at":
            continue
        if isinstance(value, dict):
            version = f" (v{value['version']})" if value.get("version") is not None else ""
            figures = ", ".join(_figure(k, v) for k, v in value.items() if k != "version")
            lines.append(f"{LABELS.get(key, key.replace('_', ' '))}{version}: {figures}")
        elif isinstance(value, list):
            lines.append(f"{key.replace('_', ' ')}: {', '.join(map(str, value)) or 'none'}")
        else:
            lines.append(_figure(key, value))
    return lines
