"""The portal's navigation and the small template filters every page uses.

One list of project pages and one of admin pages: a new page adds a ``NavItem`` here and
the top bar shows it in the same place on every page. The top bar keeps the project you
were last in, so pages outside a project (the audit log) keep the same navigation.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from flask import g, request, session

from api.portal.views import bp

NAV_PROJECT = "nav_project"


@dataclass(frozen=True)
class NavItem:
    """A link in the top bar. ``section`` lists endpoints that live under it (a run page is
    under Experiments): the item is marked ``aria-current="true"`` there."""

    label: str
    endpoint: str
    section: tuple[str, ...] = ()

    def current(self, endpoint: str | None) -> str | None:
        """The ``aria-current`` value for a page at ``endpoint``: "page", "true" or None."""
        if endpoint == self.endpoint:
            return "page"
        return "true" if endpoint in self.section else None


PROJECT_NAV: list[NavItem] = [
    NavItem("Home", "portal.project_home"),
    NavItem("Experiments", "portal.experiments", ("portal.run", "portal.compare")),
    NavItem("Models", "portal.models", ("portal.model", "portal.model_version")),
    NavItem("Deployments", "portal.deployments", ("portal.deployment",)),
    NavItem("Promotions", "portal.promotions", ("portal.promotion",)),
    NavItem(
        "Monitoring",
        "portal.monitoring",
        ("portal.monitoring_deployment", "portal.alert_rules_page", "portal.alert_rule"),
    ),
]
ADMIN_NAV: list[NavItem] = [NavItem("Audit", "portal.audit_log")]


@bp.before_request
def remember_project() -> None:
    """Keep the last project's name so pages outside a project keep its navigation."""
    project = g.get("project")
    if project is not None and session.get(NAV_PROJECT) != project.name:
        session[NAV_PROJECT] = project.name


@bp.app_context_processor
def navigation() -> dict[str, Any]:
    project = g.get("project")
    identity = g.get("identity")
    return {
        "nav_project": project.name if project is not None else (session.get(NAV_PROJECT) if identity else None),
        "project_nav": PROJECT_NAV,
        "admin_nav": ADMIN_NAV if identity is not None and identity.is_admin else [],
        "endpoint": request.endpoint,
    }


@bp.app_template_filter("when")
def when(value: dt.datetime | int | None) -> str:
    """A UTC time to the minute (``2024-05-01 12:03``); ints are milliseconds since the epoch."""
    if value is None:
        return "—"
    if isinstance(value, int):
        value = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M")


@bp.app_template_filter("iso")
def iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value is not None else ""


@bp.app_template_filter("duration")
def duration(run: Any) -> str:
    """How long a run ran (or has been running): ``42s``, ``3m 05s``, ``2h 14m``."""
    if run.end_time is None:
        return "—" if run.status != "running" else "running"
    seconds = max(0, int((run.end_time - run.start_time).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


@bp.app_template_filter("metric")
def metric(value: float | None) -> str:
    """A metric value to six significant digits; None is NaN (how the store keeps it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.6g}"


@bp.app_template_filter("filesize")
def filesize(size: int) -> str:
    number = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if number < 1024 or unit == "GB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{size} B"
