"""Steps of the browser journey after the runs: the model, its deployment, a promotion approved
by a second user, and monitoring with data in it. Each step drives the pages as a person would
(nav links, forms, buttons), checks what the page shows and saves a screenshot."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import expect

from mlplatform.client import Client
from tests.portal.conftest import LivePortal

JOB_TIMEOUT = 30_000  # ms: a page watching a job (validation, deploy, rollout) refreshes itself until it is done
PROJECT = "vision"
MODEL = "classifier"
Shot = Callable[[Any, str], Path]


def nav(page: Any, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True).click()


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def register_model(page: Any, portal: LivePortal, run_id: str, shot: Shot) -> None:
    """Models page, register form, the version page from pending to ready; an alias."""
    nav(page, "Models")
    page.wait_for_url(re.compile(r"/projects/vision/models$"))
    expect(page.get_by_text("No models registered yet.")).to_be_visible()
    page.get_by_label("Run ID").fill(run_id)
    page.get_by_label("Artifact folder").fill("model")
    page.get_by_label("Model name").fill(MODEL)
    shot(page, "models-register-form")
    page.get_by_role("button", name="Register version").click()
    page.wait_for_url(re.compile(r"/models/classifier/versions/1$"))
    expect(page.get_by_role("status").first).to_contain_text("Registered version 1 of classifier")
    expect(page.locator("h1 .status-ready")).to_be_visible(timeout=JOB_TIMEOUT)  # the page refreshed itself
    expect(page.get_by_role("link", name="resnet-large")).to_be_visible()  # lineage links the run
    expect(page.get_by_role("rowheader", name="x1")).to_be_visible()  # the signature
    shot(page, "model-version")

    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name=MODEL).click()
    page.get_by_label("Alias", exact=True).fill("champion")
    page.get_by_label("Version", exact=True).fill("1")
    page.get_by_role("button", name="Set alias").click()
    expect(page.get_by_role("status").first).to_contain_text("Alias champion now points at version 1.")
    shot(page, "model")
    nav(page, "Models")
    expect(page.locator("table.models-table")).to_contain_text("champion → v1")
    shot(page, "models")


def deploy_to_staging(page: Any, shot: Shot) -> None:
    """Deploy the champion alias to staging; the deployment page until healthy."""
    nav(page, "Deployments")
    page.wait_for_url(re.compile(r"/projects/vision/deployments$"))
    expect(page.get_by_text("Versions reach production through promotions")).to_be_visible()
    page.locator("summary", has_text="Deploy to staging").click()
    page.get_by_label("Version or alias").fill("champion")
    page.get_by_role("button", name="Deploy", exact=True).click()
    page.wait_for_url(re.compile(r"/models/classifier/deployments/staging$"))
    expect(page.locator("h1 .status-healthy")).to_be_visible(timeout=JOB_TIMEOUT)
    expect(page.get_by_text("Traffic: version 1 100%")).to_be_attached()
    shot(page, "deployment")
    nav(page, "Deployments")
    expect(page.get_by_role("region", name="staging")).to_contain_text(MODEL)
    shot(page, "deployments")


def request_promotion(page: Any, shot: Shot) -> str:
    """Request a canary to production; returns the promotion page's URL."""
    nav(page, "Promotions")
    expect(page.get_by_text("No promotions yet.")).to_be_visible()
    page.get_by_label("Version", exact=True).fill("1")
    page.get_by_label("Target environment").select_option("production")
    page.get_by_label("Strategy").select_option("canary")
    page.get_by_label("Canary steps (%)").fill("50, 100")
    page.get_by_label("Time per step (s)").fill("1.5")
    page.get_by_role("button", name="Request promotion").click()
    page.wait_for_url(re.compile(r"/projects/vision/promotions/\d+$"))
    expect(page.locator("h1 .status-pending_approval")).to_be_visible()
    expect(page.locator(".check-passed")).to_contain_text("accuracy >= 0.5")
    expect(page.get_by_text("You requested this promotion: another maintainer must approve it.")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    shot(page, "promotion-pending")
    return page.url


def approve_as_maintainer(page: Any, portal: LivePortal, run_id: str, promotion_url: str, shot: Shot) -> None:
    """Sign out; sign in as a maintainer created through the API; approve the first promotion
    (nothing serves production yet, so it takes all traffic at once); then approve a canary of
    version 2 (requested through the SDK) and watch its steps until it completes."""
    token = portal.api.user("maria", role="maintainer", project=PROJECT)
    with Client(portal.url, portal.api.admin_token, project=PROJECT) as client:
        version = client.register_model(run_id, "model", name=MODEL)
        client.wait_for_version(MODEL, version.version, timeout=30)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))
    sign_in(page, portal.url, token)
    page.wait_for_url(re.compile(r"/projects/vision$"))
    expect(page.get_by_role("heading", name=re.compile("Promotions waiting for approval"))).to_be_visible()
    shot(page, "home-waiting")
    page.get_by_role("link", name=re.compile(r"classifier v1 → production")).click()
    page.wait_for_url(promotion_url)
    page.get_by_label("Comment (optional)").fill("numbers look right")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").first).to_contain_text("You approved promotion")
    expect(page.locator("h1 .status-completed")).to_be_visible(timeout=JOB_TIMEOUT)

    with Client(portal.url, portal.api.admin_token, project=PROJECT) as client:
        canary = client.promote(MODEL, 2, to="production", strategy="canary", steps=[50, 100], bake_seconds=6.0)
    nav(page, "Promotions")
    expect(page.get_by_role("region", name=re.compile("Waiting for approval"))).to_contain_text("classifier v2")
    shot(page, "promotions")
    page.get_by_role("link", name=f"#{canary.id}", exact=True).click()
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("h1 .status-rolling_out")).to_be_visible(timeout=JOB_TIMEOUT)
    expect(page.locator("ol.steps li.step-running", has_text="Traffic")).to_contain_text("50%", timeout=JOB_TIMEOUT)
    shot(page, "promotion-rolling-out")
    expect(page.locator("h1 .status-completed")).to_be_visible(timeout=JOB_TIMEOUT)
    expect(page.locator("ol.steps")).to_contain_text("takes all traffic")
    shot(page, "promotion-completed")


def send_traffic(portal: LivePortal) -> list[dt.datetime]:
    """Reference data for v1 and v2; three earlier hours of records like it (events API), then this
    hour's predictions through the gateway with x1 shifted; every window computed in order."""
    api, base = portal.api, f"/api/v1/projects/{PROJECT}/models/{MODEL}"
    rng = np.random.default_rng(3)
    reference = "x1,x2\n" + "\n".join(
        f"{a:.4f},{b:.4f}" for a, b in zip(rng.normal(0.5, 0.1, 2000), rng.normal(0.5, 0.1, 2000), strict=True)
    )
    for version in (1, 2):
        assert api.put(f"{base}/versions/{version}/reference", data=reference, content_type="text/csv").status_code in (
            200,
            201,
        )
    now = dt.datetime.now(dt.UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    starts = [current - dt.timedelta(hours=h) for h in (3, 2, 1)] + [current]
    for start in starts[:-1]:
        records = [
            {
                "timestamp": (start + dt.timedelta(seconds=6 * i)).isoformat(),
                "latency_ms": float(4 + i % 5),
                "status": 200,
                "inputs": {"x1": float(rng.normal(0.5, 0.1)), "x2": float(rng.normal(0.5, 0.1))},
                "output": i % 2,
            }
            for i in range(600)
        ]
        assert api.post(f"{base}/deployments/production/events", json={"records": records}).json["accepted"] == 600
    with Client(portal.url, portal.api.admin_token, project=PROJECT) as client:
        for _ in range(6):
            rows = [{"x1": float(rng.normal(0.85, 0.1)), "x2": float(rng.normal(0.5, 0.1))} for _ in range(100)]
            assert len(client.predict(MODEL, "production", rows).predictions) == 100
    assert api.app.extensions["mlplatform_gateway"].capture.flush(10)
    for start in starts:  # in order: alerts follow the latest window
        response = api.post(f"{base}/deployments/production/monitoring/windows", json={"start": start.isoformat()})
        assert response.status_code == 202, response.json
        assert api.platform.jobs.wait_idle(30)
    return starts


def alert_rule(page: Any, shot: Shot) -> None:
    """A rule through the editor: first with a mistake (shown inline), then right."""
    nav(page, "Monitoring")
    page.get_by_role("link", name="Alert rules").first.click()
    page.get_by_label("Name").fill("x1 drift")
    page.get_by_label("Threshold").fill("a lot")
    page.get_by_role("button", name="Create rule").click()
    expect(page.locator("#f-threshold-error")).to_contain_text("a number")
    shot(page, "alert-rule-error")
    page.get_by_label("Threshold").fill("0.2")
    page.get_by_label("Severity").select_option("critical")
    page.get_by_role("button", name="Create rule").click()
    expect(page.get_by_role("status").first).to_contain_text("Alert rule x1 drift created.")
    shot(page, "alert-rules")


def monitoring(page: Any, portal: LivePortal, shot: Shot, canvas_is_drawn: Callable[[Any, str], bool]) -> None:
    """The monitoring pages with data: heat map, charts, the firing alert acknowledged."""
    nav(page, "Monitoring")
    expect(page.get_by_role("heading", name=re.compile("Firing alerts"))).to_contain_text("1")
    shot(page, "monitoring-overview")
    page.get_by_role("link", name="classifier · production").first.click()
    page.wait_for_url(re.compile(r"/deployments/production/monitoring$"))
    heat = page.locator("table.heatmap")
    expect(heat.get_by_role("rowheader", name="x1")).to_be_visible()
    expect(heat.locator("td.hm-4, td.hm-3").first).to_be_visible()  # x1 drifted this hour
    assert heat.locator("td.hm-0, td.hm-1").count() >= 3  # and not before
    for key in ("drift", "missing", "volume", "latency"):
        assert canvas_is_drawn(page, key), key
    expect(page.locator(".kpi", has_text="Rows")).to_contain_text("600")
    shot(page, "monitoring")
    page.get_by_role("button", name=re.compile("^Acknowledge")).click()
    expect(page.get_by_role("status").first).to_contain_text("Acknowledged x1 drift.")
    expect(page.get_by_text("acknowledged by maria")).to_be_visible()
    shot(page, "monitoring-acknowledged")
    nav(page, "Home")
    expect(page.get_by_role("heading", name=re.compile("Firing alerts"))).to_be_visible()
    shot(page, "home")
