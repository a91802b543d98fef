"""The ``promotion_step`` job: a rollout as a chain of steps, each enqueueing the next.

Step 0, ``prepare``: the policy checks run again (``pre_traffic``); the new version is
deployed beside what serves at 0% (the deploy job's own handler, called here); a
``blue_green`` promotion then sends the version's ``input_example.json`` through the gateway
pinned to the new version (the smoke test). Steps 1..n move traffic to each percentage of
``steps`` (``direct`` and ``blue_green``: just 100) and, below 100, bake: the job sleeps for
``bake_seconds`` and asks the SLO guard every ``guard.check_interval`` (there is no delayed
enqueue in the job queue, so a step holds one worker for its bake; bake times of minutes are
fine, hours are not). The last step marks the promotion ``completed``; step n+1, ``guard``,
watches for ``guard.period`` more, then retires the previous versions.

Safe to run twice and to resume after a crash: ``step_index`` (the last step started) and
the step rows say where the rollout is. A step starts by compare-and-set of ``step_index``
from ``k - 1`` to ``k`` in the same transaction as its traffic change; a step already started
resumes its bake from its recorded start; a step already finished does nothing. Every write
re-reads the promotion under its row lock, so a rollback by hand wins over a step and the
step stops.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment, DeploymentVersion
from mlplatform.core.db.promotions import Promotion
from mlplatform.core.db.registry import ModelVersion
from mlplatform.core.errors import Conflict, MLPlatformError
from mlplatform.core.services import audit, deployment_jobs, deployments, targets
from mlplatform.core.services import promotions_checks as checks
from mlplatform.core.services import promotions_guard as guard
from mlplatform.core.services.promotions_state import (
    STEP_JOB,
    bump,
    finish_step,
    load,
    names,
    rollback,
    step_row,
    transition,
)

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.promotions")

ACTOR = "system:promoter"
GUARD_ACTOR = "system:slo-guard"
SMOKE_FILE = "input_example.json"


def promotion_step(platform: Platform, promotion_id: int, step: int) -> None:
    """Job handler: run step ``step`` of promotion ``promotion_id``; see the module docstring."""
    with platform.db.read() as session:
        promotion = load(session, promotion_id)
        if promotion is None:
            return
        count = len(promotion.steps)
    if step == 0:
        _prepare(platform, promotion_id)
    elif step <= count:
        _traffic(platform, promotion_id, step)
    else:
        _guard(platform, promotion_id, step)


def enqueue_step(session: Session, platform: Platform, promotion: Promotion, step: int, project: str) -> None:
    """Queue step ``step`` (after the caller's transaction commits)."""
    bake = promotion.bake_seconds if 0 < step < len(promotion.steps) else 0.0
    period = (promotion.settings or {}).get("guard", {}).get("period", 0.0) if step > len(promotion.steps) else 0.0
    platform.jobs.enqueue(
        session,
        STEP_JOB,
        {"promotion_id": promotion.id, "step": step},
        project=project,
        max_attempts=3,
        timeout=int(1800 + bake + period),
    )


# --- step 0: prepare ------------------------------------------------------------------------


def _prepare(platform: Platform, promotion_id: int) -> None:
    with platform.db.write() as session:
        promotion = load(session, promotion_id, lock=True)
        if promotion is None or not (
            promotion.state == "approved" or (promotion.state == "rolling_out" and promotion.step_index < 0)
        ):
            return
        project, model, number = names(session, promotion)
        version = session.get(ModelVersion, promotion.version_id)
        assert version is not None
        context = checks.build_context(
            session,
            platform,
            project=project,
            model=model,
            model_id=promotion.model_id,
            version=version,
            environment=promotion.environment,
            requested_by=promotion.requested_by,
            strategy=promotion.strategy,
            phase="pre_traffic",
        )
        env = targets.environment(platform, promotion.environment)
        results = checks.run_checks(platform, checks.candidate(version, project, model), env, context)
        recorded = {**(promotion.checks or {}), "pre_traffic": results}
        failures = checks.failed(results)
        if failures:
            reason = "checks failed before traffic moved: " + "; ".join(
                f"{r['policy']}: {r['message']}" for r in failures
            )
            transition(
                session,
                promotion,
                "failed",
                expect=("approved", "rolling_out"),
                reason=reason,
                actor=ACTOR,
                platform=platform,
                checks=recorded,
                summary={"failed_checks": failures},
            )
            return
        if promotion.state == "approved":
            transition(
                session,
                promotion,
                "rolling_out",
                expect=("approved",),
                reason="checks passed; deploying the version at 0%",
                actor=ACTOR,
                platform=platform,
                checks=recorded,
            )
        step_row(session, promotion_id, 0, "prepare", 0)
        version_id, strategy, artifact_uri = promotion.version_id, promotion.strategy, version.artifact_uri
    try:
        with platform.db.write() as session:
            promotion = load(session, promotion_id, lock=True)
            if promotion is None or promotion.state != "rolling_out" or promotion.step_index >= 0:
                return
            version = session.get(ModelVersion, version_id)
            assert version is not None
            deployment_id, request_id = _stage(session, platform, promotion, project, model, version)
    except MLPlatformError as exc:
        _fail(platform, promotion_id, 0, f"cannot deploy version {number}: {exc.message}", {})
        return

    started = time.monotonic()
    deployment_jobs.deploy_version(platform, deployment_id, version_id, 0, request_id)
    deploy_seconds = round(time.monotonic() - started, 3)

    with platform.db.read() as session:
        row = session.get(DeploymentVersion, (deployment_id, version_id))
        healthy = row is not None and row.status == "healthy"
        message = row.status_message if row is not None else "the version left the deployment"
    measured: dict[str, Any] = {"deploy_seconds": deploy_seconds}
    if not healthy:
        _fail(platform, promotion_id, 0, f"deploying version {number} failed: {message}", measured)
        return
    if strategy == "blue_green":
        ok, smoke = _smoke_test(
            platform, project, model, _environment_of(platform, promotion_id), number, artifact_uri, promotion_id
        )
        measured["smoke_test"] = smoke
        if not ok:
            _fail(platform, promotion_id, 0, f"smoke test of version {number} failed: {smoke.get('error')}", measured)
            return
    with platform.db.write() as session:
        promotion = load(session, promotion_id, lock=True)
        if promotion is None or promotion.state != "rolling_out" or promotion.step_index >= 0:
            return
        step = step_row(session, promotion_id, 0, "prepare", 0)
        finish_step(
            step, "passed", f"version {number} deployed" + (" at 0%" if promotion.previous_weights else ""), measured
        )
        if not bump(session, promotion, expect_state="rolling_out", step_index=0):
            return
        if not promotion.previous_weights:
            promotion.started_at = utcnow()
            _complete(
                session,
                platform,
                promotion,
                project,
                f"nothing served {promotion.environment} before: version {number} took all traffic",
            )
            return
        enqueue_step(session, platform, promotion, 1, project)


def _environment_of(platform: Platform, promotion_id: int) -> str:
    with platform.db.read() as session:
        promotion = load(session, promotion_id)
        assert promotion is not None
        return promotion.environment


def _stage(
    session: Session, platform: Platform, promotion: Promotion, project: str, model: str, version: ModelVersion
) -> tuple[int, int]:
    """Add the version to the deployment at 0% (creating the deployment if needed) and record
    what served before; returns ``(deployment id, id of the deploy_requested event)``."""
    env, _target = targets.target_for_environment(platform, promotion.environment)
    deployments.check_deployable(version, model)
    deployment = deployments.find_deployment(session, project, model, promotion.environment, lock=True)
    if deployment is None:
        deployment = deployments.new_deployment(
            session,
            promotion.project_id,
            promotion.model_id,
            promotion.environment,
            env["target"],
            ACTOR,
            f"{model!r} is being deployed to {promotion.environment!r} right now; retry",
        )
    rows = {
        r.version_id: r
        for r in session.scalars(select(DeploymentVersion).where(DeploymentVersion.deployment_id == deployment.id))
    }
    if promotion.previous_weights is None:
        serving = {v: r.weight for v, r in rows.items() if v != version.id and r.status == "healthy" and r.weight > 0}
        normalised = deployments.split_weights(serving, version.id, 0) if serving else {}
        promotion.previous_weights = {str(v): w for v, w in normalised.items() if v != version.id and w > 0}
        promotion.deployment_id = deployment.id
    deployments.stage_version(session, deployment.id, version.id, rows.get(version.id))
    deployment.target = env["target"]
    details = {"version": version.version, "weight": 0, "via_promotion": True, "promotion": promotion.id}
    event = deployments.record_event(
        session, deployment, "deploy_requested", actor=ACTOR, version_id=version.id, details=details
    )
    audit.record(
        session,
        actor=ACTOR,
        action="deployment.deploy",
        resource_type="deployment",
        resource_id=f"{model}/{promotion.environment}",
        project=project,
        summary=details,
        platform=platform,
    )
    return deployment.id, event.id


def _smoke_test(
    platform: Platform, project: str, model: str, env: str, number: int, artifact_uri: str, promotion_id: int
) -> tuple[bool, dict[str, Any]]:
    """One prediction on the version's input example, through the gateway, pinned to the version."""
    from mlplatform.core.gateway import Gateway

    try:
        with platform.artifact_store.open(artifact_uri + SMOKE_FILE) as stream:
            body = json.loads(stream.read())
    except MLPlatformError:
        return False, {"error": f"the version has no {SMOKE_FILE}; register it with an input_example for blue_green"}
    gateway = platform.shared("gateway", lambda: Gateway(platform))
    started = time.perf_counter()
    try:
        result = gateway.predict(
            project, model, env, body, pin=str(number), request_id=f"promotion-{promotion_id}-smoke"
        )
    except MLPlatformError as exc:
        return False, {
            "error": exc.message,
            "status": exc.status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    latency = round((time.perf_counter() - started) * 1000, 3)
    rows = len(body.get("instances") or body.get("data") or [])
    ok = result.version == number and len(result.predictions) == rows
    return ok, {
        "status": 200,
        "rows": rows,
        "predictions": len(result.predictions),
        "version": result.version,
        "latency_ms": latency,
        **({} if ok else {"error": "wrong answer shape"}),
    }


def _fail(platform: Platform, promotion_id: int, index: int, reason: str, measured: dict[str, Any]) -> None:
    """Mark the promotion failed at step ``index``; traffic stays with what served (the new version has 0%)."""
    with platform.db.write() as session:
        promotion = load(session, promotion_id, lock=True)
        if promotion is None or promotion.state != "rolling_out":
            return
        finish_step(step_row(session, promotion_id, index, "prepare", 0), "failed", reason, measured)
        transition(
            session,
            promotion,
            "failed",
            expect=("rolling_out",),
            reason=reason,
            actor=ACTOR,
            platform=platform,
            summary={"measured": measured},
        )


# --- steps 1..n: traffic and bake -------------------------------------------------------------


def _traffic(platform: Platform, promotion_id: int, k: int) -> None:
    with platform.db.write() as session:
        promotion = load(session, promotion_id, lock=True)
        if promotion is None or promotion.state != "rolling_out" or promotion.step_index not in (k - 1, k):
            return
        weight = int(promotion.steps[k - 1])
        if promotion.step_index == k - 1 and not bump(
            session, promotion, expect_state="rolling_out", step_index=k, started_at=promotion.started_at or utcnow()
        ):
            return
        step = step_row(session, promotion_id, k, "traffic", weight)
        if step.state != "running":
            return  # finished; the next step was queued with it
        project, model, number = names(session, promotion)
        _apply_weight(session, platform, promotion, weight, k)
        bake_until = step.started_at + dt.timedelta(seconds=promotion.bake_seconds)
        since = promotion.started_at or step.started_at
        settings = promotion.settings or {}
    if weight >= 100:
        with platform.db.write() as session:
            promotion = load(session, promotion_id, lock=True)
            if promotion is None or promotion.state != "rolling_out" or promotion.step_index != k:
                return
            finish_step(
                step_row(session, promotion_id, k, "traffic", weight), "passed", f"version {number} takes all traffic"
            )
            _complete(session, platform, promotion, project, f"version {number} takes all traffic")
        return
    measurement = _watch(platform, promotion_id, k, "rolling_out", bake_until, since, settings)
    if measurement is None:
        return  # rolled back, or moved on by someone else
    with platform.db.write() as session:
        promotion = load(session, promotion_id, lock=True)
        if promotion is None or promotion.state != "rolling_out" or promotion.step_index != k:
            return
        step = step_row(session, promotion_id, k, "traffic", weight)
        if step.state != "running":
            return
        finish_step(
            step, "passed", f"{weight}% baked for {promotion.bake_seconds:g}s within the SLOs", measurement.to_dict()
        )
        enqueue_step(session, platform, promotion, k + 1, project)


def _apply_weight(session: Session, platform: Platform, promotion: Promotion, weight: int, k: int) -> None:
    previous = {int(v): w for v, w in (promotion.previous_weights or {}).items()}
    weights = deployments.split_weights(previous, promotion.version_id, weight)
    deployment = session.scalar(select(Deployment).where(Deployment.id == promotion.deployment_id).with_for_update())
    assert deployment is not None
    current = {
        r.version_id: r.weight
        for r in session.scalars(select(DeploymentVersion).where(DeploymentVersion.deployment_id == deployment.id))
    }
    if all(current.get(v, 0) == weights.get(v, 0) for v in set(current) | set(weights)):
        return  # a resumed step: the traffic is already there
    deployments.set_traffic(
        session,
        deployment,
        weights,
        actor=ACTOR,
        platform=platform,
        message=f"promotion {promotion.id} step {k}: {weight}% to the new version",
    )


def _watch(
    platform: Platform,
    promotion_id: int,
    k: int,
    state: str,
    until: dt.datetime,
    since: dt.datetime,
    settings: dict[str, Any],
) -> guard.Measurement | None:
    """Ask the guard every check interval until ``until``. Returns the last measurement, or None
    when the promotion left step ``k`` in ``state`` (a breach rolled it back, or a person did)."""
    check = settings["guard"]["check_interval"]
    while True:
        remaining = (until - utcnow()).total_seconds()
        time.sleep(max(0.0, min(check, remaining)))
        with platform.db.read() as session:
            promotion = load(session, promotion_id)
            if promotion is None or promotion.state != state or promotion.step_index != k:
                return None
            measurement = _measure(platform, session, promotion)
        reasons = guard.judge(measurement, settings["guard"])
        if reasons:
            _guard_rollback(platform, promotion_id, k, state, reasons, measurement)
            return None
        if utcnow() >= until:
            return measurement


def _measure(platform: Platform, session: Session, promotion: Promotion) -> guard.Measurement:
    project, model, number = names(session, promotion)
    previous = {int(v): w for v, w in (promotion.previous_weights or {}).items()}
    old_id = max(previous, key=lambda v: previous[v]) if previous else None
    old = session.scalar(select(ModelVersion.version).where(ModelVersion.id == old_id)) if old_id is not None else None
    assert promotion.deployment_id is not None
    return guard.measure(
        platform,
        session,
        project=project,
        model=model,
        environment=promotion.environment,
        deployment_id=promotion.deployment_id,
        new_version=number,
        old_version=old,
        since=promotion.started_at or utcnow(),
    )


def _guard_rollback(
    platform: Platform, promotion_id: int, k: int, state: str, reasons: list[str], measurement: guard.Measurement
) -> None:
    detected = utcnow()
    try:
        with platform.db.write() as session:
            promotion = load(session, promotion_id, lock=True)
            if promotion is None or promotion.state != state or promotion.step_index != k:
                return
            step = step_row(session, promotion_id, k, "guard" if state == "completed" else "traffic")
            measured = {**measurement.to_dict(), "breaches": reasons, "detected_at": detected.isoformat()}
            if measurement.first_error_at is not None:
                measured["first_error_at"] = dt.datetime.fromtimestamp(measurement.first_error_at, dt.UTC).isoformat()
            finish_step(step, "failed", "; ".join(reasons), measured)
            rollback(
                session,
                platform,
                promotion,
                actor=GUARD_ACTOR,
                reason="SLO breach: " + "; ".join(reasons),
                measured=measured,
            )
    except Conflict:
        log.info("promotion %s changed while the guard rolled it back; leaving it", promotion_id)


# --- completion and the guard period ----------------------------------------------------------


def _complete(session: Session, platform: Platform, promotion: Promotion, project: str, reason: str) -> None:
    period = float((promotion.settings or {}).get("guard", {}).get("period", 0.0))
    until = utcnow() + dt.timedelta(seconds=period)
    transition(
        session,
        promotion,
        "completed",
        expect=("rolling_out",),
        reason=reason,
        actor=ACTOR,
        platform=platform,
        guard_until=until if period > 0 else None,
    )
    if period > 0:
        enqueue_step(session, platform, promotion, len(promotion.steps) + 1, project)
    else:
        _retire_previous(session, platform, promotion)


def _guard(platform: Platform, promotion_id: int, k: int) -> None:
    with platform.db.write() as session:
        promotion = load(session, promotion_id, lock=True)
        if promotion is None or promotion.state != "completed" or promotion.guard_until is None:
            return
        step = step_row(session, promotion_id, k, "guard")
        if step.state != "running":
            return
        if promotion.step_index < k and not bump(session, promotion, expect_state="completed", step_index=k):
            return
        until, since, settings = (
            promotion.guard_until,
            promotion.started_at or step.started_at,
            promotion.settings or {},
        )
    measurement = _watch(platform, promotion_id, k, "completed", until, since, settings)
    if measurement is None:
        return
    with platform.db.write() as session:
        promotion = load(session, promotion_id, lock=True)
        if promotion is None or promotion.state != "completed" or promotion.step_index != k:
            return
        step = step_row(session, promotion_id, k, "guard")
        if step.state != "running":
            return
        finish_step(step, "passed", "guard period passed within the SLOs", measurement.to_dict())
        if not bump(session, promotion, expect_state="completed", guard_until=None):
            return
        _retire_previous(session, platform, promotion)


def _retire_previous(session: Session, platform: Platform, promotion: Promotion) -> None:
    """Undeploy the versions that served before (by redeploying the new one at 100%), if configured."""
    if not (promotion.settings or {}).get("retire_previous", True) or not promotion.previous_weights:
        return
    project, model, number = names(session, promotion)
    deployments.request_deploy(
        session,
        Identity(ACTOR, "system"),
        project,
        model,
        promotion.environment,
        number,
        weight=100,
        via_promotion=True,
        platform=platform,
    )
