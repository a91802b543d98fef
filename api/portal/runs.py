"""A run's page (params, metric charts, tags, artifacts by folder) and artifact downloads.

Downloads stream through ``services/artifacts.py`` like the API's, always as attachments
with ``nosniff``: an uploaded HTML file must never render as a page of the portal's origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, g, render_template, request

from api.portal.charts import chart_config
from api.portal.views import bp, platform
from api.security import requires
from api.views.common import download_response
from mlplatform.core.backends import ArtifactStore
from mlplatform.core.errors import MLPlatformError
from mlplatform.core.services import access, artifacts
from mlplatform.core.services import tracking as tracking_service
from mlplatform.core.services import tracking_runs as run_service

MAX_ENTRIES = 1000


@dataclass
class Entry:
    """One row of the artifact browser: a folder (with how many files and bytes under it) or a file."""

    name: str
    path: str
    is_dir: bool
    size: int = 0
    files: int = 0
    modified: Any = None


@dataclass
class Folder:
    path: str
    entries: list[Entry]
    truncated: bool = False
    error: str | None = None

    @property
    def crumbs(self) -> list[tuple[str, str]]:
        """``(name, path)`` for each folder from the root down to this one."""
        parts = self.path.split("/") if self.path else []
        return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]

    @property
    def parent(self) -> str | None:
        return self.path.rpartition("/")[0] if self.path else None


def browse(store: ArtifactStore, prefix: str, folder: str) -> Folder:
    """The folders and files directly under ``folder`` of a run's artifacts."""
    base = f"{folder}/" if folder else ""
    folders: dict[str, Entry] = {}
    files: list[Entry] = []
    for info in artifacts.listing(store, prefix, folder):
        if not info.path.startswith(base):
            continue  # listing is by string prefix: "model" also lists "model2/..."
        head, slash, _rest = info.path[len(base) :].partition("/")
        if slash:
            entry = folders.setdefault(head, Entry(head, base + head, True))
            entry.files += 1
            entry.size += info.size
        else:
            files.append(Entry(head, info.path, False, info.size, modified=info.modified))
    entries = sorted(folders.values(), key=lambda e: e.name) + files
    return Folder(folder, entries[:MAX_ENTRIES], truncated=len(entries) > MAX_ENTRIES)


def artifact_folder(run_prefix: str, requested: str) -> Folder:
    """The folder to show; a bad path or a store failure is shown in the artifacts section."""
    try:
        folder = artifacts.normalise_path(requested, allow_empty=True)
        return browse(platform().artifact_store, run_prefix, folder)
    except MLPlatformError as exc:
        return Folder(requested, [], error=exc.message)


def run_prefix(run: Any) -> str:
    return run.artifact_prefix.rstrip("/") + "/"


@bp.route("/projects/<project>/runs/<run_id>")
@requires(access.project_role("viewer"))
def run(project: str, run_id: str) -> Any:
    """One run: attributes, params, metric charts, tags and artifacts (``?path=`` a folder)."""
    with platform().db.read() as session:
        view = run_service.get_run(session, project, run_id)
        experiment = tracking_service.load_experiment(session, g.project, view.run.experiment_id)
    folder = artifact_folder(run_prefix(view.run), request.args.get("path", ""))
    metric_keys = sorted(view.metrics)
    return render_template(
        "portal/run.html",
        view=view,
        run=view.run,
        experiment=experiment,
        folder=folder,
        metric_keys=metric_keys,
        charts=chart_config(project, [view], metric_keys),
    )


@bp.route("/projects/<project>/runs/<run_id>/artifacts/<path:path>")
@requires(access.project_role("viewer"))
def download_artifact(project: str, run_id: str, path: str) -> Response:
    """Download one artifact, streamed from the store."""
    with platform().db.read() as session:
        prefix = run_prefix(tracking_service.load_run(session, g.project, run_id))
    download = artifacts.download(platform().artifact_store, prefix, path)
    response = download_response(download)
    response.headers.set("Content-Disposition", "attachment", filename=path.rsplit("/", 1)[-1])
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    return response
