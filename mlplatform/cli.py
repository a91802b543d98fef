"""The ``mlplatform`` command. Every subcommand builds its Platform from ``--config`` /
``MLPLATFORM_CONFIG`` (default: the embedded config) and fails with the config's message."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import multiprocessing
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
import yaml

from mlplatform.core import config as config_module
from mlplatform.core.errors import MLPlatformError


def actor() -> str:
    return f"cli:{getpass.getuser()}"


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Show a platform error as one line and exit 2, not a traceback."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MLPlatformError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc.message}") from None

    return run


def load_platform(ctx: click.Context) -> Any:
    from mlplatform.core.platform import Platform

    if "platform" not in ctx.obj:
        ctx.obj["platform"] = Platform.from_file(ctx.obj.get("config"))
        ctx.call_on_close(ctx.obj["platform"].close)
    return ctx.obj["platform"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="MLPLATFORM_CONFIG",
    type=click.Path(dir_okay=False),
    help="YAML config (default: the embedded config).",
)
@click.version_option(package_name="mlplatform")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """mlplatform: track experiments, register, deploy, promote and monitor models."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path


# --- serve and worker ---------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Bind address (default: server.host).")
@click.option("--port", type=int, default=None, help="Port (default: server.port).")
@click.option(
    "--workers", type=int, default=None, help="gunicorn worker processes (default: server.workers or 2 x CPUs + 1)."
)
@click.option("--threads", type=int, default=4, show_default=True, help="Threads per worker.")
@click.option("--dev", is_flag=True, help="Run Flask's development server (one process, reloads nothing).")
@click.pass_context
@friendly_errors
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None, threads: int, dev: bool) -> None:
    """Serve the REST API and portal (gunicorn; --dev for Flask's server)."""
    from mlplatform.core.db import migrate
    from mlplatform.core.services.bootstrap import bootstrap_admin

    platform = load_platform(ctx)
    migrate.require_current(platform.db.engine)
    server = platform.config["server"]
    host, port = host or server["host"], port or server["port"]
    path, token = bootstrap_admin(platform)
    if token:
        click.echo(
            f"Created admin user {server['bootstrap_admin']!r}. Its API token (shown once, also in {path}, mode 0600):"
        )
        click.echo(f"  {token}")
    else:
        click.echo(f"Admin token: see {path} (written on first start)")
    click.echo(f"mlplatform {platform.database_url.split('://')[0]} listening on http://{host}:{port}")
    if dev:
        from api.app import create_app

        create_app(platform).run(host=host, port=port, threaded=True)
        return
    platform.close()
    ctx.obj.pop("platform", None)
    _run_gunicorn(
        ctx.obj.get("config"), host, port, workers or server["workers"] or multiprocessing.cpu_count() * 2 + 1, threads
    )


def _run_gunicorn(config_path: str | None, host: str, port: int, workers: int, threads: int) -> None:
    import tempfile

    from gunicorn.app.base import BaseApplication

    if config_path:
        os.environ["MLPLATFORM_CONFIG"] = os.path.abspath(config_path)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="mlplatform-prometheus-"))

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = _gunicorn_settings(host, port, workers, threads)
            for key, value in {**settings, "child_exit": _prometheus_child_exit}.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            import gc

            from api.app import create_app

            app = create_app()
            # Everything loaded so far lives as long as the worker: leave it out of the
            # collector's full passes, which otherwise cost ~100 ms every few requests.
            gc.collect()
            gc.freeze()
            return app

    Server().run()


def _gunicorn_settings(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """What the API server and the model server both run gunicorn with."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "keepalive": 75,
        # the heartbeat file is touched on every loop of a worker: keep it in memory
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "accesslog": None,
        "timeout": 120,
        "graceful_timeout": 20,
    }


def _prometheus_child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@click.option("--name", default=None, help="Worker name (default: host and pid).")
@click.pass_context
@friendly_errors
def worker(ctx: click.Context, burst: bool, name: str | None) -> None:
    """Run a job worker for the rq backend (run as many as you need)."""
    from mlplatform.core.jobs import run_worker

    run_worker(load_platform(ctx), burst=burst, name=name)


# --- database, plugins, config ------------------------------------------------------------


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
@friendly_errors
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION (creates the database schema on first run)."""
    from mlplatform.core.db import migrate

    platform = load_platform(ctx)
    migrate.upgrade(platform.database_url, revision)
    click.echo(f"database at revision {revision}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly_errors
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List loaded plugins, their hooks and backends, and each backend's config schema."""
    from dataclasses import asdict

    infos = [asdict(info) for info in load_platform(ctx).pm.plugin_infos()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    for info in infos:
        click.echo(f"{info['name']} {info['version']}")
        click.echo(f"  hooks: {', '.join(info['hooks']) or '-'}")
        for backend in info["backends"]:
            options = ", ".join(
                f"{key}{'*' if spec['required'] else ''}{' (secret)' if spec.get('secret') else ''}"
                for key, spec in backend["config_schema"].items()
            )
            click.echo(f"  {backend['kind']} {backend['name']}: options {options or '-'}")


@main.group("config")
def config_group() -> None:
    """Configuration files."""


@config_group.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@friendly_errors
def config_check(path: str) -> None:
    """Validate PATH and print the resolved config with secrets masked."""
    from mlplatform.core.plugins import build_plugin_manager

    raw = config_module.read_config_file(path)
    plugins = config_module.validate_schema(config_module.PluginsSchema(), raw.get("plugins"), "plugins")
    pm = build_plugin_manager(block=plugins["block"], require=plugins["require"])
    resolved = config_module.load_config(raw, pm.backends)
    click.echo(yaml.safe_dump(config_module.masked(resolved), sort_keys=False))
    click.echo(f"# {path}: valid", err=True)


# --- users and tokens ---------------------------------------------------------------------


@main.group()
def users() -> None:
    """Platform users."""


def _create_user(ctx: click.Context, username: str, email: str | None, admin: bool, with_token: bool) -> None:
    from mlplatform.core.services import identity

    platform = load_platform(ctx)
    with platform.db.write() as session:
        user = identity.create_user(session, actor(), username, email=email, is_admin=admin, platform=platform)
        token = identity.issue_token(session, actor(), user, "cli", platform=platform)[1] if with_token else None
    click.echo(f"created {'admin ' if admin else ''}user {username}")
    if token:
        click.echo(f"API token (shown once): {token}")


@users.command("create")
@click.argument("username")
@click.option("--email", default=None)
@click.option("--admin", is_flag=True, help="Make the user a platform admin.")
@click.option("--token/--no-token", default=False, help="Also issue an API token and print it once.")
@click.pass_context
@friendly_errors
def users_create(ctx: click.Context, username: str, email: str | None, admin: bool, token: bool) -> None:
    """Create a user."""
    _create_user(ctx, username, email, admin, token)


@users.command("create-admin")
@click.argument("username")
@click.option("--email", default=None)
@click.pass_context
@friendly_errors
def users_create_admin(ctx: click.Context, username: str, email: str | None) -> None:
    """Create a platform admin and print an API token for it once."""
    _create_user(ctx, username, email, True, True)


@main.group()
def tokens() -> None:
    """API tokens."""


@tokens.command("create")
@click.argument("username")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
@click.option("--expires-in-days", type=int, default=None, help="Expire after this many days (default: never).")
@click.pass_context
@friendly_errors
def tokens_create(ctx: click.Context, username: str, name: str, expires_in_days: int | None) -> None:
    """Issue an API token for USERNAME and print it once."""
    from mlplatform.core.services import identity

    platform = load_platform(ctx)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_in_days) if expires_in_days else None
    with platform.db.write() as session:
        user = identity.get_user(session, username)
        token, plaintext = identity.issue_token(session, actor(), user, name, expires_at=expires, platform=platform)
    click.echo(f"token {token.id} for {username}: {plaintext}")


@tokens.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
@friendly_errors
def tokens_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke the token with TOKEN_ID."""
    from mlplatform.core.backends import Identity
    from mlplatform.core.services import identity

    platform = load_platform(ctx)
    with platform.db.write() as session:
        identity.revoke_token(session, Identity(actor(), "cli", is_admin=True), token_id, platform=platform)
    click.echo(f"token {token_id} revoked")


# --- audit --------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
@click.pass_context
@friendly_errors
def audit_verify(ctx: click.Context) -> None:
    """Recompute the audit hash chain; exit 1 and name the first broken event if any."""
    from mlplatform.core.services import audit as audit_service

    with load_platform(ctx).db.snapshot() as session:
        result = audit_service.verify(session)
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} events")
        return
    click.echo(
        f"audit chain BROKEN at event {result.first_broken_id}: {result.reason} ({result.checked} events before it verify)"
    )
    sys.exit(1)


# --- client commands (talk to a server: MLPLATFORM_URL, MLPLATFORM_TOKEN) -----------------


def sdk(project: str | None) -> Any:
    from mlplatform.client import Client

    try:
        return Client(project=project)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def client_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Show an API error, or a server that cannot be reached, as one line and exit 1."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        import requests

        from mlplatform.client import ApiError

        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            detail = f" {json.dumps(exc.errors)}" if exc.errors else ""
            raise click.ClickException(f"{exc.status}: {exc.message}{detail}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            url = exc.request.url.split("/api/v1")[0] if exc.request is not None and exc.request.url else "the server"
            raise click.ClickException(
                f"cannot reach mlplatform at {url} ({type(exc).__name__}): is it running, and is MLPLATFORM_URL right?"
            ) from None

    return run


project_option = click.option(
    "--project", "-p", envvar="MLPLATFORM_PROJECT", required=True, help="Project name (or MLPLATFORM_PROJECT)."
)


@main.group()
def experiments() -> None:
    """Experiments in a project (needs MLPLATFORM_URL and MLPLATFORM_TOKEN)."""


@experiments.command("list")
@project_option
@click.option("--name", default=None, help="Only names containing this.")
@client_errors
def experiments_list(project: str, name: str | None) -> None:
    """List experiments."""
    for experiment in sdk(project).list_experiments(name=name):
        click.echo(f"{experiment.id}\t{experiment.name}\t{experiment.lifecycle_stage}\t{experiment.description}")


@experiments.command("create")
@project_option
@click.argument("name")
@click.option("--description", default="")
@client_errors
def experiments_create(project: str, name: str, description: str) -> None:
    """Create an experiment."""
    experiment = sdk(project).create_experiment(name, description=description)
    click.echo(f"created experiment {experiment.id} {experiment.name}")


@main.group()
def runs() -> None:
    """Runs: search and show (needs MLPLATFORM_URL and MLPLATFORM_TOKEN)."""


@runs.command("search")
@project_option
@click.option("--filter", "filter_", default="", help="e.g. \"metrics.acc > 0.9 AND params.lr = '0.01'\"")
@click.option("--order-by", multiple=True, help="e.g. 'metrics.acc DESC'; repeat for more keys.")
@click.option("--experiment-id", type=int, multiple=True)
@click.option("--max-results", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@client_errors
def runs_search(
    project: str,
    filter_: str,
    order_by: tuple[str, ...],
    experiment_id: tuple[int, ...],
    max_results: int,
    as_json: bool,
) -> None:
    """Search runs with the filter grammar and print them."""
    found = sdk(project).search_runs(
        filter_, order_by=list(order_by), experiment_ids=list(experiment_id), max_results=max_results
    )
    if as_json:
        click.echo(json.dumps([_run_dict(r) for r in found], indent=2, default=str))
        return
    for run in found:
        metrics = " ".join(f"{k}={m.value:g}" for k, m in sorted(run.metrics.items()))
        click.echo(f"{run.id}\t{run.name}\t{run.status}\t{metrics}")


def _run_dict(run: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(run)


@runs.command("show")
@project_option
@click.argument("run_id")
@client_errors
def runs_show(project: str, run_id: str) -> None:
    """Show a run: status, params, latest metrics, tags."""
    click.echo(json.dumps(_run_dict(sdk(project).get_run(run_id)), indent=2, default=str))


@main.group()
def artifacts() -> None:
    """Run artifacts: upload and download with a progress bar."""


@artifacts.command("upload")
@project_option
@click.argument("run_id")
@click.argument("local_path", type=click.Path(exists=True))
@click.option("--path", "artifact_path", default=None, help="Path inside the run (default: the file name).")
@client_errors
def artifacts_upload(project: str, run_id: str, local_path: str, artifact_path: str | None) -> None:
    """Upload a file or a folder to a run."""
    from pathlib import Path

    local = Path(local_path)
    total = sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) if local.is_dir() else local.stat().st_size
    with click.progressbar(length=total, label=f"uploading {local.name}", file=sys.stderr) as bar:
        uploaded = sdk(project).upload_artifact(run_id, local, artifact_path, progress=bar.update)
    click.echo(f"uploaded {uploaded.path} ({uploaded.size} bytes)")


@artifacts.command("download")
@project_option
@click.argument("run_id")
@click.argument("path")
@click.argument("destination", type=click.Path(), default=".")
@client_errors
def artifacts_download(project: str, run_id: str, path: str, destination: str) -> None:
    """Download one artifact file of a run."""
    client = sdk(project)
    size = next((a.size for a in client.list_artifacts(run_id, path) if a.path == path), None)
    with click.progressbar(length=size, label=f"downloading {path}", file=sys.stderr) as bar:
        out = client.download_artifact(run_id, path, destination, progress=bar.update)
    click.echo(f"saved {out}")


@main.group()
def models() -> None:
    """The model registry: models, versions, aliases (needs MLPLATFORM_URL and MLPLATFORM_TOKEN)."""


@models.command("list")
@project_option
@click.option("--name", default=None, help="Only names containing this.")
@click.option("--tag", multiple=True, help="key or key=value; repeat to AND.")
@client_errors
def models_list(project: str, name: str | None, tag: tuple[str, ...]) -> None:
    """List registered models: name, latest ready version, aliases."""
    for model in sdk(project).list_models(name=name, tags=list(tag)):
        aliases = ",".join(f"{a}=v{v}" for a, v in sorted(model.aliases.items()))
        latest = f"v{model.latest_version}" if model.latest_version else "-"
        click.echo(f"{model.name}\t{latest}\t{aliases or '-'}\t{model.description}")


@models.command("show")
@project_option
@click.argument("name")
@client_errors
def models_show(project: str, name: str) -> None:
    """Show a model, or one version with NAME@VERSION_OR_ALIAS."""
    from dataclasses import asdict

    client = sdk(project)
    shown = asdict(client.get_model_version(name)) if "@" in name else asdict(client.get_model(name))
    click.echo(json.dumps(shown, indent=2, default=str))


@models.command("versions")
@project_option
@click.argument("name")
@click.option("--status", type=click.Choice(["pending", "ready", "failed"]), default=None)
@client_errors
def models_versions(project: str, name: str, status: str | None) -> None:
    """List a model's versions: number, status, flavor, aliases, run."""
    for version in sdk(project).list_model_versions(name, status=status):
        state = version.status + (" (archived)" if version.archived else "")
        click.echo(
            f"v{version.version}\t{state}\t{version.flavor or '-'}\t{','.join(version.aliases) or '-'}\t{version.run_id or '-'}"
        )


@models.command("set-alias")
@project_option
@click.argument("name")
@click.argument("alias")
@click.argument("version")
@client_errors
def models_set_alias(project: str, name: str, alias: str, version: str) -> None:
    """Point ALIAS of model NAME at VERSION (a number, v<N>, latest or another alias)."""
    moved = sdk(project).set_alias(name, alias, int(version) if version.isdigit() else version)
    click.echo(f"{name}@{alias} -> v{moved.version}")


@models.command("delete-version")
@project_option
@click.argument("name")
@click.argument("version")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@client_errors
def models_delete_version(project: str, name: str, version: str, yes: bool) -> None:
    """Delete VERSION (a number, v<N>, latest or an alias) of model NAME with its aliases and files.

    Refused while the version is deployed or being promoted."""
    if not yes:
        click.confirm(f"Delete {name} version {version} and its files?", abort=True)
    sdk(project).delete_model_version(name, version)
    number = version.lstrip("vV")
    click.echo(f"deleted {name} v{number}" if number.isdigit() else f"deleted {name}@{version}")


# --- deployments (needs MLPLATFORM_URL and MLPLATFORM_TOKEN) ------------------------------


def _deployment_line(deployment: Any) -> str:
    traffic = ",".join(
        f"v{t.version}:{t.weight}%" + ("" if t.status == "healthy" else f"({t.status})") for t in deployment.traffic
    )
    message = f"\t{deployment.status_message}" if deployment.status_message else ""
    return f"{deployment.model}\t{deployment.environment}\t{deployment.status}\t{traffic or '-'}{message}"


@main.command("deploy")
@project_option
@click.argument("model")
@click.argument("env")
@click.argument("version")
@click.option(
    "--weight", type=click.IntRange(1, 100), default=None, help="Traffic share once healthy (default 100: replace)."
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until healthy or failed.")
@click.option("--timeout", type=float, default=600, show_default=True)
@client_errors
def deploy_command(
    project: str, model: str, env: str, version: str, weight: int | None, wait: bool, timeout: float
) -> None:
    """Deploy VERSION (a number, v<N>, latest or an alias) of MODEL to environment ENV."""
    from mlplatform.client import DeploymentFailed

    client = sdk(project)
    deployment = client.deploy(model, env, int(version) if version.isdigit() else version, weight=weight)
    if wait:
        try:
            deployment = client.wait_for_deployment(model, env, timeout)
        except DeploymentFailed as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(_deployment_line(deployment))


@main.command("undeploy")
@project_option
@click.argument("model")
@click.argument("env")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until retired.")
@click.option("--timeout", type=float, default=600, show_default=True)
@client_errors
def undeploy_command(project: str, model: str, env: str, wait: bool, timeout: float) -> None:
    """Undeploy MODEL from environment ENV: its versions stop serving."""
    client = sdk(project)
    deployment = client.undeploy(model, env)
    if wait:
        deployment = client.wait_for_deployment(model, env, timeout, raise_on_failure=False)
    click.echo(_deployment_line(deployment))


@main.group()
def deployments() -> None:
    """Deployments of the project's models (needs MLPLATFORM_URL and MLPLATFORM_TOKEN)."""


@deployments.command("list")
@project_option
@click.option("--model", default=None, help="Only this model's deployments.")
@click.option("--environment", default=None, help="Only deployments to this environment.")
@click.option("--status", default=None, help="Only deployments in this status (healthy, failed, retired, ...).")
@client_errors
def deployments_list(project: str, model: str | None, environment: str | None, status: str | None) -> None:
    """List deployments, oldest first: model, environment, status, traffic (version:weight)."""
    for deployment in sdk(project).list_deployments(model=model, environment=environment, status=status):
        click.echo(_deployment_line(deployment))


# --- model-server -------------------------------------------------------------------------


@main.command("model-server")
@click.option("--version-id", type=int, default=None, help="The model version's id.")
@click.option("--project", default=None, help="With --model and --version, instead of --version-id.")
@click.option("--model", default=None)
@click.option("--version", "version", default=None, help="A number, v<N>, latest or an alias.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Bind address (containers: all interfaces).")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="gunicorn processes; each loads the model.")
@click.option("--threads", type=int, default=4, show_default=True)
@click.option("--dev", is_flag=True, help="werkzeug's server, one process.")
@click.pass_context
@friendly_errors
def model_server_command(
    ctx: click.Context,
    version_id: int | None,
    project: str | None,
    model: str | None,
    version: str | None,
    host: str,
    port: int,
    workers: int,
    threads: int,
    dev: bool,
) -> None:
    """Serve one model version over HTTP, from MLPLATFORM_CONFIG: /health, /ready, /predict, MLflow's
    /ping and /invocations, KServe's Open Inference Protocol (/v2/...)."""
    from mlplatform.model_server import create_model_server, resolve_spec

    ref = int(version) if version and version.isdigit() else version
    spec = resolve_spec(load_platform(ctx), version_id=version_id, project=project, model=model, version=ref)
    click.echo(f"serving {spec.project}/{spec.model} v{spec.version} on http://{host}:{port}")
    if dev:
        create_model_server(ctx.obj["platform"], spec).run(host=host, port=port, threaded=True)
        return
    ctx.obj.pop("platform").close()
    config_path = ctx.obj.get("config")
    if config_path:
        os.environ["MLPLATFORM_CONFIG"] = os.path.abspath(config_path)

    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in _gunicorn_settings(host, port, workers, threads).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from mlplatform.core.platform import Platform

            return create_model_server(Platform.from_file(), spec)

    Server().run()


# --- monitoring ---------------------------------------------------------------------------


@main.group()
def monitor() -> None:
    """Model monitoring: close due windows (run it every minute or two from cron or a timer), compact records."""


@monitor.command("close-windows")
@click.option(
    "--wait/--no-wait", default=False, help="With the inline job backend, wait for the windows to be computed."
)
@click.pass_context
@friendly_errors
def monitor_close_windows(ctx: click.Context, wait: bool) -> None:
    """Queue the computation of every monitoring window that ended and was not computed."""
    from mlplatform.core.monitoring.scheduler import close_due_windows

    platform = load_platform(ctx)
    enqueued = close_due_windows(platform)
    for deployment_id, start in enqueued:
        click.echo(f"deployment {deployment_id}: window {start.isoformat()} queued")
    click.echo(f"{len(enqueued)} window(s) queued")
    if wait and platform.config["jobs"]["backend"] == "inline":
        platform.jobs.wait_idle(3600)


@monitor.command("compact")
@click.option("--deployment", "deployment_ids", type=int, multiple=True, help="Only this deployment id (repeatable).")
@click.pass_context
@friendly_errors
def monitor_compact(ctx: click.Context, deployment_ids: tuple[int, ...]) -> None:
    """Merge the record files of every closed hour into one Parquet file per hour (idempotent;
    window computations do it as they close hours, this catches up on older ones)."""
    from mlplatform.core.monitoring.compaction import compact_closed_hours

    results = compact_closed_hours(load_platform(ctx), deployment_ids=deployment_ids or None)
    compacted = 0
    for deployment_id, hours in results.items():
        for hour in hours:
            when = f"deployment {deployment_id}: {hour.hour:%Y-%m-%d %H}:00"
            if hour.file is not None:
                compacted += 1
                click.echo(f"{when} {hour.merged} files -> {hour.file} ({hour.rows} rows)")
            elif hour.skipped:
                click.echo(f"{when} skipped: being compacted, or compacted less than a minute ago")
    click.echo(f"{compacted} hour(s) compacted")


# --- promotions (needs MLPLATFORM_URL and MLPLATFORM_TOKEN) -------------------------------


def _promotion_line(promotion: Any) -> str:
    reason = f"\t{promotion.reason}" if promotion.reason else ""
    return f"{promotion.id}\t{promotion.model}\tv{promotion.version}\t{promotion.environment}\t{promotion.strategy}\t{promotion.state}{reason}"


@main.command("promote")
@project_option
@click.argument("model")
@click.argument("version")
@click.option("--to", "to", default="production", show_default=True, help="The target environment.")
@click.option(
    "--strategy", type=click.Choice(["direct", "canary", "blue_green"]), default=None, help="Default: the server's."
)
@click.option("--steps", default=None, help="Canary percentages, e.g. 10,50,100.")
@click.option("--bake-seconds", type=float, default=None, help="Time per canary step.")
@click.option("--wait/--no-wait", default=False, show_default=True, help="Wait for a final state.")
@click.option("--timeout", type=float, default=3600, show_default=True)
@client_errors
def promote_command(
    project: str,
    model: str,
    version: str,
    to: str,
    strategy: str | None,
    steps: str | None,
    bake_seconds: float | None,
    wait: bool,
    timeout: float,
) -> None:
    """Request the promotion of VERSION of MODEL (policy checks run now; 422 lists every failure)."""
    try:
        plan = [int(s) for s in steps.split(",")] if steps else None
    except ValueError:
        raise click.BadParameter("comma-separated integers, e.g. 10,50,100", param_hint="--steps") from None
    promotion = sdk(project).promote(
        model,
        int(version) if version.isdigit() else version,
        to=to,
        strategy=strategy,
        steps=plan,
        bake_seconds=bake_seconds,
        wait=wait,
        timeout=timeout,
    )
    click.echo(_promotion_line(promotion))
    if promotion.state in ("rolled_back", "failed", "rejected", "expired"):
        sys.exit(1)


@main.group()
def promotions() -> None:
    """Promotions: show, approve, reject, roll back (needs MLPLATFORM_URL and MLPLATFORM_TOKEN)."""


@promotions.command("show")
@project_option
@click.argument("promotion_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@client_errors
def promotions_show(project: str, promotion_id: int, as_json: bool) -> None:
    """Show a promotion: state, checks, approvals and rollout steps."""
    promotion = sdk(project).get_promotion(promotion_id)
    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps(asdict(promotion), indent=2, default=str))
        return
    click.echo(_promotion_line(promotion))
    for phase, results in promotion.checks.items():
        for check in results:
            click.echo(
                f"  check[{phase}] {'ok  ' if check['passed'] else 'FAIL'} {check['policy']}: {check['message']}"
            )
    for approval in promotion.approvals:
        click.echo(f"  {approval['decision']} by {approval['username']} {approval['comment']}".rstrip())
    for step in promotion.rollout:
        weight = "" if step["weight"] is None else f" {step['weight']}%"
        click.echo(
            f"  step {step['index']} {step['kind']}{weight} {step['state']} {step['seconds'] or '-'}s {step['message']}".rstrip()
        )


@promotions.command("approve")
@project_option
@click.argument("promotion_id", type=int)
@click.option("--comment", default="")
@client_errors
def promotions_approve(project: str, promotion_id: int, comment: str) -> None:
    """Approve a pending promotion (maintainers; not your own)."""
    click.echo(_promotion_line(sdk(project).approve(promotion_id, comment)))


@promotions.command("reject")
@project_option
@click.argument("promotion_id", type=int)
@click.option("--reason", required=True)
@client_errors
def promotions_reject(project: str, promotion_id: int, reason: str) -> None:
    """Reject a pending or approved promotion."""
    click.echo(_promotion_line(sdk(project).reject(promotion_id, reason)))


@promotions.command("rollback")
@project_option
@click.argument("promotion_id", type=int)
@click.option("--reason", default="")
@client_errors
def promotions_rollback(project: str, promotion_id: int, reason: str) -> None:
    """Return the environment to what served before the promotion."""
    click.echo(_promotion_line(sdk(project).rollback(promotion_id, reason)))


@promotions.command("expire")
@click.pass_context
@friendly_errors
def promotions_expire(ctx: click.Context) -> None:
    """Expire pending promotions past their approval window (run it from cron; server side)."""
    from mlplatform.core.services.promotions import expire_pending

    expired = expire_pending(load_platform(ctx))
    click.echo(f"{len(expired)} promotion(s) expired" + (f": {', '.join(map(str, expired))}" if expired else ""))


if __name__ == "__main__":
    main()
