"""Portal sign-in: the session cookie, its signing key, and CSRF tokens for forms."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, request, session

from mlplatform.core.backends import Identity
from mlplatform.core.errors import AuthenticationError, PermissionDenied
from mlplatform.core.services import identity as identity_service

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

SESSION_TOKEN = "api_token"
CSRF_KEY = "csrf"


def secret_key(platform: Platform) -> str:
    """``server.secret_key``, or a random key kept 0600 in the data dir (shared by all workers)."""
    configured = platform.config["server"]["secret_key"]
    if configured:
        return str(configured)
    path = Path(platform.data_dir) / "portal-secret"
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
        except FileExistsError:
            pass  # another worker wrote it first
    return path.read_text().strip()


def configure(app: Flask, platform: Platform) -> None:
    app.secret_key = secret_key(platform)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=platform.config["server"]["secure_cookies"],
        SESSION_COOKIE_NAME="mlplatform_session",
    )


def identity_from_session(platform: Platform) -> Identity | None:
    token = session.get(SESSION_TOKEN)
    if not token:
        return None
    try:
        with platform.db.engine.connect() as connection:
            identity, _stale = identity_service.identity_for_token(connection, token, "portal")
    except AuthenticationError:
        session.clear()
        return None
    return identity


def sign_in(platform: Platform, token: str) -> Identity:
    """Check ``token`` and keep it in the session; raises AuthenticationError if it is not valid."""
    with platform.db.engine.connect() as connection:
        identity, _stale = identity_service.identity_for_token(connection, token.strip(), "portal")
    session.clear()
    session[SESSION_TOKEN] = token.strip()
    session[CSRF_KEY] = secrets.token_urlsafe(32)
    return identity


def csrf_token() -> str:
    if CSRF_KEY not in session:
        session[CSRF_KEY] = secrets.token_urlsafe(32)
    return session[CSRF_KEY]


def check_csrf() -> None:
    """Every state-changing portal request carries the session's CSRF token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = session.get(CSRF_KEY, "")
    if not expected or not hmac.compare_digest(sent, expected):
        raise PermissionDenied(
            "the form expired or did not come from this portal (CSRF check failed); reload and try again"
        )
