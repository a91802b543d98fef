"""The ``email`` channel against a real local SMTP server (aiosmtpd, a test-only dependency)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest

from mlplatform.core.backends import Alert
from mlplatform.core.config import load_config
from mlplatform.core.errors import BackendError, ConfigError
from plugins_contrib.email import plugin
from plugins_contrib.email.message import build_message
from plugins_contrib.email.plugin import EmailChannel
from tests.conftest import free_port, service_missing
from tests.contrib.helpers import ALERT, declared_entry_points, manager_with

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:  # pragma: no cover - the fixture reports it
    Controller = None

# aiosmtpd runs its own event loop thread; keep its deprecation noise from failing the run.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:aiosmtpd.*")

PASSWORD = "hunter2-Pa55w0rd"
FROM = "mlplatform@alerts.example.com"
TO = ["oncall@example.com", "ml-team@example.com"]


@dataclass
class Mailbox:
    """What the SMTP server received, and which recipients it refuses."""

    port: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    logins: list[str] = field(default_factory=list)


class Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address in self.box.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.box.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": parsed})
        return "250 Message accepted for delivery"


def start_server(box: Mailbox, **kwargs: Any) -> Any:
    if Controller is None:
        service_missing("aiosmtpd is not installed: pip install aiosmtpd")
    controller = Controller(Handler(box), hostname="127.0.0.1", port=box.port, **kwargs)
    controller.start()
    return controller


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = start_server(box)
    yield box
    controller.stop()


@pytest.fixture
def smtp_with_auth() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
        if ok:
            box.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    # Plain-text AUTH only because the test server has no certificate; never in production.
    controller = start_server(box, authenticator=authenticator, auth_require_tls=False)
    yield box
    controller.stop()


def channel(port: int, **options: Any) -> EmailChannel:
    """A channel built from options validated the way the platform validates them."""
    pm = manager_with(plugin)
    raw_options = {"host": "127.0.0.1", "port": port, "from_address": FROM, "to": TO, "timeout": 5, **options}
    raw = {"alert_channels": [{"name": "mail", "backend": "email", "options": raw_options}]}
    return EmailChannel(load_config(raw, pm.backends)["alert_channels"][0]["options"])


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def test_delivers_plain_text_and_html(smtp: Mailbox) -> None:
    channel(smtp.port).send(ALERT)
    (received,) = smtp.messages
    assert received["from"] == FROM and received["to"] == TO
    message = received["message"]
    assert message["Subject"] == "[mlplatform] [FIRING] critical churn: psi drift on age"
    assert message["From"] == FROM and message["To"] == ", ".join(TO)
    assert message["X-MLPlatform-Severity"] == "critical" and message["X-MLPlatform-Project"] == "churn"
    assert message["Date"].datetime == ALERT.occurred_at
    assert message.get_content_type() == "multipart/alternative"
    plain, html = parts(message)
    assert plain.startswith("[FIRING] critical: psi drift on age\nProject: churn\n")
    assert "psi 0.31 > 0.1 for 3 windows" in plain
    assert "  deployment: churn-prod" in plain and "  psi: 0.312346" in plain
    assert "Alert #7 at 2024-05-01T12:00:00+00:00" in plain
    assert "psi drift on age" in html and "psi 0.31 &gt; 0.1 for 3 windows" in html
    assert "<td>churn-prod</td>" in html


def test_html_is_escaped_and_subject_is_one_line() -> None:
    alert = Alert(title="bad\r\nBcc: evil@example.com", severity="info", state="resolved", project="<script>")
    message = build_message(alert, from_address=FROM, to=TO, subject_prefix="")
    assert message["Subject"] == "[RESOLVED] info <script>: bad Bcc: evil@example.com"
    assert message["Bcc"] is None
    _, html = parts(message)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_logs_in_with_username_and_password(smtp_with_auth: Mailbox) -> None:
    channel(smtp_with_auth.port, username="mlp", password=PASSWORD, subject_prefix="").send(ALERT)
    assert smtp_with_auth.logins == ["mlp"]
    assert smtp_with_auth.messages[0]["message"]["Subject"] == "[FIRING] critical churn: psi drift on age"


def test_wrong_password_raises_without_the_password(smtp_with_auth: Mailbox) -> None:
    with pytest.raises(BackendError, match=r"SMTPAuthenticationError \(SMTP 535\)") as info:
        channel(smtp_with_auth.port, username="mlp", password="wrong-" + PASSWORD).send(ALERT)
    assert PASSWORD not in str(info.value) and smtp_with_auth.messages == []


def test_refused_recipients(smtp: Mailbox) -> None:
    smtp.refuse = {TO[1]}
    with pytest.raises(BackendError, match=r"1 of 2 recipient\(s\) refused: ml-team@example.com"):
        channel(smtp.port).send(ALERT)
    assert smtp.messages[0]["to"] == [TO[0]]  # the others still got it
    smtp.refuse = set(TO)
    with pytest.raises(BackendError, match="every recipient was refused"):
        channel(smtp.port).send(ALERT)


def test_starttls_is_required_when_configured(smtp: Mailbox) -> None:
    # The test server offers no STARTTLS: the channel must fail, not fall back to plain text.
    with pytest.raises(BackendError, match="SMTPNotSupportedError") as info:
        channel(smtp.port, use_tls=True, username="mlp", password=PASSWORD).send(ALERT)
    assert PASSWORD not in str(info.value) and smtp.messages == []


def test_implicit_tls_against_a_plain_server_fails(smtp: Mailbox) -> None:
    with pytest.raises(BackendError, match=rf"email via 127\.0\.0\.1:{smtp.port} failed"):
        channel(smtp.port, use_ssl=True, timeout=2).send(ALERT)
    assert smtp.messages == []


def test_connection_refused() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(BackendError, match=rf"email via 127\.0\.0\.1:{port} failed: ConnectionRefusedError") as info:
        channel(port, username="mlp", password=PASSWORD).send(ALERT)
    assert PASSWORD not in str(info.value)


def test_default_ports() -> None:
    base = {"host": "smtp.example.com", "from_address": FROM, "to": TO}
    assert EmailChannel(base).port == 25
    assert EmailChannel({**base, "use_tls": True}).port == 587
    assert EmailChannel({**base, "use_ssl": True}).port == 465
    assert EmailChannel({**base, "use_ssl": True, "port": 2465}).target == "smtp.example.com:2465"


def test_config_is_strict_and_the_password_is_secret() -> None:
    pm = manager_with(plugin)

    def load(**options: Any) -> dict[str, Any]:
        raw = {"alert_channels": [{"name": "mail", "backend": "email", "options": options}]}
        return load_config(raw, pm.backends)["alert_channels"][0]["options"]

    base = {"host": "smtp.example.com", "from_address": FROM, "to": TO}
    with pytest.raises(ConfigError, match=r"options\.to: missing required field"):
        load(host="smtp.example.com", from_address=FROM)
    with pytest.raises(ConfigError, match=r"options\.to"):
        load(**{**base, "to": []})
    with pytest.raises(ConfigError, match=r"options\.to"):
        load(**{**base, "to": ["not-an-address"]})
    with pytest.raises(ConfigError, match=r"options\.use_ssl: use either use_tls"):
        load(**base, use_tls=True, use_ssl=True)
    with pytest.raises(ConfigError, match=r"options\.username: a password needs a username"):
        load(**base, password=PASSWORD)
    with pytest.raises(ConfigError, match=r"options\.starttls: unknown key"):
        load(**base, starttls=True)
    options = load(**base, username="mlp", password=PASSWORD)
    assert options["password"] == PASSWORD and repr(options["password"]) == "'***'"
    assert (options["use_tls"], options["use_ssl"], options["subject_prefix"]) == (False, False, "[mlplatform] ")


def test_date_defaults_to_now_for_an_alert_without_a_time() -> None:
    alert = Alert(title="t", severity="info", state="firing", project="p")
    message = build_message(alert, from_address=FROM, to=TO)
    assert abs(message["Date"].datetime - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_registered_by_the_plugin() -> None:
    assert plugin.register_alert_channels() == [EmailChannel]
    assert manager_with(plugin).backends.entries("alert_channel")["email"].cls is EmailChannel
    assert all(value == "plugins_contrib.email.plugin" for value in declared_entry_points("email"))
