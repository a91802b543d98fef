"""Authentication and the one place that checks permissions.

Every view declares what it needs with ``@requires(...)``; a route without a declaration is
denied (and a test walks the URL map to make sure there is none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from api.portal import session as portal_session
from mlplatform.core.backends import Identity
from mlplatform.core.errors import AuthenticationError, PermissionDenied
from mlplatform.core.services import access
from mlplatform.core.services.access_cache import access_cache
from mlplatform.core.services.identity import user_for_identity

F = TypeVar("F", bound=Callable[..., Any])
PORTAL = "portal"
ATTRIBUTE = "_mlp_permission"


def requires(permission: access.Permission) -> Callable[[F], F]:
    """Declare the permission a view needs: ``@requires(project_role("developer"))``."""

    def mark(view: F) -> F:
        setattr(view, ATTRIBUTE, permission)
        return view

    return mark


def permission_for(view_function: Callable[..., Any], method: str) -> access.Permission | None:
    view_class = getattr(view_function, "view_class", None)
    if view_class is not None:
        handler = getattr(view_class, method.lower(), None)
        if handler is None and method == "HEAD":
            handler = getattr(view_class, "get", None)
        return getattr(handler, ATTRIBUTE, None) if handler else None
    return getattr(view_function, ATTRIBUTE, None)


def authenticate() -> Identity | None:
    platform = current_app.extensions["mlplatform"]
    if request.blueprint == PORTAL and "Authorization" not in request.headers:
        return portal_session.identity_from_session(platform)
    for backend in platform.auth_backends:
        identity = backend.identity_from_request(request)
        if identity is not None:
            if identity.user_id is None:
                with platform.db.write() as session:
                    identity = user_for_identity(session, identity)
            return identity
    return None


def check_request() -> None:
    """before_request: resolve the caller and enforce the view's declared permission."""
    g.identity = None
    g.project = None
    if request.routing_exception is not None or request.endpoint is None:
        return  # 404/405 answer with the error shape, whoever asks
    if request.endpoint == "static" or request.endpoint.endswith(".static"):
        return  # stylesheets, scripts and the vendored chart library
    view = current_app.view_functions[request.endpoint]
    permission = permission_for(view, request.method)
    if permission is None:
        raise PermissionDenied(
            f"route {request.url_rule} declares no permission for {request.method}; denied by default"
        )
    if request.blueprint == PORTAL:
        portal_session.check_csrf()
    if permission.scope == "public":
        return
    identity = authenticate()
    if identity is None:
        raise AuthenticationError("this route needs 'Authorization: Bearer <token>'")
    g.identity = identity
    platform = current_app.extensions["mlplatform"]
    cache = access_cache(platform)
    g.project = access.authorize(
        None, identity, permission, (request.view_args or {}).get("project"), lookup=cache.project_and_role
    )


def install(app: Flask) -> None:
    app.before_request(check_request)
