"""Models pages: the registered models, one model's versions and aliases, one version's
status, signature and lineage; forms to register a version from a run and to set, move or
remove an alias. Reads and changes go through the registry services, like the API.

Registering from a run creates the model first when the name is new (what ``client.register_model``
does). The version is then ``pending`` until the validation job loads it: the version page
refreshes itself until it is ``ready`` or ``failed``.
"""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request

from api.portal.forms import FormErrors, done
from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.errors import MLPlatformError, NotFound
from mlplatform.core.services import access
from mlplatform.core.services import deployments as deployment_service
from mlplatform.core.services import registry as registry_service
from mlplatform.core.services import registry_aliases as alias_service
from mlplatform.core.services import registry_lineage as lineage_service
from mlplatform.core.services import registry_versions as version_service

MAX_MODELS = 200
MAX_VERSIONS = 200
REFRESH_SECONDS = 2


def version_ref(text: str) -> str | int:
    """A version as typed in a form or a URL: ``3`` is a number, anything else a reference."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def _models_page(form: dict[str, str] | None = None, errors: FormErrors | None = None) -> tuple[str, int]:
    query = request.args.get("q", "").strip()
    with platform().db.read() as session:
        models = registry_service.list_models(session, g.project.name, name=query or None, page_size=MAX_MODELS).items
        deployed = {
            (view.model, view.deployment.environment)
            for view in deployment_service.list_deployments(session, g.project.name)
            if view.deployment.status != "retired"
        }
    environments = {m.model.name: sorted(env for name, env in deployed if name == m.model.name) for m in models}
    body = render_template(
        "portal/models.html",
        models=models,
        query=query,
        environments=environments,
        form=form or {"run_id": request.args.get("run_id", ""), "artifact_path": "model", "model": ""},
        errors=errors,
    )
    return body, errors.status if errors else 200


@bp.route("/projects/<project>/models")
@requires(access.project_role("viewer"))
def models(project: str) -> Any:
    """The project's models with their latest version and aliases, and the register form."""
    return _models_page()


@bp.route("/projects/<project>/models/register", methods=["POST"])
@requires(access.project_role("developer"))
def register_version(project: str) -> Any:
    """Register a run's artifact folder as the next version of a model (created if new)."""
    form = {key: request.form.get(key, "").strip() for key in ("run_id", "artifact_path", "model")}
    missing = {key: ["required"] for key, value in form.items() if not value and key != "artifact_path"}
    if missing:
        return _models_page(form, FormErrors("give a run id and a model name", missing, 400))
    try:
        with platform().db.write() as session:
            try:
                registry_service.get_model_view(session, project, form["model"])
            except NotFound:
                registry_service.create_model(session, g.identity, project, form["model"], platform=platform())
        spec = version_service.check_spec(run_id=form["run_id"])
        view = version_service.register_from_run(
            platform(), g.identity, project, form["model"], form["run_id"], form["artifact_path"], spec
        )
    except MLPlatformError as exc:
        errors = FormErrors.from_error(exc)
        if "run" in exc.message and "does not exist" in exc.message:
            errors.fields.setdefault("run_id", [exc.message])
        if "name" in errors.fields:
            errors.fields["model"] = errors.fields.pop("name")
        return _models_page(form, errors)
    return done(
        f"Registered version {view.version.version} of {form['model']}; it is validated in the background.",
        "portal.model_version",
        project=project,
        model=form["model"],
        version=view.version.version,
    )


@bp.route("/projects/<project>/models/<model>")
@requires(access.project_role("viewer"))
def model(project: str, model: str) -> Any:
    """One model: its versions (status, flavor, run), its aliases and the alias form."""
    return _model_page(model)


def _model_page(model: str, form: dict[str, str] | None = None, errors: FormErrors | None = None) -> tuple[str, int]:
    with platform().db.read() as session:
        view = registry_service.get_model_view(session, g.project.name, model)
        versions = version_service.list_versions(session, g.project.name, model, page_size=MAX_VERSIONS).items
        serving = [d for d in deployment_service.list_deployments(session, g.project.name) if d.model == model]
    versions = list(reversed(versions))  # newest first
    body = render_template(
        "portal/model.html",
        view=view,
        model=view.model,
        versions=versions,
        serving=serving,
        pending=any(v.version.status == "pending" for v in versions),
        refresh=REFRESH_SECONDS,
        form=form or {"alias": "", "version": str(view.latest_version or "")},
        errors=errors,
    )
    return body, errors.status if errors else 200


@bp.route("/projects/<project>/models/<model>/versions/<int:version>")
@requires(access.project_role("viewer"))
def model_version(project: str, model: str, version: int) -> Any:
    """One version: status (refreshing while pending), flavor, signature, lineage, deployments."""
    with platform().db.read() as session:
        view = version_service.get_version(session, project, model, version)
        lineage = lineage_service.lineage(session, project, model, version)
    return render_template(
        "portal/model_version.html",
        view=view,
        version=view.version,
        model_name=model,
        lineage=lineage,
        refresh=REFRESH_SECONDS if view.version.status == "pending" else None,
    )


@bp.route("/projects/<project>/models/<model>/aliases", methods=["POST"])
@requires(access.project_role("developer"))
def set_alias(project: str, model: str) -> Any:
    """Point an alias at a version: creates it, or moves it from the version it named."""
    form = {"alias": request.form.get("alias", "").strip(), "version": request.form.get("version", "").strip()}
    if not form["alias"] or not form["version"]:
        missing = {key: ["required"] for key, value in form.items() if not value}
        return _model_page(model, form, FormErrors("give an alias and a version", missing, 400))
    try:
        with platform().db.write() as session:
            move = alias_service.set_alias(
                session, g.identity, project, model, form["alias"], version_ref(form["version"]), platform=platform()
            )
    except MLPlatformError as exc:
        errors = FormErrors.from_error(exc)
        if not errors.fields:
            errors.fields["version"] = [exc.message]
        return _model_page(model, form, errors)
    moved = f" (moved from version {move.previous})" if move.previous not in (None, move.version) else ""
    return done(
        f"Alias {form['alias']} now points at version {move.version}{moved}.",
        "portal.model",
        project=project,
        model=model,
    )


@bp.route("/projects/<project>/models/<model>/aliases/<alias>/delete", methods=["POST"])
@requires(access.project_role("developer"))
def delete_alias(project: str, model: str, alias: str) -> Any:
    """Remove an alias (nothing happens if it is already gone)."""
    with platform().db.write() as session:
        alias_service.delete_alias(session, g.identity, project, model, alias, platform=platform())
    return done(f"Alias {alias} removed.", "portal.model", project=project, model=model)
