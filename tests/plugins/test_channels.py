"""The built-in alert channels: ``webhook`` against a real local HTTP server, ``log`` via caplog."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlplatform.core.backends import Alert
from mlplatform.core.config import load_config
from mlplatform.core.errors import BackendError, ConfigError
from mlplatform.core.plugins import build_plugin_manager
from mlplatform.plugins import channels
from mlplatform.plugins.channels import LogChannel, WebhookChannel, verify_signature
from tests.conftest import free_port

SECRET = "s3cr3t-for-tests"
ALERT = Alert(
    title="psi drift on age",
    severity="critical",
    state="firing",
    project="churn",
    message="psi 0.31 > 0.1 for 3 windows",
    labels={"deployment": "churn-prod", "feature": "age"},
    values={"psi": 0.31},
    alert_id=7,
    occurred_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers scripted statuses."""

    url: str
    statuses: list[int] = field(default_factory=list)  # consumed per request; 200 when empty
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append({"path": self.path, "headers": self.headers, "body": body})
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def webhook(url: str, **options: Any) -> WebhookChannel:
    pm = build_plugin_manager(load_entry_points=False)
    raw = {"alert_channels": [{"name": "hook", "backend": "webhook", "options": {"url": url, **options}}]}
    validated = load_config(raw, pm.backends)["alert_channels"][0]["options"]
    return WebhookChannel(validated)


def test_webhook_delivers_signed_json(receiver: Receiver) -> None:
    webhook(receiver.url, secret=SECRET, headers={"X-Team": "ml"}).send(ALERT)
    (request,) = receiver.requests
    assert request["path"] == "/hooks/alerts"
    assert json.loads(request["body"]) == ALERT.to_dict()
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Team"] == "ml"
    assert verify_signature(SECRET, request["body"], headers)
    # The documented scheme, recomputed independently.
    timestamp = headers["X-MLPlatform-Timestamp"]
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert headers["X-MLPlatform-Signature"] == f"sha256={digest}"
    assert abs(int(timestamp) - time.time()) < 60


def test_verify_signature_rejects_tampering_wrong_secret_and_replays(receiver: Receiver) -> None:
    webhook(receiver.url, secret=SECRET).send(ALERT)
    body, headers = receiver.requests[0]["body"], dict(receiver.requests[0]["headers"].items())
    lowered = {k.lower(): v for k, v in headers.items()}
    assert verify_signature(SECRET, body, lowered)  # header names are case-insensitive
    assert not verify_signature("other-secret", body, headers)
    assert not verify_signature(SECRET, body.replace(b"churn", b"chorn"), headers)
    assert not verify_signature(SECRET, body, {**headers, "X-MLPlatform-Timestamp": str(int(time.time()) + 1)})
    later = int(headers["X-MLPlatform-Timestamp"]) + 301
    assert not verify_signature(SECRET, body, headers, now=later)
    assert verify_signature(SECRET, body, headers, now=later, tolerance=3600)
    assert not verify_signature(SECRET, body, {})
    assert not verify_signature(SECRET, body, {**headers, "X-MLPlatform-Timestamp": "²"})


def test_webhook_without_secret_is_unsigned(receiver: Receiver) -> None:
    webhook(receiver.url).send(ALERT)
    headers = receiver.requests[0]["headers"]
    assert "X-MLPlatform-Signature" not in headers and "X-MLPlatform-Timestamp" not in headers


def test_webhook_retries_after_500_then_succeeds(receiver: Receiver) -> None:
    receiver.statuses = [500, 429]
    webhook(receiver.url, secret=SECRET, backoff=0.01, max_attempts=3).send(ALERT)
    assert len(receiver.requests) == 3
    deliveries = {r["headers"]["X-MLPlatform-Delivery"] for r in receiver.requests}
    assert len(deliveries) == 1  # one delivery id across retries
    assert all(verify_signature(SECRET, r["body"], r["headers"]) for r in receiver.requests)


def test_webhook_raises_backend_error_after_max_attempts(receiver: Receiver) -> None:
    receiver.statuses = [503] * 10
    with pytest.raises(BackendError) as info:
        webhook(receiver.url, secret=SECRET, backoff=0.01, max_attempts=4).send(ALERT)
    assert len(receiver.requests) == 4
    message = str(info.value)
    assert "4 attempt" in message and "HTTP 503" in message
    assert "/hooks/alerts" not in message and SECRET not in message


def test_webhook_does_not_retry_a_client_error(receiver: Receiver) -> None:
    receiver.statuses = [400]
    with pytest.raises(BackendError, match="HTTP 400"):
        webhook(receiver.url, backoff=0.01, max_attempts=3).send(ALERT)
    assert len(receiver.requests) == 1


def test_webhook_retries_connection_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}/token-in-path"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BackendError, match="failed after 3 attempt.*ConnectionError") as info:
        webhook(url, backoff=0.05, max_attempts=3).send(ALERT)
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff doubles: 0.05 then 0.1
    assert "token-in-path" not in str(info.value)


def test_webhook_config_is_strict_and_secret_is_masked() -> None:
    pm = build_plugin_manager(load_entry_points=False)
    base = {"name": "hook", "backend": "webhook"}
    with pytest.raises(ConfigError, match=r"alert_channels\.0\.options\.url: missing required field"):
        load_config({"alert_channels": [{**base, "options": {}}]}, pm.backends)
    with pytest.raises(ConfigError, match=r"alert_channels\.0\.options\.retries: unknown key"):
        load_config({"alert_channels": [{**base, "options": {"url": "https://x.example", "retries": 2}}]}, pm.backends)
    config = load_config(
        {"alert_channels": [{**base, "options": {"url": "https://x.example", "secret": SECRET}}]}, pm.backends
    )
    assert repr(config["alert_channels"][0]["options"]["secret"]) == "'***'"
    assert WebhookChannel.Config().fields["secret"].metadata["secret"] is True


# --- log channel ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "state", "level"),
    [
        ("critical", "firing", logging.CRITICAL),
        ("warning", "firing", logging.WARNING),
        ("info", "firing", logging.INFO),
        ("critical", "resolved", logging.INFO),
    ],
)
def test_log_channel_logs_at_severity(caplog: pytest.LogCaptureFixture, severity: str, state: str, level: int) -> None:
    alert = Alert(title="latency p99", severity=severity, state=state, project="churn", message="p99 812ms")
    with caplog.at_level(logging.DEBUG, logger="mlplatform.alerts"):
        LogChannel().send(alert)
    (record,) = [r for r in caplog.records if r.name == "mlplatform.alerts"]
    assert record.levelno == level
    assert "latency p99" in record.getMessage() and "churn" in record.getMessage()
    assert record.alert == alert.to_dict()  # type: ignore[attr-defined]


def test_register_alert_channels_contributes_log_and_webhook() -> None:
    assert channels.register_alert_channels() == [LogChannel, WebhookChannel]


def test_log_channel_registered_with_custom_logger(caplog: pytest.LogCaptureFixture) -> None:
    pm = build_plugin_manager(load_entry_points=False)
    assert pm.backends.names("alert_channel") == ["log", "webhook"]
    with caplog.at_level(logging.INFO, logger="ops.alerts"):
        LogChannel({"logger": "ops.alerts"}).send(ALERT)
    assert [r.name for r in caplog.records] == ["ops.alerts"]
