"""The ``slack`` channel against a real local HTTP server standing in for Slack."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from mlplatform.core.backends import Alert
from mlplatform.core.config import load_config
from mlplatform.core.errors import BackendError, ConfigError
from plugins_contrib.slack import plugin
from plugins_contrib.slack.message import HEADER_MAX, slack_payload
from plugins_contrib.slack.plugin import SlackChannel
from tests.conftest import free_port
from tests.contrib.helpers import ALERT, declared_entry_points, manager_with

TOKEN_PATH = "/services/T0001/B0002/s3cr3tT0k3n"


@dataclass
class FakeSlack:
    """Records each POST; answers scripted ``(status, headers)`` pairs, then ``200 ok``."""

    url: str
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    state = FakeSlack(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append({"path": self.path, "headers": self.headers, "body": body, "at": time.monotonic()})
            status, headers = state.answers.pop(0) if state.answers else (200, {})
            reply = b"ok" if status == 200 else b"error"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}{TOKEN_PATH}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def channel(url: str, **options: Any) -> SlackChannel:
    """A channel built from options validated the way the platform validates them."""
    pm = manager_with(plugin)
    raw = {"alert_channels": [{"name": "ops", "backend": "slack", "options": {"webhook_url": url, **options}}]}
    return SlackChannel(load_config(raw, pm.backends)["alert_channels"][0]["options"])


def test_posts_a_block_kit_message(slack: FakeSlack) -> None:
    channel(slack.url, channel="#ml-alerts", username="mlplatform", icon=":robot_face:").send(ALERT)
    (request,) = slack.requests
    assert request["path"] == TOKEN_PATH
    assert request["headers"]["Content-Type"].startswith("application/json")
    payload = json.loads(request["body"])
    assert payload["channel"] == "#ml-alerts" and payload["username"] == "mlplatform"
    assert payload["icon_emoji"] == ":robot_face:"
    assert payload["text"] == ":rotating_light: [FIRING] churn: psi drift on age"
    header, message, facts, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":rotating_light: psi drift on age", "emoji": True},
    }
    assert message == {"type": "section", "text": {"type": "mrkdwn", "text": "psi 0.31 &gt; 0.1 for 3 windows"}}
    assert [f["text"] for f in facts["fields"]] == [
        "*Project*\nchurn",
        "*State*\nFiring",
        "*Severity*\ncritical",
        "*Labels*\n`deployment`: churn-prod\n`feature`: age",
        "*Values*\n`psi`: 0.312346\n`windows`: 3",
    ]
    assert context["elements"][0]["text"] == "Alert #7 · 2024-05-01T12:00:00+00:00"


def test_message_escapes_cuts_and_marks_resolved() -> None:
    alert = Alert(
        title="x" * 400,
        severity="warning",
        state="resolved",
        project="<!channel> & co",
        labels={},
        values={},
    )
    payload = slack_payload(alert, icon="https://example.com/bot.png")
    header, facts = payload["blocks"]  # no message, no context when there is nothing to show
    assert len(header["text"]["text"]) == HEADER_MAX and header["text"]["text"].endswith("…")
    assert header["text"]["text"].startswith(":white_check_mark: x")
    assert facts["fields"][0]["text"] == "*Project*\n&lt;!channel&gt; &amp; co"
    assert len(facts["fields"]) == 3
    assert payload["icon_url"] == "https://example.com/bot.png" and "icon_emoji" not in payload
    assert "channel" not in payload and "username" not in payload


@pytest.mark.parametrize(("severity", "emoji"), [("warning", ":warning:"), ("info", ":information_source:")])
def test_severity_emoji(severity: str, emoji: str) -> None:
    alert = Alert(title="t", severity=severity, state="firing", project="p")
    assert slack_payload(alert)["blocks"][0]["text"]["text"] == f"{emoji} t"


def test_retries_after_500_then_succeeds(slack: FakeSlack) -> None:
    slack.answers = [(500, {})]
    channel(slack.url, backoff=0.01).send(ALERT)
    assert len(slack.requests) == 2
    assert slack.requests[0]["body"] == slack.requests[1]["body"]


def test_429_waits_for_retry_after(slack: FakeSlack) -> None:
    slack.answers = [(429, {"Retry-After": "1"})]
    channel(slack.url, backoff=0.01, max_attempts=2).send(ALERT)
    first, second = slack.requests
    assert second["at"] - first["at"] >= 0.95  # Retry-After beat the 0.01 s backoff


def test_final_failure_raises_without_the_webhook_url(slack: FakeSlack) -> None:
    slack.answers = [(503, {})] * 5
    with pytest.raises(BackendError) as info:
        channel(slack.url, backoff=0.01, max_attempts=3).send(ALERT)
    assert len(slack.requests) == 3
    message = str(info.value)
    assert message.startswith(f"slack http://{urlsplit(slack.url).netloc} failed after 3 attempt(s): HTTP 503")
    assert "s3cr3tT0k3n" not in message and "/services" not in message


def test_client_error_is_not_retried(slack: FakeSlack) -> None:
    slack.answers = [(404, {})]  # Slack's "no_service": a revoked webhook
    with pytest.raises(BackendError, match="rejected the alert: HTTP 404") as info:
        channel(slack.url, backoff=0.01).send(ALERT)
    assert len(slack.requests) == 1
    assert TOKEN_PATH not in str(info.value)


def test_connection_errors_are_retried_then_raise() -> None:
    url = f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"  # nothing listens there
    with pytest.raises(BackendError, match="failed after 2 attempt.*ConnectionError") as info:
        channel(url, backoff=0.01, max_attempts=2).send(ALERT)
    assert "s3cr3tT0k3n" not in str(info.value)


def test_config_is_strict_and_the_webhook_url_is_secret() -> None:
    pm = manager_with(plugin)
    base = {"name": "ops", "backend": "slack"}
    with pytest.raises(ConfigError, match=r"alert_channels\.0\.options\.webhook_url: missing required field"):
        load_config({"alert_channels": [{**base, "options": {}}]}, pm.backends)
    with pytest.raises(ConfigError, match=r"options\.emoji: unknown key"):
        load_config(
            {"alert_channels": [{**base, "options": {"webhook_url": "https://h.example", "emoji": "x"}}]}, pm.backends
        )
    with pytest.raises(ConfigError, match=r"options\.webhook_url") as info:
        load_config({"alert_channels": [{**base, "options": {"webhook_url": f"ftp://h{TOKEN_PATH}"}}]}, pm.backends)
    assert "s3cr3tT0k3n" not in str(info.value)
    url = f"https://hooks.slack.com{TOKEN_PATH}"
    config = load_config({"alert_channels": [{**base, "options": {"webhook_url": url}}]}, pm.backends)
    options = config["alert_channels"][0]["options"]
    assert options["webhook_url"] == url and repr(options["webhook_url"]) == "'***'"
    assert (options["timeout"], options["max_attempts"], options["backoff"]) == (5.0, 3, 0.5)
    assert SlackChannel.Config().fields["webhook_url"].metadata["secret"] is True


def test_registered_by_the_plugin() -> None:
    assert plugin.register_alert_channels() == [SlackChannel]
    pm = manager_with(plugin)
    assert pm.backends.entries("alert_channel")["slack"].cls is SlackChannel
    assert all(value == "plugins_contrib.slack.plugin" for value in declared_entry_points("slack"))
