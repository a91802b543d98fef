"""Promotion fixtures: an API with staging and production on the local target, a webhook
channel pointed at a real local HTTP receiver, versions with run metrics (sklearn, or a
python_function model that fails on flagged rows), and synthetic gateway traffic."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlplatform.core.model_loading import DESCRIPTOR
from mlplatform.core.platform import Platform
from tests.alerting.conftest import Receiver, receiver  # noqa: F401 - the fixture, reused
from tests.api_client import Api
from tests.conftest import deep_merge
from tests.deployments.conftest import SIGNATURE, store_version
from tests.serving.conftest import write_sklearn_model

PROJECT = "acme"
MODEL = "churn"
MODEL_BASE = f"/api/v1/projects/{PROJECT}/models/{MODEL}"
PROMOTIONS = f"/api/v1/projects/{PROJECT}/promotions"
FAST = {
    "approval_expiry": 3600,
    "bake_time": 1.0,
    "retire_previous": False,
    "guard": {"period": 0, "check_interval": 0.1, "min_requests": 10},
}

# Fails every row whose x2 is negative: synthetic traffic flags one request in five.
FLAKY_SOURCE = """
class Model:
    def predict(self, frame):
        if (frame["x2"] < 0).any():
            raise ValueError("flagged input")
        return [int(x > 0.5) for x in frame["x1"]]
"""


def noop(platform: Any, **_: Any) -> None:
    """A job handler that does nothing: tests that drive promotion steps by hand use it."""


def papi_config(receiver: Receiver, overrides: dict[str, Any] | None = None) -> dict[str, Any]:  # noqa: F811
    """What ``papi`` configures (the database and data_dir aside)."""
    base = {
        "environments": [
            {"name": "staging", "target": "local"},
            {"name": "production", "target": "local", "promotion_only": True},
        ],
        "alert_channels": [
            {"name": "hook", "backend": "webhook", "options": {"url": receiver.url, "max_attempts": 2, "backoff": 0}}
        ],
        "promotion": FAST,
        "gateway": {"rate_limit": {"requests_per_second": 1e6, "burst": 1_000_000}, "capture": {"enabled": False}},
        "jobs": {"options": {"workers": 8}},
    }
    return deep_merge(base, overrides or {})


@pytest.fixture
def papi(make_api: Callable[..., Api], db_kind: str, receiver: Receiver) -> Callable[..., Api]:  # noqa: F811
    """``papi(overrides, **kwargs)``: an API on ``db_kind`` with project ``acme``, staging and
    production (no approvals unless overridden), fast promotion settings and channel ``hook``."""

    def make(overrides: dict[str, Any] | None = None, **kwargs: Any) -> Api:
        api = make_api(papi_config(receiver, overrides), db=db_kind, **kwargs)
        assert api.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
        return api

    return make


def add_version(
    platform: Platform,
    tmp_path: Path,
    number: int,
    *,
    flaky: bool = False,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    input_example: list[dict[str, Any]] | None = None,
    source: str | None = None,
) -> int:
    """Register a ready version straight in the database (as tests/deployments does); returns its id.

    An sklearn model, or a python_function model: ``flaky`` (``FLAKY_SOURCE``) or ``source``."""
    source = FLAKY_SOURCE if flaky else source
    folder = tmp_path / f"v{number}-{'sk' if source is None else 'pyfunc'}"
    if source is not None:
        folder.mkdir(parents=True)
        (folder / "model.py").write_text(source)
        (folder / DESCRIPTOR).write_text(
            json.dumps({"flavor": "python_function", "module": "model.py", "class": "Model", "signature": SIGNATURE})
        )
    else:
        write_sklearn_model(folder)
    if input_example is not None:
        (folder / "input_example.json").write_text(json.dumps({"instances": input_example}))
    return store_version(
        platform,
        folder,
        number,
        project=PROJECT,
        model=MODEL,
        flavor="sklearn" if source is None else "python_function",
        signature=SIGNATURE,
        run_metrics=metrics or {},
        tags=tags or {},
    )


def promote(api: Api, version: int, *, to: str = "production", token: str = "admin", **body: Any) -> Any:
    return api.post(f"{MODEL_BASE}/promotions", json={"version": version, "to": to, **body}, token=token)


def show(api: Api, promotion_id: int) -> dict[str, Any]:
    response = api.get(f"{PROMOTIONS}/{promotion_id}")
    assert response.status_code == 200, response.json
    return response.json


def settle(api: Api, promotion_id: int, timeout: float = 60) -> dict[str, Any]:
    """Wait for the job chain, then return the promotion."""
    assert api.platform.jobs.wait_idle(timeout)
    return show(api, promotion_id)


def serve_v1(api: Api, tmp_path: Path, **version: Any) -> int:
    """Version 1 serving production (the first promotion takes all traffic at once)."""
    version_id = add_version(api.platform, tmp_path, 1, **version)
    response = promote(api, 1, strategy="direct")
    assert response.status_code == 201, response.json
    if settle(api, response.json["id"])["state"] == "approved":  # steps driven by hand in this test
        drive(api, response.json["id"])
    assert show(api, response.json["id"])["state"] == "completed"
    return version_id


def drive(api: Api, promotion_id: int) -> None:
    """Run every step of the promotion in this thread (tests whose queue does not run them)."""
    from mlplatform.core.services.promotions_rollout import promotion_step

    for step in range(len(show(api, promotion_id)["steps"]) + 2):
        promotion_step(api.platform, promotion_id, step)


def traffic_of(api: Api, env: str = "production") -> dict[int, int]:
    body = api.get(f"{MODEL_BASE}/deployments/{env}").json
    return {t["version"]: t["weight"] for t in body["traffic"]}


@dataclass
class Traffic:
    """Predictions sent through the gateway from a thread, ``rows`` rows a request; every
    ``flag_every``-th request flagged (x2 < 0), none when it is None (it may change while running).

    Each thread rests ``pause`` seconds between requests: in-process senders that never
    sleep hold the GIL and starve the test's own thread, the capture writer and the jobs.
    """

    api: Api
    env: str = "production"
    rows: int = 1
    flag_every: int | None = 5
    pause: float = 0.002
    responses: list[tuple[float, int, int | None]] = field(default_factory=list)  # (time, status, version)
    sent: list[float] = field(default_factory=list)  # when each request of ``responses`` was sent
    _stop: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        client = self.api.app.test_client()
        headers = {"Authorization": f"Bearer {self.api.admin_token}"}
        count = 0
        try:
            while not self._stop.is_set():
                count += 1
                flagged = self.flag_every is not None and count % self.flag_every == 0
                row = {"x1": 1.0, "x2": -1.0 if flagged else 0.5}
                body = {"instances": [row] * self.rows}
                sent = time.time()
                response = client.post(f"{MODEL_BASE}/deployments/{self.env}/predict", json=body, headers=headers)
                version = response.json.get("version") if response.status_code == 200 else None
                if response.status_code != 200:
                    version = _failed_version(response.json.get("message", ""))
                self.sent.append(sent)
                self.responses.append((time.time(), response.status_code, version))
                time.sleep(self.pause)
        finally:
            self._done.set()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 30) -> bool:
        """Wait for the request in flight after ``stop``; False if it is still running."""
        return self._done.wait(timeout)

    def versions_between(self, start: float, end: float) -> list[int | None]:
        return [v for at, _status, v in self.responses if start <= at < end]

    def versions_sent_after(self, at: float) -> list[int | None]:
        """Who answered the requests sent at or after ``at`` (and answered so far)."""
        return [v for sent, (_, _, v) in zip(self.sent, self.responses, strict=False) if sent >= at]


def _failed_version(message: str) -> int | None:
    return -1 if "flagged" in message else None


@pytest.fixture
def traffic() -> Iterator[Callable[[Api], Traffic]]:
    started: list[tuple[Traffic, threading.Thread]] = []

    def start(api: Api, env: str = "production", **options: Any) -> Traffic:
        sender = Traffic(api, env, **options)
        thread = threading.Thread(target=sender.run, daemon=True)
        thread.start()
        started.append((sender, thread))
        return sender

    yield start
    for sender, thread in started:
        sender.stop()
        thread.join(10)
