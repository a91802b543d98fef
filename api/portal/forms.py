"""What the portal's forms share: the caller's role, errors shown beside their fields, and the
one-line confirmations shown after a form succeeded (Post/Redirect/Get).

A form posts to its own route, which declares the same role as the API route it mirrors
(``@requires(access.project_role("developer"))``), so a viewer's post is refused with 403
before any service runs. Pages hide the forms a caller may not use and say who may.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import flash, g, redirect, url_for
from werkzeug.wrappers import Response

from api.portal.views import bp, platform
from mlplatform.core.errors import MLPlatformError
from mlplatform.core.services import access

FLASH_OK = "ok"


@dataclass
class FormErrors:
    """A refused form: the service's message and, per field, what is wrong with it."""

    message: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    status: int = 400

    @classmethod
    def from_error(cls, error: MLPlatformError) -> FormErrors:
        fields: dict[str, list[str]] = {}
        for name, problems in (error.errors or {}).items():
            if isinstance(problems, (list, tuple)):
                fields[str(name)] = [str(p) if not isinstance(p, dict) else _flatten(p) for p in problems]
            elif isinstance(problems, dict):
                fields[str(name)] = [_flatten(problems)]
            else:
                fields[str(name)] = [str(problems)]
        return cls(error.message, fields, error.status)

    def get(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def __bool__(self) -> bool:
        return bool(self.message or self.fields)


def _flatten(problems: dict[str, Any]) -> str:
    return "; ".join(f"{key}: {value}" for key, value in problems.items())


def role() -> str | None:
    """The caller's role in the current project (``admin`` for platform admins), once per request."""
    if "portal_role" not in g:
        project, identity = g.get("project"), g.get("identity")
        if project is None or identity is None:
            g.portal_role = None
        else:
            with platform().db.read() as session:
                g.portal_role = access.role_in(session, identity, project)
    return g.portal_role  # type: ignore[no-any-return]


def can(needed: str) -> bool:
    """True when the caller's role in the current project is at least ``needed``."""
    current = role()
    return current is not None and access.RANK[current] >= access.RANK[needed]


def done(message: str, endpoint: str, **values: Any) -> Response:
    """Confirm a change and go back to a page (the Post/Redirect/Get pattern)."""
    flash(message, FLASH_OK)
    return redirect(url_for(endpoint, **values))


@bp.app_context_processor
def form_helpers() -> dict[str, Any]:
    return {"can": can, "my_role": role}
