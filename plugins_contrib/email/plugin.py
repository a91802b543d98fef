"""Registers the ``email`` alert channel: sends each alert by SMTP (``smtplib``)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mlplatform import hookimpl
from mlplatform.core.backends import Alert, AlertChannel
from mlplatform.core.errors import BackendError
from plugins_contrib.email.message import build_message

__all__ = ["EmailChannel", "register_alert_channels"]


class EmailChannel(AlertChannel):
    """Sends each alert as one email to every address in ``to`` (see
    ``plugins_contrib.email.message`` for its content), over a new SMTP connection per alert.

    Security: ``use_ssl`` connects with implicit TLS (port 465 by default), ``use_tls``
    upgrades a plain connection with STARTTLS (port 587 by default); either way the server
    certificate is verified against the system's CAs. With neither, the connection is plain
    (port 25 by default). ``username``/``password`` log in when set.

    No retries: a relay queues and retries itself. ``BackendError`` when the connection,
    TLS, login or sending fails, or any recipient is refused (the others did get the mail);
    its message names the server, the SMTP code and the error kind, never the password.
    """

    name = "email"

    class Config(Schema):
        host = fields.String(required=True, validate=validate.Length(min=1))
        port = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=65535))
        username = fields.String(load_default=None, allow_none=True)
        password = fields.String(load_default=None, allow_none=True, metadata={"secret": True})
        use_tls = fields.Boolean(load_default=False, metadata={"description": "STARTTLS"})
        use_ssl = fields.Boolean(load_default=False, metadata={"description": "implicit TLS"})
        from_address = fields.Email(required=True)
        to = fields.List(fields.Email(), required=True, validate=validate.Length(min=1))
        subject_prefix = fields.String(load_default="[mlplatform] ")
        timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0, min_inclusive=False))

        @validates_schema
        def _check(self, data: dict[str, Any], **kwargs: Any) -> None:
            if data.get("use_tls") and data.get("use_ssl"):
                raise ValidationError("use either use_tls (STARTTLS) or use_ssl, not both", "use_ssl")
            if data.get("password") and not data.get("username"):
                raise ValidationError("a password needs a username", "username")

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Any = None) -> None:
        super().__init__(options, platform)
        if not self.options.get("host") or not self.options.get("to") or not self.options.get("from_address"):
            raise BackendError("email channel needs host, from_address and to")
        default_port = 465 if self.options.get("use_ssl") else 587 if self.options.get("use_tls") else 25
        self.port = int(self.options.get("port") or default_port)
        self.target = f"{self.options['host']}:{self.port}"

    def send(self, alert: Alert) -> None:
        to = list(self.options["to"])
        message = build_message(
            alert,
            from_address=self.options["from_address"],
            to=to,
            subject_prefix=self.options.get("subject_prefix", "[mlplatform] "),
        )
        try:
            with self._connect() as smtp:
                if self.options.get("use_tls"):
                    smtp.starttls(context=ssl.create_default_context())
                if self.options.get("username"):
                    smtp.login(self.options["username"], self.options.get("password") or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise BackendError(
                f"email via {self.target}: every recipient was refused ({len(exc.recipients)})"
            ) from None
        except smtplib.SMTPResponseException as exc:
            # Only the code: the server's text may quote what the client sent.
            raise BackendError(f"email via {self.target} failed: {type(exc).__name__} (SMTP {exc.smtp_code})") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise BackendError(f"email via {self.target} failed: {type(exc).__name__}") from None
        if refused:
            raise BackendError(
                f"email via {self.target}: {len(refused)} of {len(to)} recipient(s) refused: {', '.join(sorted(refused))}"
            )

    def _connect(self) -> smtplib.SMTP:
        host, timeout = self.options["host"], float(self.options.get("timeout", 10.0))
        if self.options.get("use_ssl"):
            return smtplib.SMTP_SSL(host, self.port, timeout=timeout, context=ssl.create_default_context())
        return smtplib.SMTP(host, self.port, timeout=timeout)


@hookimpl
def register_alert_channels() -> list[type[AlertChannel]]:
    return [EmailChannel]
