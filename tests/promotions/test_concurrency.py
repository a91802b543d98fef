"""Concurrency and faults: one active promotion per model and environment (409, enforced by
a unique key), approvals racing, a rollback racing a step, and a step job run twice or
killed half-way. Steps are driven by hand here: the queue's ``promotion_step`` is a no-op."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mlplatform.core.db.models import AuditEvent, Job
from mlplatform.core.db.promotions import Promotion
from mlplatform.core.services import promotions_rollout
from mlplatform.core.services.promotions_rollout import promotion_step
from tests.api_client import Api
from tests.promotions.conftest import PROMOTIONS, add_version, promote, serve_v1, show, traffic_of

MANUAL = {"jobs": {"options": {"handlers": {"promotion_step": "tests.promotions.conftest:noop"}}}}


def _race(count: int, action: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = action(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_second_active_promotion_is_a_conflict(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi(
        {
            **MANUAL,
            "environments": [
                {"name": "staging", "target": "local"},
                {"name": "production", "target": "local", "approvals": 1},
            ],
        }
    )
    add_version(api.platform, tmp_path, 1)
    add_version(api.platform, tmp_path, 2)
    statuses = _race(6, lambda i: promote(api, 1 + i % 2).status_code)
    assert sorted(statuses) == [201] + [409] * 5
    response = promote(api, 2)
    assert response.status_code == 409 and "still active" in response.json["message"]
    assert promote(api, 2, to="staging").status_code == 201  # another environment is another slot
    with api.platform.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Promotion).where(Promotion.active_key.is_not(None))) == 2


def test_approvals_racing_approve_once(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi(
        {
            **MANUAL,
            "environments": [
                {"name": "staging", "target": "local"},
                {"name": "production", "target": "local", "approvals": 2},
            ],
        }
    )
    names = ["ann", "bob", "cid", "dan"]
    for name in names:
        api.user(name, role="maintainer", project="acme")
    add_version(api.platform, tmp_path, 1)
    pid = promote(api, 1).json["id"]
    statuses = _race(4, lambda i: api.post(f"{PROMOTIONS}/{pid}/approve", json={}, token=names[i]).status_code)
    assert sorted(statuses) == [200, 200, 409, 409], statuses  # the third and fourth find it approved
    body = show(api, pid)
    assert body["state"] == "approved" and len(body["approvals"]) == 2
    with api.platform.db.read() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "promotion.approved")
            )
            == 1
        )
        jobs = session.scalars(select(Job.args).where(Job.name == "promotion_step")).all()
    assert jobs == [{"promotion_id": pid, "step": 0}]  # the rollout was queued exactly once


def _canary(api: Api, tmp_path: Path, bake: float) -> int:
    serve_v1(api, tmp_path)
    add_version(api.platform, tmp_path, 2)
    pid = promote(api, 2, strategy="canary", steps=[10, 50, 100], bake_seconds=bake).json["id"]
    promotion_step(api.platform, pid, 0)
    return pid


def test_rollback_racing_a_step(papi: Callable[..., Api], tmp_path: Path) -> None:
    api = papi({**MANUAL, "promotion": {"guard": {"check_interval": 0.05}}})
    api.user("mia", role="maintainer", project="acme")
    pid = _canary(api, tmp_path, 0.2)
    promotion_step(api.platform, pid, 1)  # 10%, baked
    assert traffic_of(api) == {1: 90, 2: 10}

    outcomes = _race(
        2,
        lambda i: (
            promotion_step(api.platform, pid, 2)
            if i == 0
            else api.post(f"{PROMOTIONS}/{pid}/rollback", json={"reason": "race"}, token="mia").status_code
        ),
    )
    assert outcomes[1] == 200
    for step in (2, 3, 4):  # whatever was queued later finds the promotion rolled back and does nothing
        promotion_step(api.platform, pid, step)
    body = show(api, pid)
    assert body["state"] == "rolled_back" and traffic_of(api) == {1: 100, 2: 0}
    kinds = [(s["kind"], s["state"]) for s in body["rollout"]]
    assert kinds[-1] == ("rollback", "passed") and ("traffic", "passed") not in kinds[2:-1]


def test_a_step_run_twice_or_killed_half_way_resumes(
    papi: Callable[..., Api], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = papi(MANUAL)
    pid = _canary(api, tmp_path, 0.3)
    promotion_step(api.platform, pid, 0)  # a second delivery of step 0: nothing happens
    assert show(api, pid)["rollout"][0]["state"] == "passed" and traffic_of(api) == {1: 100, 2: 0}

    real_watch = promotions_rollout._watch

    def killed(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("worker killed during the bake")

    monkeypatch.setattr(promotions_rollout, "_watch", killed)
    with pytest.raises(SystemExit):
        promotion_step(api.platform, pid, 1)  # traffic moved and the step recorded, then the worker died
    body = show(api, pid)
    assert (
        traffic_of(api) == {1: 90, 2: 10}
        and body["rollout"][1]["state"] == "running"
        and body["state"] == "rolling_out"
    )

    monkeypatch.setattr(promotions_rollout, "_watch", real_watch)
    promotion_step(api.platform, pid, 1)  # the recovered job resumes the bake
    promotion_step(api.platform, pid, 1)  # and once more: a no-op
    body = show(api, pid)
    assert [(s["index"], s["state"]) for s in body["rollout"]] == [(0, "passed"), (1, "passed")]
    with api.platform.db.read() as session:
        steps = [
            j["step"]
            # in the order they were queued: PostgreSQL returns updated rows in no fixed order
            for j in session.scalars(select(Job.args).where(Job.name == "promotion_step").order_by(Job.created_at))
            if j["promotion_id"] == pid
        ]
    assert steps == [0, 1, 2]  # step 2 queued once
    promotion_step(api.platform, pid, 2)
    promotion_step(api.platform, pid, 3)
    promotion_step(api.platform, pid, 3)
    body = show(api, pid)
    assert body["state"] == "completed" and traffic_of(api) == {1: 0, 2: 100}
    assert [s["weight"] for s in body["rollout"]] == [0, 10, 50, 100]
