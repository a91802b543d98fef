"""Rules evaluated on each window: fire after N breaching windows, no repeats, resolve,
acknowledge, and notifications delivered to a real signed-webhook receiver."""

from __future__ import annotations

from sqlalchemy import func, select

from mlplatform.core.db.models import AuditEvent, Job
from mlplatform.core.db.monitoring import Alert, AlertNotification
from mlplatform.plugins.channels import verify_signature
from tests.alerting.conftest import (
    MODEL,
    PROJECT,
    SECRET,
    Receiver,
    add_deployment,
    alerts,
    create_rule,
    settled,
    write_window,
)
from tests.api_client import Api

ALERTS = f"/api/v1/projects/{PROJECT}/alerts"


def audit_actions(api: Api) -> list[str]:
    with api.platform.db.read() as session:
        return list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.resource_type == "alert").order_by(AuditEvent.id)
            )
        )


def test_fires_after_n_breaching_windows_once_then_resolves(aapi: Api, receiver: Receiver) -> None:
    deployment_id, _ = add_deployment(aapi.platform)
    rule = create_rule(aapi, for_windows=3, severity="critical")
    platform = aapi.platform

    assert write_window(platform, deployment_id, 0, {("psi", "age"): 0.5}) == []
    assert write_window(platform, deployment_id, 1, {("psi", "age"): 0.1}) == []  # breaks the streak
    assert write_window(platform, deployment_id, 2, {("psi", "age"): 0.3}) == []
    assert write_window(platform, deployment_id, 3, {("psi", "age"): 0.4, ("psi", "income"): 0.9}) == []
    assert alerts(aapi) == []
    fired = write_window(platform, deployment_id, 4, {("psi", "age"): 0.6})
    assert [(c.event, c.feature, c.value) for c in fired] == [("fired", "age", 0.6)]

    for window in (5, 6):  # still breaching: no second alert, no second notification
        assert write_window(platform, deployment_id, window, {("psi", "age"): 0.7 + window / 100}) == []
    settled(aapi)
    [alert] = alerts(aapi, "firing")
    assert alert["rule_id"] == rule["id"] and alert["model"] == MODEL and alert["environment"] == "production"
    assert (alert["metric"], alert["feature"], alert["severity"], alert["value"]) == ("psi", "age", "critical", 0.76)
    assert alert["first_window"].startswith("2026-03-01T00:20:00") and alert["last_window"].startswith(
        "2026-03-01T00:30:00"
    )

    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert verify_signature(SECRET, body, headers)
    assert not verify_signature("wrong", body, headers)
    sent = receiver.bodies()[0]
    assert (sent["state"], sent["severity"], sent["project"], sent["alert_id"]) == (
        "firing",
        "critical",
        PROJECT,
        alert["id"],
    )
    assert sent["labels"] == {
        "rule": "psi-age",
        "model": MODEL,
        "environment": "production",
        "metric": "psi",
        "feature": "age",
    }
    assert sent["values"]["value"] == 0.6 and sent["values"]["threshold"] == 0.2

    resolved = write_window(platform, deployment_id, 7, {("psi", "age"): 0.05})
    assert [(c.event, c.alert_id) for c in resolved] == [("resolved", alert["id"])]
    settled(aapi)
    assert alerts(aapi, "firing") == []
    [done] = alerts(aapi, "resolved")
    assert done["resolved_at"] is not None and done["value"] == 0.05
    assert [b["state"] for b in receiver.bodies()] == ["firing", "resolved"]
    assert verify_signature(SECRET, receiver.requests[1][1], receiver.requests[1][0])

    detail = aapi.get(f"{ALERTS}/{alert['id']}").json
    assert [(n["channel"], n["event"], n["status"], n["error"]) for n in detail["notifications"]] == [
        ("hook", "firing", "delivered", ""),
        ("hook", "resolved", "delivered", ""),
    ]
    assert all(n["delivered_at"] for n in detail["notifications"])
    assert audit_actions(aapi) == ["alert.fire", "alert.resolve"]

    # Breaching again needs N windows again, and raises a new alert.
    assert write_window(platform, deployment_id, 8, {("psi", "age"): 0.9}) == []
    assert write_window(platform, deployment_id, 9, {("psi", "age"): 0.9}) == []
    assert [c.event for c in write_window(platform, deployment_id, 10, {("psi", "age"): 0.9})] == ["fired"]
    assert [a["state"] for a in alerts(aapi)] == ["resolved", "firing"]


def test_any_feature_lower_bound_worst_version_and_filters(aapi: Api) -> None:
    deployment_id, (v1, v2) = add_deployment(aapi.platform, versions=2)
    staging_id, _ = add_deployment(aapi.platform, environment="staging")
    create_rule(
        aapi,
        name="accuracy",
        metric="accuracy",
        feature="",
        comparison="<",
        threshold=0.8,
        environment="production",
        channels=[],
    )
    create_rule(
        aapi, name="missing", metric="missing_rate", feature=None, comparison=">=", threshold=0.1, channels=["log"]
    )
    platform = aapi.platform

    # Two versions serve: the worst value of the window counts (the canary's 0.7 < 0.8).
    write_window(platform, deployment_id, 0, {("accuracy", ""): 0.95}, version_id=v1, evaluate=False)
    changes = write_window(
        platform,
        deployment_id,
        0,
        {("accuracy", ""): 0.7, ("missing_rate", "age"): 0.1, ("missing_rate", "income"): 0.0},
        version_id=v2,
    )
    assert sorted((c.event, c.feature) for c in changes) == [("fired", ""), ("fired", "age")]
    # The environment filter: staging breaches accuracy but only missing_rate's rule watches it.
    changes = write_window(platform, staging_id, 0, {("accuracy", ""): 0.1, ("missing_rate", "income"): 0.5})
    assert [(c.event, c.feature) for c in changes] == [("fired", "income")]
    # A window without a value for a series changes nothing for it; NULL and NaN are no data.
    nothing = {("accuracy", ""): None, ("missing_rate", "income"): 0.0, ("missing_rate", "age"): float("nan")}
    assert write_window(platform, deployment_id, 1, nothing) == []
    assert len(alerts(aapi, "firing")) == 3
    settled(aapi)
    with platform.db.read() as session:
        assert session.scalar(select(func.count()).select_from(AlertNotification)) == 2  # log channel only
        assert set(session.scalars(select(AlertNotification.status))) == {"delivered"}


def test_an_older_window_does_not_undo_a_newer_one(aapi: Api) -> None:
    deployment_id, _ = add_deployment(aapi.platform)
    create_rule(aapi, channels=[])
    platform = aapi.platform
    write_window(platform, deployment_id, 0, {("psi", "age"): 0.1})
    assert [c.event for c in write_window(platform, deployment_id, 1, {("psi", "age"): 0.9})] == ["fired"]
    # A recompute of window 0 (say late labels) is evaluated again: window 1 decided already.
    from mlplatform.core.services import alerting
    from tests.alerting.conftest import T0

    with platform.db.write() as session:
        assert alerting.evaluate_window(session, platform, deployment_id, T0) == []
        assert alerting.evaluate_window(session, platform, 999_999, T0) == []
    assert len(alerts(aapi, "firing")) == 1


def test_acknowledge_and_list(aapi: Api) -> None:
    deployment_id, _ = add_deployment(aapi.platform)
    create_rule(aapi, feature=None, channels=[])
    write_window(aapi.platform, deployment_id, 0, {("psi", "age"): 0.9, ("psi", "income"): 0.9, ("psi", "zip"): 0.9})
    aapi.user("dev", role="developer", project=PROJECT)
    first, second, third = alerts(aapi, "firing")

    response = aapi.post(f"{ALERTS}/{first['id']}/acknowledge", token="dev")
    assert response.status_code == 200, response.json
    assert response.json["acknowledged_by"] == "dev" and response.json["state"] == "firing"
    again = aapi.post(f"{ALERTS}/{first['id']}/acknowledge")
    assert again.status_code == 200 and again.json["acknowledged_by"] == "dev"  # unchanged

    write_window(aapi.platform, deployment_id, 1, {("psi", "age"): 0.9, ("psi", "income"): 0.0, ("psi", "zip"): 0.9})
    assert aapi.post(f"{ALERTS}/{second['id']}/acknowledge").status_code == 409  # resolved
    assert aapi.post(f"{ALERTS}/424242/acknowledge").status_code == 404
    assert [a["id"] for a in alerts(aapi, "firing")] == [first["id"], third["id"]]
    assert [a["id"] for a in alerts(aapi, "resolved")] == [second["id"]]
    assert aapi.get(f"{ALERTS}?state=open").status_code == 422

    page = aapi.get(f"{ALERTS}?page_size=2").json
    assert len(page["items"]) == 2 and page["next_page_token"]
    rest = aapi.get(f"{ALERTS}?page_size=2&page_token={page['next_page_token']}").json
    assert [a["id"] for a in rest["items"]] == [third["id"]] and rest["next_page_token"] is None
    assert audit_actions(aapi) == ["alert.fire"] * 3 + ["alert.acknowledge", "alert.resolve"]


def test_a_failing_receiver_is_recorded_and_the_alert_keeps_firing(aapi: Api, receiver: Receiver) -> None:
    deployment_id, _ = add_deployment(aapi.platform)
    create_rule(aapi, channels=["hook", "log"])
    receiver.status = 500
    changes = write_window(aapi.platform, deployment_id, 0, {("psi", "age"): 0.9})
    assert [c.event for c in changes] == ["fired"]  # the window job never sees the delivery
    settled(aapi)
    assert len(receiver.requests) == 2  # the channel retried (max_attempts 2)
    [alert] = alerts(aapi, "firing")
    notifications = {n["channel"]: n for n in aapi.get(f"{ALERTS}/{alert['id']}").json["notifications"]}
    assert notifications["hook"]["status"] == "failed"
    assert "HTTP 500" in notifications["hook"]["error"] and "127.0.0.1" in notifications["hook"]["error"]
    assert "/hooks/alerts" not in notifications["hook"]["error"]  # the URL's path may hold a token
    assert notifications["hook"]["delivered_at"] is None
    assert notifications["log"]["status"] == "delivered"
    with aapi.platform.db.read() as session:  # the job itself succeeded: a failed delivery is not retried by the queue
        assert set(session.scalars(select(Job.state).where(Job.name == "deliver_alert_notification"))) == {"succeeded"}
        assert session.scalar(select(Alert.state)) == "firing"
    # Still breaching: nothing is sent again.
    assert write_window(aapi.platform, deployment_id, 1, {("psi", "age"): 0.9}) == []
    settled(aapi)
    assert len(receiver.requests) == 2


def test_a_channel_removed_from_the_config_fails_the_notification(aapi: Api) -> None:
    deployment_id, _ = add_deployment(aapi.platform)
    create_rule(aapi, channels=["hook"])
    aapi.platform.config["alert_channels"] = [c for c in aapi.platform.config["alert_channels"] if c["name"] != "hook"]
    write_window(aapi.platform, deployment_id, 0, {("psi", "age"): 0.9})
    settled(aapi)
    [alert] = alerts(aapi)
    [notification] = aapi.get(f"{ALERTS}/{alert['id']}").json["notifications"]
    assert notification["status"] == "failed" and "'hook'" in notification["error"]
