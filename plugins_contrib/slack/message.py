"""The Slack message for an alert: Block Kit blocks plus a plain ``text`` fallback.

Layout: a header ``<emoji> <title>``, the alert's message (if any), one section of fields
(project, state, severity, labels, values) and a context line (alert id, time). Text is
escaped for Slack's mrkdwn (``&``, ``<``, ``>``) and cut to Block Kit's limits, so a long
title or message cannot make Slack reject the whole payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlplatform.core.backends import Alert

SEVERITY_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
RESOLVED_EMOJI = ":white_check_mark:"
UNKNOWN_EMOJI = ":grey_question:"
HEADER_MAX = 150  # Block Kit limits, in characters
SECTION_MAX = 3000
FIELD_MAX = 2000


def emoji_for(alert: Alert) -> str:
    """A check mark once resolved; otherwise the severity's emoji."""
    if alert.state == "resolved":
        return RESOLVED_EMOJI
    return SEVERITY_EMOJI.get(alert.severity, UNKNOWN_EMOJI)


def slack_payload(
    alert: Alert, *, channel: str | None = None, username: str | None = None, icon: str | None = None
) -> dict[str, Any]:
    """The JSON body for an incoming webhook. ``icon`` is an emoji code (``:robot_face:``) or
    an image URL. ``channel``, ``username`` and ``icon`` are only honoured by legacy webhooks;
    Slack ignores them for app webhooks, which post where they were installed."""
    emoji = emoji_for(alert)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(f"{emoji} {alert.title}", HEADER_MAX), "emoji": True},
        }
    ]
    if alert.message:
        blocks.append({"type": "section", "text": _mrkdwn(escape(alert.message), SECTION_MAX)})
    fields = [
        _mrkdwn(f"*Project*\n{escape(alert.project)}", FIELD_MAX),
        _mrkdwn(f"*State*\n{escape(alert.state.capitalize())}", FIELD_MAX),
        _mrkdwn(f"*Severity*\n{escape(alert.severity)}", FIELD_MAX),
    ]
    if alert.labels:
        fields.append(_mrkdwn("*Labels*\n" + _pairs(alert.labels), FIELD_MAX))
    if alert.values:
        fields.append(_mrkdwn("*Values*\n" + _pairs(alert.values), FIELD_MAX))
    blocks.append({"type": "section", "fields": fields})
    context = [f"Alert #{alert.alert_id}" if alert.alert_id is not None else "", _time(alert)]
    if any(context):
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(c for c in context if c)}]}
        )
    payload: dict[str, Any] = {
        "text": f"{emoji} [{alert.state.upper()}] {alert.project}: {alert.title}",
        "blocks": blocks,
    }
    if channel:
        payload["channel"] = channel
    if username:
        payload["username"] = username
    if icon:
        payload["icon_url" if icon.startswith(("http://", "https://")) else "icon_emoji"] = icon
    return payload


def escape(text: str) -> str:
    """Text safe in mrkdwn: Slack reads ``<...>`` as links and mentions, so escape them."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_value(value: Any) -> str:
    """A value as shown in the message: floats to 6 significant digits, numpy scalars as Python."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _pairs(mapping: Mapping[str, Any]) -> str:
    return "\n".join(f"`{escape(key)}`: {escape(format_value(value))}" for key, value in mapping.items())


def _time(alert: Alert) -> str:
    return alert.occurred_at.isoformat() if alert.occurred_at else ""


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(text, limit)}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
