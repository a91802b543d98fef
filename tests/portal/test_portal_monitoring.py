"""The Monitoring pages: the drift heat map and charts from the time-series service, the
latest window, alerts with acknowledge, and the alert-rule editor (create, edit, delete,
errors inline; CSRF and roles)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlplatform.core.monitoring.window_job import compute_monitor_window
from tests.api_client import Api
from tests.portal.world import API, P, World, make_world

MONITORING = f"{P}/models/churn/deployments/staging/monitoring"


@pytest.fixture
def world(make_api: Callable[..., Api], db_kind: str, tmp_path: Path) -> World:
    return make_world(make_api, db_kind, tmp_path)


def reference_csv(rows: int = 2000) -> bytes:
    rng = np.random.default_rng(0)
    lines = ["x1,x2"] + [
        f"{a:.4f},{b:.4f}" for a, b in zip(rng.normal(0.5, 0.1, rows), rng.normal(0.5, 0.1, rows), strict=True)
    ]
    return "\n".join(lines).encode()


def monitored(world: World, *, shift: float = 0.0, windows: int = 2) -> list[dt.datetime]:
    """Version 1 deployed to staging with reference data and ``windows`` computed windows of
    records (x1 shifted by ``shift``); returns the window starts, oldest first."""
    world.register()
    world.deploy()
    response = world.api.put(f"{API}/models/churn/versions/1/reference", data=reference_csv(), content_type="text/csv")
    assert response.status_code in (200, 201), response.json
    deployment_id = world.api.get(f"{API}/models/churn/deployments/staging").json["id"]
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    starts = [now - dt.timedelta(hours=windows - i) for i in range(windows)]
    rng = np.random.default_rng(1)
    for index, start in enumerate(starts):
        drift = shift if index == len(starts) - 1 else 0.0
        records = [
            {
                "timestamp": (start + dt.timedelta(seconds=6 * i)).isoformat(),
                "inputs": {
                    "x1": float(rng.normal(0.5 + drift, 0.1)),
                    "x2": float(rng.normal(0.5, 0.1)) if i % 10 else None,
                },
                "output": int(i % 3 == 0),
                "latency_ms": 5.0 + i % 7,
                "status": 200,
            }
            for i in range(600)
        ]
        response = world.api.post(f"{API}/models/churn/deployments/staging/events", json={"records": records})
        assert response.status_code == 200 and response.json["accepted"] == 600, response.json
    for start in starts:
        compute_monitor_window(world.api.platform, deployment_id, start.isoformat())
    return starts


def create_rule(world: World, **fields: Any) -> Any:
    body = {
        "name": "psi-high",
        "metric": "psi",
        "scope": "any",
        "feature": "",
        "comparison": ">",
        "threshold": "0.2",
        "for_windows": "1",
        "severity": "critical",
        "model": "",
        "environment": "",
        "enabled": "on",
        **fields,
    }
    return world.post(f"{P}/alert-rules", body)


def test_monitoring_pages_without_data(world: World) -> None:
    world.sign_in()
    assert "Nothing is deployed." in world.page(f"{P}/monitoring")
    world.register()
    world.deploy()
    html = world.page(MONITORING)
    assert "No window computed yet." in html and "No drift scores in this range." in html
    assert "No window computed yet." in world.page(f"{P}/monitoring")


def test_heat_map_charts_and_latest_window(world: World) -> None:
    world.sign_in("dev")
    starts = monitored(world, shift=0.4)
    html = world.page(MONITORING)
    heat = html[html.index('<table class="heatmap">') : html.index("</table>", html.index('<table class="heatmap">'))]
    assert re.search(r'<th scope="row">x1</th>', heat) and re.search(r'<th scope="row">x2</th>', heat)
    assert "hm-4" in heat or "hm-3" in heat  # x1 drifted in the last window
    assert "hm-0" in heat or "hm-1" in heat  # and not in the first
    assert starts[-1].strftime("%H:%M") in heat
    charts = json.loads(
        re.search(r'<script type="application/json" id="monitor-charts">(.*?)</script>', html, re.S).group(1)
    )
    by_key = {c["key"]: c for c in charts["charts"]}
    assert {s["label"] for s in by_key["drift"]["series"]} == {"x1", "x2"}
    assert [p[1] for p in by_key["volume"]["series"][0]["points"]] == [600, 600]
    assert {s["label"] for s in by_key["latency"]["series"]} == {"p50", "p99"}
    assert by_key["missing"]["series"] and by_key["errors"]["series"][0]["points"][-1][1] == 0
    assert "Drifted features" in html and "drift-flag" in html  # the latest window's table
    overview = world.page(f"{P}/monitoring")
    assert "churn · staging" in overview and "x1" in overview


def test_heat_map_metric_and_range_controls(world: World) -> None:
    world.sign_in()
    monitored(world, shift=0.4)
    html = world.page(f"{MONITORING}?metric=ks&range=7d")
    assert '<option value="ks" selected>' in html and '<option value="7d" selected>' in html
    assert "worst ks score" in html


def test_alert_rule_editor_and_acknowledge(world: World) -> None:
    world.sign_in("dev")
    assert "No alert rules yet." in world.page(f"{P}/alert-rules")
    response = create_rule(world)
    assert response.status_code == 302
    assert "Alert rule psi-high created." in world.page(f"{P}/alert-rules")
    monitored(world, shift=0.4)
    html = world.page(MONITORING)
    assert "Firing alerts" in html and "psi-high" in html and "Acknowledge" in html
    alert_id = world.api.get(f"{API}/alerts", query_string={"state": "firing"}).json["items"][0]["id"]
    response = world.post(f"{P}/alerts/{alert_id}/acknowledge", {"next": MONITORING}, form_page=MONITORING)
    assert response.status_code == 302 and response.headers["Location"].endswith(MONITORING)
    html = world.page(MONITORING)
    assert "Acknowledged psi-high." in html and "acknowledged by dev" in html
    home = world.page(P)
    assert "Firing alerts" in home and "psi-high" in home


def test_rule_validation_errors_are_inline(world: World) -> None:
    world.sign_in("dev")
    response = create_rule(world, name="", threshold="lots", for_windows="0")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    for field in ("f-name-error", "f-threshold-error", "f-for_windows-error"):
        assert f'id="{field}"' in html
    assert 'value="lots"' in html  # what was typed is kept
    response = create_rule(world, metric="psii")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "unknown metric" in html and 'id="f-metric-error"' in html
    response = create_rule(world, scope="one", feature="")
    assert response.status_code == 400 and 'id="f-feature-error"' in response.get_data(as_text=True)
    response = create_rule(world, channels="pager")
    assert response.status_code == 422 and 'id="channels-error"' in response.get_data(as_text=True)
    create_rule(world)
    response = create_rule(world)
    assert response.status_code == 409 and 'id="f-name-error"' in response.get_data(as_text=True)


def test_edit_and_delete_a_rule(world: World) -> None:
    world.sign_in("dev")
    create_rule(world)
    rule = world.api.get(f"{API}/alert-rules").json["items"][0]
    edit = f"{P}/alert-rules/{rule['id']}"
    html = world.page(edit)
    assert 'value="psi-high"' in html and 'name="revision" value="1"' in html
    body = {
        "name": "psi-higher",
        "metric": "psi",
        "scope": "one",
        "feature": "x1",
        "comparison": ">=",
        "threshold": "0.3",
        "for_windows": "2",
        "severity": "warning",
        "model": "",
        "environment": "staging",
        "revision": "1",
    }
    response = world.post(edit, body, form_page=edit)
    assert response.status_code == 302
    saved = world.api.get(f"{API}/alert-rules/{rule['id']}").json
    assert (
        saved["name"],
        saved["feature"],
        saved["threshold"],
        saved["for_windows"],
        saved["environment"],
        saved["enabled"],
    ) == ("psi-higher", "x1", 0.3, 2, "staging", False)
    stale = world.post(edit, {**body, "threshold": "0.5"}, form_page=edit)  # revision 1 is stale now
    assert stale.status_code == 412 and "the alert rule changed" in stale.get_data(as_text=True)
    response = world.post(f"{edit}/delete", form_page=edit)
    assert response.status_code == 302 and world.api.get(f"{API}/alert-rules").json["items"] == []


def test_viewer_reads_monitoring_but_cannot_change_rules_or_acknowledge(world: World) -> None:
    world.sign_in()
    create_rule(world)
    monitored(world, shift=0.4)
    world.sign_in("viewer")
    html = world.page(MONITORING)
    assert "psi-high" in html and "Acknowledge" not in html
    rules = world.page(f"{P}/alert-rules")
    assert "Creating alert rules needs the developer role" in rules
    rule_id = world.api.get(f"{API}/alert-rules").json["items"][0]["id"]
    assert "Editing alert rules needs the developer role" in world.page(f"{P}/alert-rules/{rule_id}")
    alert_id = world.api.get(f"{API}/alerts").json["items"][0]["id"]
    assert world.post(f"{P}/alerts/{alert_id}/acknowledge").status_code == 403
    assert create_rule(world, name="mine").status_code == 403
    assert world.post(f"{P}/alert-rules/{rule_id}", {"name": "x"}).status_code == 403
    assert world.post(f"{P}/alert-rules/{rule_id}/delete").status_code == 403


def test_rule_forms_need_the_csrf_token(world: World) -> None:
    world.sign_in("dev")
    response = world.post(
        f"{P}/alert-rules", {"name": "x", "metric": "psi", "comparison": ">", "threshold": "1"}, with_csrf=False
    )
    assert response.status_code == 403 and world.api.get(f"{API}/alert-rules").json["items"] == []
