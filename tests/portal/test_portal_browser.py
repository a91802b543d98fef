"""The portal in a real browser, the whole journey in one test: sign in, find runs logged
through the SDK, filter, sort, compare, open a run and the audit log; register a model from a
run through the page, deploy it to staging, request a promotion to production and approve it
as a second user (a maintainer), send predictions through the gateway and open the monitoring
page with drift, charts and a firing alert. A screenshot of each page for a person to look at."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlplatform.client import Client
from tests.portal import journey
from tests.portal.conftest import LivePortal
from tests.portal.world import write_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def portal_config() -> dict[str, Any]:
    """Staging takes deploys; production only promotions, with one maintainer's approval and a
    metric gate; a fast canary (1 s per step, no guard period)."""
    return {
        "environments": [
            {"name": "staging", "target": "local"},
            {
                "name": "production",
                "target": "local",
                "promotion_only": True,
                "approvals": 1,
                "policies": {"min_metrics": {"accuracy": 0.5}},
            },
        ],
        "promotion": {"bake_time": 1.0, "retire_previous": False, "guard": {"period": 0, "check_interval": 0.1}},
        "gateway": {"rate_limit": {"requests_per_second": 1e6, "burst": 1_000_000}},
    }


def log_two_runs(portal: LivePortal, tmp_path: Path) -> dict[str, str]:
    """Two runs of one experiment through the SDK, differing in ``lr``; one with an artifact."""
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 4096)
    ids = {}
    with Client(portal.url, portal.api.admin_token, project="vision") as client:
        client.create_project("vision", "Image models")
        for name, lr, scale in (("resnet-small", 0.1, 0.8), ("resnet-large", 0.01, 0.95)):
            with client.start_run(
                experiment="baseline", name=name, params={"lr": lr, "epochs": 30}, tags={"team": "cv"}
            ) as run:
                for step in range(60):
                    run.log_metrics(
                        {"accuracy": scale * (1 - 0.9 ** (step + 1)), "loss": 2.0 * 0.93**step / scale}, step=step
                    )
                if name == "resnet-large":
                    run.log_artifact(weights, "model/weights.bin")
                    for path in sorted(write_model(tmp_path / "sk-model").iterdir()):
                        run.log_artifact(path, f"model/{path.name}")
            ids[name] = run.id
    return ids


def names_in_table(page: Any) -> list[str]:
    return page.locator("table.runs-table td.run-name a").all_inner_texts()


def canvas_is_drawn(page: Any, key: str) -> bool:
    """True once the chart for ``key`` is ready and its canvas has coloured pixels."""
    figure = page.locator(f'figure.chart[data-key="{key}"]')
    figure.and_(page.locator('[data-state="ready"]')).wait_for()
    return figure.locator("canvas").evaluate(
        """canvas => {
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
            return false;
        }"""
    )


def test_a_session_through_the_portal(
    live_portal: LivePortal,
    browser_page: Any,
    screenshot: Callable[[Any, str], Path],
    expected_console_errors: list[str],
    tmp_path: Path,
) -> None:
    page = browser_page
    expected_console_errors.append("status of 400")  # the filter with a syntax error answers 400
    run_ids = log_two_runs(live_portal, tmp_path)

    page.goto(f"{live_portal.url}/login")
    page.get_by_label("API token").fill(live_portal.api.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/projects/vision$"))

    # The runs table, from the nav.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Experiments").click()
    page.wait_for_url(re.compile(r"/projects/vision/experiments"))
    assert sorted(names_in_table(page)) == ["resnet-large", "resnet-small"]
    assert page.locator("thead").get_by_role("link", name=re.compile("^lr")).is_visible()
    assert page.locator("thead").get_by_role("link", name=re.compile("^accuracy")).is_visible()
    screenshot(page, "runs-table")

    # Choose the columns: drop a param.
    page.locator("summary", has_text="Columns").click()
    page.get_by_label("epochs").uncheck()
    screenshot(page, "runs-columns")
    page.get_by_role("button", name="Show these columns").click()
    page.wait_for_url(re.compile(r"cols=1"))
    assert page.locator("thead").get_by_role("link", name=re.compile("^epochs")).count() == 0
    assert page.locator("thead").get_by_role("link", name=re.compile("^lr")).is_visible()

    # A syntax error is shown where it is; then a filter that keeps one run, then both.
    box = page.get_by_label("Filter runs")
    box.fill("params.lr = '0.1' AND")
    box.press("Enter")
    page.get_by_role("alert").wait_for()
    assert "position 21" in page.get_by_role("alert").inner_text()
    screenshot(page, "runs-filter-error")
    box = page.get_by_label("Filter runs")
    box.fill("params.lr = '0.1'")
    box.press("Enter")
    page.wait_for_url(re.compile(r"filter=params\.lr"))
    assert names_in_table(page) == ["resnet-small"]
    box = page.get_by_label("Filter runs")
    box.fill("metrics.accuracy > 0.5 AND tags.team = 'cv'")
    box.press("Enter")
    page.wait_for_url(re.compile(r"filter=metrics\.accuracy"))
    assert sorted(names_in_table(page)) == ["resnet-large", "resnet-small"]

    # Sort by a metric column: ascending, then descending.
    page.locator("thead").get_by_role("link", name=re.compile("^accuracy")).click()
    page.wait_for_url(re.compile(r"order=metrics\.accuracy\+ASC"))
    assert names_in_table(page) == ["resnet-small", "resnet-large"]
    page.locator("thead").get_by_role("link", name=re.compile("^accuracy")).click()
    page.wait_for_url(re.compile(r"order=metrics\.accuracy\+DESC"))
    assert names_in_table(page) == ["resnet-large", "resnet-small"]
    assert page.locator('th[aria-sort="descending"]').inner_text().startswith("accuracy")
    assert page.get_by_label("Filter runs").input_value() == "metrics.accuracy > 0.5 AND tags.team = 'cv'"  # kept
    screenshot(page, "runs-filtered-sorted")

    # Select both runs and compare.
    compare = page.locator("#compare-button")
    assert compare.is_disabled()
    page.get_by_label("Select resnet-large for comparison").check()
    page.get_by_label("Select resnet-small for comparison").check()
    assert compare.inner_text() == "Compare 2 runs" and compare.is_enabled()
    compare.click()
    page.wait_for_url(re.compile(r"/projects/vision/compare\?run="))
    lr_row = page.locator("tr", has=page.get_by_role("rowheader", name=re.compile(r"^lr")))
    assert lr_row.get_attribute("class") == "diff" and "differs" in lr_row.text_content()
    epochs_row = page.locator("tr", has=page.get_by_role("rowheader", name=re.compile(r"^epochs")))
    assert epochs_row.get_attribute("class") is None
    assert canvas_is_drawn(page, "accuracy") and canvas_is_drawn(page, "loss")
    screenshot(page, "compare")

    # A run's page: params, charts, artifacts.
    page.locator("main").get_by_role("link", name="resnet-large").first.click()
    page.wait_for_url(re.compile(r"/projects/vision/runs/[0-9a-f]{32}$"))
    assert page.get_by_role("heading", level=1).inner_text().startswith("resnet-large")
    assert canvas_is_drawn(page, "loss")
    page.get_by_role("link", name="model/").click()
    page.get_by_role("link", name="Download weights.bin").wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download weights.bin").click()
    assert download.value.suggested_filename == "weights.bin"
    screenshot(page, "run")

    # The audit log (admins).
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    page.wait_for_url(re.compile(r"/audit$"))
    assert "The chain is intact." in page.get_by_role("status").inner_text()
    assert page.locator("table.audit-table tbody tr").count() >= 5
    page.get_by_label("Action").fill("run.create")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"action=run\.create"))
    assert page.locator("table.audit-table tbody tr").count() == 2
    screenshot(page, "audit")
    # The nav keeps the project on the audit page.
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Experiments").is_visible()

    # A model from the large run, deployed to staging, promoted to production (approved by a
    # maintainer: the requester cannot), then monitored with predictions sent through the gateway.
    journey.register_model(page, live_portal, run_ids["resnet-large"], screenshot)
    journey.deploy_to_staging(page, screenshot)
    promotion_url = journey.request_promotion(page, screenshot)
    journey.approve_as_maintainer(page, live_portal, run_ids["resnet-large"], promotion_url, screenshot)
    journey.alert_rule(page, screenshot)
    journey.send_traffic(live_portal)
    journey.monitoring(page, live_portal, screenshot, canvas_is_drawn)


def test_empty_states(
    live_portal: LivePortal,
    browser_page: Any,
    screenshot: Callable[[Any, str], Path],
    expected_console_errors: list[str],
) -> None:
    page = browser_page
    expected_console_errors.append("status of 400")  # compare with one run answers 400
    api = live_portal.api
    api.post("/api/v1/projects", json={"name": "fresh"})
    api.post("/api/v1/projects", json={"name": "other"})
    experiment = api.post("/api/v1/projects/other/experiments", json={"name": "quiet"}).json["id"]
    run = api.post(f"/api/v1/projects/other/experiments/{experiment}/runs", json={"name": "bare"}).json["id"]
    page.goto(f"{live_portal.url}/login")
    page.get_by_label("API token").fill(api.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))
    page.goto(f"{live_portal.url}/projects/fresh/experiments")
    assert page.get_by_text("No experiments yet.").first.is_visible()
    screenshot(page, "empty-experiments")
    page.goto(f"{live_portal.url}/projects/other/runs/{run}")
    assert page.get_by_text("No metrics logged.").is_visible() and page.get_by_text("No artifacts.").is_visible()
    screenshot(page, "empty-run")
    page.goto(f"{live_portal.url}/projects/other/compare?run={run}")
    assert page.get_by_text("Pick 2 to 10 runs").is_visible()
    screenshot(page, "compare-too-few")
    # The model, deployment, promotion and monitoring pages of a project with nothing in it.
    for path, text, name in (
        ("models", "No models registered yet.", "empty-models"),
        ("deployments", "Nothing deployed to staging.", "empty-deployments"),
        ("promotions", "No promotions yet.", "empty-promotions"),
        ("monitoring", "Nothing is deployed.", "empty-monitoring"),
        ("alert-rules", "No alert rules yet.", "empty-alert-rules"),
        ("", "No runs yet.", "empty-home"),
    ):
        page.goto(f"{live_portal.url}/projects/fresh/{path}".rstrip("/"))
        assert page.get_by_text(text).first.is_visible(), path
        screenshot(page, name)
