"""Deployments pages: per environment, what each model serves (versions, traffic weights,
status), one deployment's history, and the deploy and undeploy forms.

The forms call ``services/deployments.py`` like ``PUT``/``DELETE .../deployments/{env}``:
the work runs as a job, so a deployment page refreshes itself while it is pending or
deploying. Environments marked ``promotion_only`` take no direct deploys: their section
says so and links to the Promotions page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import g, render_template, request
from sqlalchemy import select

from api.portal.forms import FormErrors, done
from api.portal.models import version_ref
from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.db.registry import ModelVersion
from mlplatform.core.errors import MLPlatformError
from mlplatform.core.services import access
from mlplatform.core.services import deployments as service
from mlplatform.core.services import registry as registry_service
from mlplatform.core.services.deployments import DeploymentView

EVENTS = 50
BUSY = ("pending", "deploying")
REFRESH_SECONDS = 2


@dataclass
class EnvironmentSection:
    """One configured environment and the deployments in it."""

    name: str
    target: str
    promotion_only: bool
    approvals: int
    deployments: list[DeploymentView] = field(default_factory=list)

    @property
    def live(self) -> list[DeploymentView]:
        return [d for d in self.deployments if d.deployment.status != "retired"]

    @property
    def retired(self) -> list[DeploymentView]:
        return [d for d in self.deployments if d.deployment.status == "retired"]


def sections(views: list[DeploymentView]) -> list[EnvironmentSection]:
    """The configured environments in promotion order, each with its deployments."""
    result = [
        EnvironmentSection(env["name"], env["target"], env["promotion_only"], env["approvals"])
        for env in platform().environments
    ]
    by_name = {section.name: section for section in result}
    for view in views:
        section = by_name.get(view.deployment.environment)
        if section is None:  # an environment removed from the config still shows what it ran
            section = by_name[view.deployment.environment] = EnvironmentSection(
                view.deployment.environment, view.deployment.target, False, 0
            )
            result.append(section)
        section.deployments.append(view)
    return result


def _page(form: dict[str, str] | None = None, errors: FormErrors | None = None) -> tuple[str, int]:
    with platform().db.read() as session:
        views = service.list_deployments(session, g.project.name)
        models = [m.model.name for m in registry_service.list_models(session, g.project.name, page_size=200).items]
    default = {
        "environment": "",
        "model": request.args.get("model", ""),
        "version": request.args.get("version", ""),
        "weight": "100",
    }
    body = render_template(
        "portal/deployments.html",
        sections=sections(views),
        models=models,
        form=form or default,
        errors=errors,
        refresh=REFRESH_SECONDS if any(v.deployment.status in BUSY for v in views) else None,
    )
    return body, errors.status if errors else 200


@bp.route("/projects/<project>/deployments")
@requires(access.project_role("viewer"))
def deployments(project: str) -> Any:
    """Every environment with the versions each model serves there and their weights."""
    return _page()


@bp.route("/projects/<project>/deployments/deploy", methods=["POST"])
@requires(access.project_role("developer"))
def deploy(project: str) -> Any:
    """Deploy a version or alias of a model to an environment (a job does the work)."""
    form = {key: request.form.get(key, "").strip() for key in ("environment", "model", "version", "weight")}
    missing = {key: ["required"] for key in ("environment", "model", "version") if not form[key]}
    weight = int(form["weight"]) if form["weight"].isdigit() else None
    if weight is None:
        missing["weight"] = ["a whole number from 1 to 100"]
    if missing:
        return _page(form, FormErrors("fill in every field", missing, 400))
    try:
        with platform().db.write() as session:
            service.request_deploy(
                session,
                g.identity,
                project,
                form["model"],
                form["environment"],
                version_ref(form["version"]),
                weight=weight or 100,
                platform=platform(),
            )
    except MLPlatformError as exc:
        errors = FormErrors.from_error(exc)
        if exc.status == 409 and not errors.fields:
            errors.fields["version"] = [exc.message]
        return _page(form, errors)
    return done(
        f"Deploying {form['model']} {form['version']} to {form['environment']}…",
        "portal.deployment",
        project=project,
        model=form["model"],
        environment=form["environment"],
    )


@bp.route("/projects/<project>/models/<model>/deployments/<environment>")
@requires(access.project_role("viewer"))
def deployment(project: str, model: str, environment: str) -> Any:
    """One deployment: status, traffic by version, its history, and the undeploy form."""
    with platform().db.read() as session:
        view = service.get_deployment(session, project, model, environment, events=EVENTS)
        model_id = registry_service.get_model(session, g.project, model).id
        numbers = dict(
            session.execute(
                select(ModelVersion.id, ModelVersion.version).where(ModelVersion.model_id == model_id)
            ).all()
        )
    env = next((e for e in platform().environments if e["name"] == environment), None)
    return render_template(
        "portal/deployment.html",
        view=view,
        deployment=view.deployment,
        model_name=model,
        environment=env,
        numbers=numbers,
        refresh=REFRESH_SECONDS if view.deployment.status in BUSY else None,
    )


@bp.route("/projects/<project>/models/<model>/deployments/<environment>/undeploy", methods=["POST"])
@requires(access.project_role("developer"))
def undeploy(project: str, model: str, environment: str) -> Any:
    """Retire a deployment: every version leaves traffic (a job does the work)."""
    with platform().db.write() as session:
        service.request_undeploy(session, g.identity, project, model, environment, platform=platform())
    return done(
        f"Undeploying {model} from {environment}…",
        "portal.deployment",
        project=project,
        model=model,
        environment=environment,
    )
