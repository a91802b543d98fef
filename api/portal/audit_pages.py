"""The audit log for platform admins: search by actor, action, resource, project and time,
a page at a time, with the hash chain's verification status on top."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

from flask import render_template, request
from werkzeug.datastructures import MultiDict

from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.errors import InvalidInput
from mlplatform.core.services import access, audit

PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditFilters:
    """The search form's fields, as typed (times are UTC, ``YYYY-MM-DDTHH:MM``)."""

    actor: str = ""
    action: str = ""
    resource_type: str = ""
    resource_id: str = ""
    project: str = ""
    start: str = ""
    end: str = ""

    @classmethod
    def from_args(cls, args: MultiDict[str, str]) -> AuditFilters:
        return cls(**{f.name: args.get(f.name, "").strip() for f in fields(cls)})

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def search_args(self) -> dict[str, Any]:
        """Keyword arguments for ``audit.search``; ``InvalidInput`` names a time it cannot read."""
        found: dict[str, Any] = {}
        for name in ("actor", "action", "resource_type", "resource_id", "project"):
            if getattr(self, name):
                found[name] = getattr(self, name)
        for name in ("start", "end"):
            if getattr(self, name):
                found[name] = parse_time(name, getattr(self, name))
        return found

    def query(self, **extra: Any) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}, **extra}


def parse_time(name: str, text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{'From' if name == 'start' else 'To'}: {text!r} is not a time (use YYYY-MM-DD HH:MM, UTC)",
            errors={name: ["not a time"]},
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@bp.route("/audit")
@requires(access.ADMIN)
def audit_log() -> Any:
    """Every audit event, oldest first, filtered; and whether the hash chain is intact."""
    filters = AuditFilters.from_args(request.args)
    error: InvalidInput | None = None
    events: list[Any] = []
    next_page_token = None
    with platform().db.snapshot() as session:
        verification = audit.verify(session)
        try:
            page = audit.search(
                session, **filters.search_args(), page_size=PAGE_SIZE, page_token=request.args.get("page_token") or None
            )
            events, next_page_token = page.items, page.next_page_token
        except InvalidInput as exc:
            error = exc
    body = render_template(
        "portal/audit.html",
        filters=filters,
        events=events,
        next_page_token=next_page_token,
        first_page=not request.args.get("page_token"),
        verification=verification,
        error=error,
    )
    return body, 400 if error else 200
