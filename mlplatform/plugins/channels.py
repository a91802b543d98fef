"""Built-in alert channels: ``log`` (the platform's log) and ``webhook`` (signed HTTP POST).

Webhook signature scheme, for receivers (``verify_signature`` implements it):

- the body is ``alert.to_dict()`` as compact JSON with sorted keys, UTF-8;
- ``X-MLPlatform-Timestamp``: Unix time in whole seconds when the attempt was sent;
- ``X-MLPlatform-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with the channel's
  ``secret``, of ``<timestamp>.<raw body bytes>``. Signing the timestamp with the body means
  a captured request cannot be replayed later with a fresh timestamp: receivers reject
  timestamps older than a few minutes (``verify_signature``: 300 s) and compare in constant time;
- ``X-MLPlatform-Delivery``: an id that stays the same across retries of one alert, so a
  receiver can drop duplicates when a response was lost.

Without a ``secret`` the request is sent unsigned (no timestamp or signature header).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from marshmallow import Schema, fields, validate

from mlplatform import hookimpl
from mlplatform.core.backends import Alert, AlertChannel
from mlplatform.core.errors import BackendError

SIGNATURE_HEADER = "X-MLPlatform-Signature"
TIMESTAMP_HEADER = "X-MLPlatform-Timestamp"
DELIVERY_HEADER = "X-MLPlatform-Delivery"
DEFAULT_TOLERANCE = 300
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class LogChannel(AlertChannel):
    """Logs each alert on a logger (default ``mlplatform.alerts``), with the alert as
    ``record.alert`` (its ``to_dict()``) for structured handlers. A firing alert is logged at
    its severity (info, warning, critical; anything else at warning); a resolved one at info.
    """

    name = "log"

    class Config(Schema):
        logger = fields.String(load_default="mlplatform.alerts")

    def send(self, alert: Alert) -> None:
        logger = logging.getLogger(self.options.get("logger", "mlplatform.alerts"))
        level = logging.INFO if alert.state == "resolved" else LEVELS.get(alert.severity, logging.WARNING)
        text = f"[{alert.state.upper()}] {alert.severity} {alert.project}: {alert.title}"
        if alert.message:
            text += f": {alert.message}"
        logger.log(level, text, extra={"alert": alert.to_dict()})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLPlatform-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    headers: Mapping[str, str] | Any,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """For receivers: True if ``headers`` carry a valid signature of the raw ``body`` made with
    ``secret`` less than ``tolerance`` seconds ago (either way, to allow clock skew).

    ``headers`` is any mapping with ``items()`` (a dict, ``http.server``'s message, Werkzeug's
    ``Headers``); names are matched case-insensitively. Never raises on bad input.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


class WebhookChannel(AlertChannel):
    """POSTs each alert as JSON to ``url``, HMAC-signed with ``secret`` (see the module doc).

    Delivery and retries are ``post_with_retries``'s: connection errors, timeouts, 5xx and 429
    are retried up to ``max_attempts`` attempts in all, waiting ``backoff * 2**(attempt - 1)``
    seconds between them (a 429's ``Retry-After`` in seconds, up to 60, when longer). Other
    responses outside 2xx, redirects included, fail at once. ``BackendError`` after the last
    failure names the host, never the full URL (it often holds a token) or the secret.
    ``headers`` are added to every request; they cannot replace the signature headers or
    ``Content-Type``.
    """

    name = "webhook"
    RETRY_STATUSES: ClassVar[frozenset[int]] = RETRY_STATUSES

    class Config(Schema):
        url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
        secret = fields.String(load_default=None, allow_none=True, metadata={"secret": True})
        timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0, min_inclusive=False))
        max_attempts = fields.Integer(load_default=3, validate=validate.Range(min=1, max=10))
        backoff = fields.Float(load_default=0.5, validate=validate.Range(min=0, max=60))
        headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Any = None) -> None:
        super().__init__(options, platform)
        if not self.options.get("url"):
            raise BackendError("webhook channel needs a url")
        self.target = public_target(self.options["url"])

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.to_dict(), sort_keys=True, separators=(",", ":"), default=_json_default).encode()
        delivery = uuid.uuid4().hex
        post_with_retries(
            self.options["url"],
            body,
            lambda: self._headers(body, delivery),
            label=f"webhook {self.target}",
            timeout=float(self.options.get("timeout", 5.0)),
            max_attempts=int(self.options.get("max_attempts", 3)),
            backoff=float(self.options.get("backoff", 0.5)),
        )

    def _headers(self, body: bytes, delivery: str) -> dict[str, str]:
        reserved = {"content-type", DELIVERY_HEADER.lower(), TIMESTAMP_HEADER.lower(), SIGNATURE_HEADER.lower()}
        headers = {k: v for k, v in (self.options.get("headers") or {}).items() if k.lower() not in reserved}
        headers["Content-Type"] = "application/json"
        headers[DELIVERY_HEADER] = delivery
        secret = self.options.get("secret")
        if secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(str(secret), timestamp, body)
        return headers


def public_target(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: all of it a message may show, since the path, the
    query and the credentials of a webhook URL often hold a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def post_with_retries(
    url: str,
    body: bytes,
    headers: Callable[[], Mapping[str, str]],
    *,
    label: str,
    timeout: float,
    max_attempts: int,
    backoff: float,
) -> None:
    """POST ``body`` to ``url`` until a 2xx answer, for channels that talk HTTP.

    Connection errors, timeouts and ``RETRY_STATUSES`` are retried up to ``max_attempts``
    attempts in all, waiting ``backoff * 2**(attempt - 1)`` seconds between them (a 429's
    ``Retry-After`` in seconds, up to ``MAX_RETRY_AFTER``, when longer). Other statuses,
    redirects included, fail at once. ``headers()`` is called once per attempt, so a signature
    can carry the attempt's own timestamp. Every ``BackendError`` message starts with ``label``
    (e.g. ``"webhook https://host"``) and never contains ``url``.
    """
    last_error = ""
    for attempt in range(1, max_attempts + 1):
        retry_after = 0.0
        try:
            response = requests.post(url, data=body, headers=dict(headers()), timeout=timeout, allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout) as exc:
            last_error = type(exc).__name__
        except requests.RequestException as exc:
            raise BackendError(f"{label} could not be called: {type(exc).__name__}") from None
        else:
            with response:
                if 200 <= response.status_code < 300:
                    return
                last_error = f"HTTP {response.status_code}"
                if response.status_code not in RETRY_STATUSES:
                    raise BackendError(f"{label} rejected the alert: {last_error}")
                retry_after = _retry_after(response.headers.get("Retry-After"))
        if attempt < max_attempts:
            time.sleep(max(backoff * 2 ** (attempt - 1), retry_after))
    raise BackendError(f"{label} failed after {max_attempts} attempt(s): {last_error}")


def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header given in seconds, capped; 0 if absent or a date."""
    value = (value or "").strip()
    return min(float(value), MAX_RETRY_AFTER) if value.isascii() and value.isdigit() else 0.0


@hookimpl
def register_alert_channels() -> list[type[AlertChannel]]:
    return [LogChannel, WebhookChannel]
