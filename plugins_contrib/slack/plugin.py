"""Registers the ``slack`` alert channel: posts each alert to a Slack incoming webhook."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields, validate

from mlplatform import hookimpl
from mlplatform.core.backends import Alert, AlertChannel
from mlplatform.core.errors import BackendError
from mlplatform.plugins.channels import post_with_retries, public_target
from plugins_contrib.slack.message import slack_payload

__all__ = ["SlackChannel", "register_alert_channels"]


class SlackChannel(AlertChannel):
    """POSTs each alert as a Block Kit message (see ``plugins_contrib.slack.message``) to
    ``webhook_url``.

    Delivery is the webhook channel's ``post_with_retries``: connection errors, timeouts,
    5xx and 429 are retried up to ``max_attempts`` attempts in all with exponential
    ``backoff`` (a 429's ``Retry-After``, up to 60 s, when longer); other statuses fail at
    once. ``webhook_url`` is a secret (its path is the credential): ``BackendError`` names
    only ``scheme://host``.
    """

    name = "slack"

    class Config(Schema):
        webhook_url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False, metadata={"secret": True})
        channel = fields.String(load_default=None, allow_none=True)
        username = fields.String(load_default=None, allow_none=True)
        icon = fields.String(
            load_default=None,
            allow_none=True,
            metadata={"description": "an emoji code like :robot_face: or an image URL"},
        )
        timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0, min_inclusive=False))
        max_attempts = fields.Integer(load_default=3, validate=validate.Range(min=1, max=10))
        backoff = fields.Float(load_default=0.5, validate=validate.Range(min=0, max=60))

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Any = None) -> None:
        super().__init__(options, platform)
        if not self.options.get("webhook_url"):
            raise BackendError("slack channel needs a webhook_url")
        self.target = public_target(self.options["webhook_url"])

    def send(self, alert: Alert) -> None:
        payload = slack_payload(
            alert,
            channel=self.options.get("channel"),
            username=self.options.get("username"),
            icon=self.options.get("icon"),
        )
        post_with_retries(
            self.options["webhook_url"],
            json.dumps(payload, ensure_ascii=False).encode(),
            lambda: {"Content-Type": "application/json; charset=utf-8"},
            label=f"slack {self.target}",
            timeout=float(self.options.get("timeout", 5.0)),
            max_attempts=int(self.options.get("max_attempts", 3)),
            backoff=float(self.options.get("backoff", 0.5)),
        )


@hookimpl
def register_alert_channels() -> list[type[AlertChannel]]:
    return [SlackChannel]
