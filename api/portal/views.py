"""Portal pages: sign-in, projects, and each project's home. Pages read the same services as the API."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.portal import session as portal_session
from api.security import requires
from mlplatform.core import storable
from mlplatform.core.errors import AuthenticationError, InvalidInput
from mlplatform.core.services import access
from mlplatform.core.services import projects as project_service

bp = Blueprint("portal", __name__, template_folder="../templates", static_folder="../static", static_url_path="/static")


def platform() -> Any:
    return current_app.extensions["mlplatform"]


@bp.before_request
def refuse_unstorable_fields() -> None:
    """A query or form value no database can store (a NUL from ``%00``) is a 400 page naming
    the field, before any page's own code reads it (``core.storable``)."""
    for source in (request.args, request.form):
        for key, value in source.items(multi=True):
            found = storable.problem(key) or storable.problem(value)
            if found is not None:
                raise InvalidInput(f"the field {key!r} {found}")


@bp.app_context_processor
def portal_globals() -> dict[str, Any]:
    return {"csrf_token": portal_session.csrf_token, "identity": g.get("identity"), "project": g.get("project")}


@bp.route("/login", methods=["GET", "POST"])
@requires(access.PUBLIC)
def login() -> Any:
    """Sign in with an API token."""
    error = None
    if request.method == "POST":
        try:
            portal_session.sign_in(platform(), request.form.get("token", ""))
        except AuthenticationError as exc:
            error = exc.message
        else:
            target = request.args.get("next") or ""
            return redirect(
                target if target.startswith("/") and not target.startswith("//") else url_for("portal.index")
            )
    return render_template("portal/login.html", error=error), 401 if error else 200


@bp.route("/logout", methods=["POST"])
@requires(access.PUBLIC)
def logout() -> Response:
    from flask import session

    session.clear()
    return redirect(url_for("portal.login"))


@bp.route("/")
@requires(access.AUTHENTICATED)
def index() -> Any:
    """The projects you belong to."""
    with platform().db.read() as session:
        page = project_service.list_projects(session, g.identity, 200, None)
    if len(page.items) == 1:
        return redirect(url_for("portal.project_home", project=page.items[0].name))
    return render_template("portal/index.html", projects=page.items)


@bp.route("/projects/<project>")
@requires(access.project_role("viewer"))
def project_home(project: str) -> Any:
    """A project's home: recent runs, models, deployments, promotions waiting, firing alerts."""
    from api.portal import home

    return render_template("portal/project_home.html", **home.summary(platform(), g.project))


from api.portal import (  # noqa: E402,F401  (their routes join bp)
    alert_rule_pages,
    audit_pages,
    charts,
    compare,
    deployments,
    experiments,
    forms,
    models,
    monitoring,
    nav,
    promotions,
    runs,
)
