"""One error shape for every error: ``{"code", "status", "message", "errors"}``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, jsonify, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException, InternalServerError

from mlplatform.core.errors import MLPlatformError, RateLimited

log = logging.getLogger("mlplatform.api")

WWW_AUTHENTICATE = 'Bearer realm="mlplatform"'


def error_response(
    status: int, message: str, errors: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Response:
    if request.blueprint == "portal":
        return portal_error(status, message)
    response = jsonify(
        {"code": status, "status": HTTPStatus(status).phrase, "message": message, "errors": errors or {}}
    )
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    if status == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


def portal_error(status: int, message: str) -> Response:
    """Pages answer people: sign in again on 401, an error page otherwise."""
    if status == 401:
        return redirect(url_for("portal.login", next=request.full_path if request.method == "GET" else None))
    response = make_response(
        render_template("portal/error.html", status=status, phrase=HTTPStatus(status).phrase, message=message)
    )
    response.status_code = status
    return response


def handle_http_exception(error: HTTPException) -> Response:
    data = getattr(error, "data", None) or {}
    status = error.code or 500
    message = data.get("message") or error.description or HTTPStatus(status).phrase
    errors = data.get("errors") or data.get("messages") or {}
    headers = dict(data.get("headers") or {})
    # Keep what werkzeug attaches, e.g. Allow on a 405.
    for key, value in error.get_headers():
        if key.lower() != "content-type":
            headers.setdefault(key, value)
    if status >= 500:
        log.error("HTTP %s: %s", status, message)
    return error_response(status, message, errors, headers)


def handle_platform_error(error: MLPlatformError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else {}
    if error.status >= 500:
        log.error("%s: %s", type(error).__name__, error.message)
    return error_response(error.status, error.message, error.errors, headers)


def handle_unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("unhandled error", exc_info=error)
    return handle_http_exception(InternalServerError())


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(MLPlatformError, handle_platform_error)
    app.register_error_handler(Exception, handle_unexpected)
