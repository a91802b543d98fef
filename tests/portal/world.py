"""A project for the portal's model, deployment, promotion and monitoring pages.

``make_world(make_api, db)``: an app with ``staging`` (direct deploys) and ``production``
(promotions only, one approval), fast promotion settings, project ``shop`` with members by
role, and a finished run holding a small sklearn model under ``model/``. Form helpers sign
in through the login form and post with the page's CSRF token, like a browser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.api_client import Api

PROJECT = "shop"
P = f"/projects/{PROJECT}"
API = f"/api/v1/projects/{PROJECT}"
SIGNATURE = {
    "inputs": [{"name": "x1", "type": "double"}, {"name": "x2", "type": "double"}],
    "outputs": [{"name": "prediction", "type": "long"}],
}
CONFIG: dict[str, Any] = {
    "environments": [
        {"name": "staging", "target": "local"},
        {
            "name": "production",
            "target": "local",
            "promotion_only": True,
            "approvals": 1,
            "policies": {"min_metrics": {"accuracy": 0.9}},
        },
    ],
    "promotion": {
        "approval_expiry": 3600,
        "bake_time": 0.2,
        "retire_previous": False,
        "strategy": "direct",
        "guard": {"period": 0, "check_interval": 0.1, "min_requests": 10},
    },
    "gateway": {"rate_limit": {"requests_per_second": 1e6, "burst": 1_000_000}},
}


def write_model(folder: Path) -> Path:
    """A logistic regression on x1, x2 (class 1 when x1 is high) with its descriptor."""
    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"x1": [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], "x2": [1.0, 0.5, 0.2, 0.1, 0.4, 0.9]})
    joblib.dump(LogisticRegression().fit(frame, [0, 0, 0, 1, 1, 1]), folder / "model.joblib")
    (folder / "mlplatform-model.json").write_text(json.dumps({"flavor": "sklearn", "signature": SIGNATURE}))
    return folder


@dataclass
class World:
    api: Api
    run_id: str

    @property
    def client(self) -> Any:
        return self.api.client

    def sign_in(self, who: str = "admin") -> None:
        """Sign in through the form as ``admin`` or a member created by ``make_world``."""
        token = self.api.admin_token if who == "admin" else self.api.tokens[who]
        page = self.client.get("/login").get_data(as_text=True)
        response = self.client.post("/login", data={"token": token, "csrf_token": csrf(page)})
        assert response.status_code == 302, response.get_data(as_text=True)

    def page(self, path: str, status: int = 200) -> str:
        response = self.client.get(path)
        assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:2000])
        return response.get_data(as_text=True)

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, form_page: str | None = None, with_csrf: bool = True
    ) -> Any:
        """Post a form the way its page does (CSRF token from ``form_page``, default the project home)."""
        body = dict(data or {})
        if with_csrf:
            body["csrf_token"] = csrf(self.page(form_page or P))
        return self.client.post(path, data=body)

    def wait(self) -> None:
        assert self.api.platform.jobs.wait_idle(30)

    def register(self, model: str = "churn") -> int:
        """Register the run's model through the form; returns the version number, validated."""
        response = self.post(f"{P}/models/register", {"run_id": self.run_id, "artifact_path": "model", "model": model})
        assert response.status_code == 302, response.get_data(as_text=True)
        self.wait()
        return int(response.headers["Location"].rsplit("/", 1)[-1])

    def deploy(self, model: str = "churn", version: str = "1", environment: str = "staging") -> None:
        response = self.post(
            f"{P}/deployments/deploy", {"model": model, "version": version, "environment": environment, "weight": "100"}
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        self.wait()


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def make_world(make_api: Callable[..., Api], db: str, tmp_path: Path, overrides: dict[str, Any] | None = None) -> World:
    from tests.conftest import deep_merge

    api = make_api(deep_merge(CONFIG, overrides or {}), db=db)
    assert api.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
    api.user("dev", role="developer", project=PROJECT)
    api.user("viewer", role="viewer", project=PROJECT)
    api.user("maint", role="maintainer", project=PROJECT)
    experiment = api.post(f"{API}/experiments", json={"name": "baseline"}).json["id"]
    run = api.post(
        f"{API}/experiments/{experiment}/runs",
        json={"name": "good-run", "params": {"C": "1.0"}, "metrics": [{"key": "accuracy", "value": 0.93, "step": 0}]},
    ).json
    folder = write_model(tmp_path / "model")
    with api.platform.db.read() as session:
        from mlplatform.core.db.tracking import Run

        prefix = session.get(Run, run["id"]).artifact_prefix.rstrip("/") + "/"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as stream:
            api.platform.artifact_store.put(f"{prefix}model/{path.name}", stream)
    api.patch(f"{API}/runs/{run['id']}", json={"status": "finished"})
    return World(api, run["id"])
