"""The email for an alert: a ``multipart/alternative`` message with a plain-text and an
HTML part carrying the same facts (state, severity, project, title, message, labels,
values, alert id, time).

The subject is ``<prefix>[<STATE>] <severity> <project>: <title>``, with line breaks turned
into spaces (a header cannot hold them). ``X-MLPlatform-State``, ``X-MLPlatform-Severity``
and ``X-MLPlatform-Project`` headers let mail rules sort alerts without parsing the subject.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from mlplatform.core.backends import Alert

SEVERITY_COLOR = {"critical": "#b3261e", "warning": "#b26a00", "info": "#1f5fa8"}
RESOLVED_COLOR = "#2e7d32"


def build_message(alert: Alert, *, from_address: str, to: Sequence[str], subject_prefix: str = "") -> EmailMessage:
    """The message to send for ``alert``; ``Date`` is the alert's time (now if it has none)."""
    message = EmailMessage()
    message["Subject"] = _one_line(
        f"{subject_prefix}[{alert.state.upper()}] {alert.severity} {alert.project}: {alert.title}"
    )
    message["From"] = from_address
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(_aware(alert.occurred_at))
    message["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2] or None)
    message["X-MLPlatform-State"] = _one_line(alert.state)
    message["X-MLPlatform-Severity"] = _one_line(alert.severity)
    message["X-MLPlatform-Project"] = _one_line(alert.project)
    message.set_content(plain_body(alert))
    message.add_alternative(html_body(alert), subtype="html")
    return message


def plain_body(alert: Alert) -> str:
    lines = [f"[{alert.state.upper()}] {alert.severity}: {alert.title}", f"Project: {alert.project}", ""]
    if alert.message:
        lines += [alert.message, ""]
    for heading, mapping in (("Labels", alert.labels), ("Values", alert.values)):
        if mapping:
            lines.append(f"{heading}:")
            lines += [f"  {key}: {format_value(value)}" for key, value in mapping.items()]
    footer = _footer(alert)
    if footer:
        lines += ["", footer]
    return "\n".join(lines).rstrip() + "\n"


def html_body(alert: Alert) -> str:
    color = RESOLVED_COLOR if alert.state == "resolved" else SEVERITY_COLOR.get(alert.severity, "#555555")
    e = html.escape
    rows = [("Project", alert.project), ("State", alert.state), ("Severity", alert.severity)]
    parts = [
        "<!DOCTYPE html>",
        '<html><body style="font-family: sans-serif">',
        f'<h2 style="color: {color}">[{e(alert.state.upper())}] {e(alert.title)}</h2>',
    ]
    if alert.message:
        parts.append(f'<p style="white-space: pre-wrap">{e(alert.message)}</p>')
    parts.append(_table(rows))
    for heading, mapping in (("Labels", alert.labels), ("Values", alert.values)):
        if mapping:
            parts += [f"<h3>{heading}</h3>", _table([(k, format_value(v)) for k, v in mapping.items()])]
    footer = _footer(alert)
    if footer:
        parts.append(f'<p style="color: #777777">{e(footer)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def format_value(value: Any) -> str:
    """Floats to 6 significant digits; numpy scalars as their Python value."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f'<tr><th style="text-align: left; padding-right: 1em">{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>'
        for k, v in rows
    )
    return f"<table>{cells}</table>"


def _footer(alert: Alert) -> str:
    parts = []
    if alert.alert_id is not None:
        parts.append(f"Alert #{alert.alert_id}")
    if alert.occurred_at:
        parts.append(f"at {alert.occurred_at.isoformat()}")
    return " ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _aware(moment: dt.datetime | None) -> dt.datetime:
    if moment is None:
        return dt.datetime.now(dt.UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
