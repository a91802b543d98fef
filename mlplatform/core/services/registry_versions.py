"""Model versions: numbered per model, immutable files, lineage frozen at registration.

A version's files live at ``projects/<project id>/models/<model id>/versions/<random id>/``
in the artifact store, recorded as the version's ``artifact_uri``. The folder is named before
the version has a number, so the files can be in place before the row exists: no
half-registered version is ever visible, and a failed registration leaves nothing behind.
Two ways in, one life cycle:

- from a run (``register_from_run``): the run's artifact subfolder is COPIED (digested on
  the way) into a new folder, then ONE transaction numbers the version, records it finalized
  and enqueues its validation job; changing the run's artifacts later never changes it;
- by upload: ``begin_version`` creates the version (status ``pending``, not finalized), the
  caller ``upload_file``s each file (streamed), then ``finalize_version``.

Finalizing records the flavor and the SHA-256 of the folder (``model_loading``'s digest) and
enqueues the ``validate_model_version`` job, which loads the model OUTSIDE the API request
(``registry_validation``) and moves the version to ``ready`` or ``failed`` with the reason.
After finalizing, the files are read-only. An ``input_example`` given at registration is
stored as ``input_example.json`` in the folder (``{"instances": [...]}``) before the digest,
and the validation job predicts on it.

These functions own their transactions where store I/O sits between database steps (they
take the ``Platform``); the rest take the caller's session like every other service.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Double,
    Row,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from mlplatform.core.backends import ArtifactInfo, ArtifactStore, Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelAlias, ModelVersion, RegisteredModel
from mlplatform.core.db.tracking import LatestMetric, Param, Run
from mlplatform.core.errors import Conflict, InvalidInput, Unprocessable
from mlplatform.core.model_loading import (
    DESCRIPTOR,
    available_flavors,
    combine_digests,
    pick_flavor,
    store_sha256,
)
from mlplatform.core.services import access, artifacts
from mlplatform.core.services.pagination import Page, paginate
from mlplatform.core.services.registry import (
    deployed_versions,
    get_model,
    merge_tags,
    promotion_under_way,
    record_change,
    remove_files_after_commit,
    resolve_version,
    version_folders,
    version_in,
)
from mlplatform.core.services.tracking import load_run
from mlplatform.core.signature import check_signature, infer_signature

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

INPUT_EXAMPLE = "input_example.json"
VALIDATE_JOB = "validate_model_version"
MAX_EXAMPLE_ROWS = 100


@dataclass
class VersionView:
    version: ModelVersion
    model_name: str
    aliases: list[str] = field(default_factory=list)

    @property
    def finalized(self) -> bool:
        return self.version.artifact_sha256 is not None


@dataclass(frozen=True)
class VersionSpec:
    """What the caller says about a new version, checked before anything is written."""

    flavor: str | None = None
    signature: dict[str, Any] | None = None
    input_example: list[dict[str, Any]] | None = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None


def new_version_prefix(project_id: int, model_id: int) -> str:
    """A folder no other version uses (the model's id, not its name: a re-created model never meets old files)."""
    return f"projects/{project_id}/models/{model_id}/versions/{uuid.uuid4().hex}/"


def check_spec(
    *,
    flavor: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> VersionSpec:
    """A ``VersionSpec``: the signature normalised, or inferred from ``input_example``.

    Raises ``InvalidInput`` naming the field. ``input_example`` is a list of records (at most
    ``MAX_EXAMPLE_ROWS``); a given signature wins over the inferred one.
    """
    if input_example is not None:
        if (
            not isinstance(input_example, list)
            or not input_example
            or not all(isinstance(r, dict) for r in input_example)
        ):
            raise InvalidInput(
                "input_example must be a non-empty list of records (objects)",
                errors={"input_example": ["not a list of records"]},
            )
        if len(input_example) > MAX_EXAMPLE_ROWS:
            raise InvalidInput(
                f"input_example holds at most {MAX_EXAMPLE_ROWS} rows", errors={"input_example": ["too many rows"]}
            )
    if signature is not None:
        signature = check_signature(signature)
    elif input_example is not None:
        signature = infer_signature(input_example)
    if tags is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise InvalidInput("tags must map strings to strings", errors={"tags": ["not a string map"]})
    return VersionSpec(flavor or None, signature, input_example, description or "", dict(tags or {}), run_id)


# --- creating -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lineage:
    """What a version keeps of its run, read when it is registered."""

    run_id: str
    experiment_id: int
    git_commit: str | None
    params: dict[str, str]
    metrics: dict[str, float]


def read_lineage(session: Session, run: Run) -> Lineage:
    _, params, metrics = _split_values(session.connection().execute(_RUN_VALUES, {"run": run.id}))
    return Lineage(run.id, run.experiment_id, run.source_git_commit, params, metrics)


def _split_values(rows: Iterable[Row[Any]]) -> tuple[tuple[Any, ...] | None, dict[str, str], dict[str, float]]:
    """The ``model`` row if one came (name, run's artifact prefix, model id, experiment id, git
    commit), the run's params and its latest metric values, as registration freezes them."""
    model = None
    params: dict[str, str] = {}
    metrics: dict[str, float] = {}
    for kind, key, text_value, number, *rest in rows:
        if kind == "param":
            params[key] = text_value
        elif kind == "metric":
            metrics[key] = number
        else:
            model = (key, text_value, *rest)
    return model, params, metrics


# One row shape: ("param", key, value), ("metric", key, -, value), and for a registration from a
# run ("model", name, the run's artifact prefix, -, model id, experiment id, git commit), so the
# model, the run and its values come back in one round trip.
def _no(kind: Any) -> Any:
    return cast(null(), kind())


_PARAM_ROWS = select(
    literal("param"), Param.key, Param.value, _no(Double), _no(BigInteger), _no(BigInteger), _no(Text)
).where(Param.run_id == bindparam("run"))
_METRIC_ROWS = select(
    literal("metric"), LatestMetric.key, _no(Text), LatestMetric.value, _no(BigInteger), _no(BigInteger), _no(Text)
).where(LatestMetric.run_id == bindparam("run"))
_RUN_VALUES = union_all(_PARAM_ROWS, _METRIC_ROWS)
_MODEL_RUN_AND_VALUES = union_all(
    select(
        literal("model"),
        RegisteredModel.name,
        Run.artifact_prefix,
        _no(Double),
        RegisteredModel.id,
        Run.experiment_id,
        Run.source_git_commit,
    )
    .join(Run, and_(Run.id == bindparam("run"), Run.project_id == RegisteredModel.project_id))
    .where(RegisteredModel.project_id == bindparam("project"), RegisteredModel.name == bindparam("name")),
    _PARAM_ROWS,
    _METRIC_ROWS,
)
_VERSIONS: Table = ModelVersion.__table__  # type: ignore[assignment]
_TOUCH_MODEL = (
    update(RegisteredModel)
    .where(RegisteredModel.project_id == bindparam("b_project"), RegisteredModel.name == bindparam("b_name"))
    .values(updated_at=bindparam("b_now"), last_version=RegisteredModel.last_version + 1)
    .returning(RegisteredModel.id, RegisteredModel.last_version)
)
_INSERT_VERSION = _VERSIONS.insert().returning(_VERSIONS.c.id)
_VERSION_FIELDS = [c.name for c in _VERSIONS.c if c.name not in ("id", "model_id", "version")]
# PostgreSQL: the UPDATE that numbers the version, as a CTE feeding the INSERT (one statement).
_TOUCHED = _TOUCH_MODEL.cte("touched")
_INSERT_NEXT_VERSION = (
    _VERSIONS.insert()
    .from_select(
        ["model_id", "version", *_VERSION_FIELDS],
        select(
            _TOUCHED.c.id,
            _TOUCHED.c.last_version,
            *(bindparam(f"v_{name}", type_=_VERSIONS.c[name].type) for name in _VERSION_FIELDS),
        ),
    )
    .returning(_VERSIONS.c.id, _VERSIONS.c.model_id, _VERSIONS.c.version)
)


def create_version_row(
    session: Session,
    identity: Identity,
    project: Project,
    model_name: str,
    spec: VersionSpec,
    *,
    source: Mapping[str, Any],
    prefix: str,
    lineage: Lineage | None = None,
    digest: str | None = None,
    platform: Platform | None = None,
) -> ModelVersion:
    """Insert the next version of ``model_name``, audited, its files at ``prefix`` (``new_version_prefix``).

    Without ``digest`` the version awaits its files (pending, not finalized); with it the
    files are already in place: the version is finalized at once and its validation job
    enqueued in this transaction. The number comes from the UPDATE that locks the model row
    (``last_version + 1``; PostgreSQL re-reads a row it waited for), so concurrent
    registrations get consecutive numbers and a deleted version's number is not given again;
    the unique (model, version) constraint backs that up; on PostgreSQL that UPDATE is a CTE of
    the INSERT. Lineage is ``lineage``, or read from ``spec.run_id``. Core statements, no unit
    of work: this is a hot write path. The returned version is a detached copy of the row.
    """
    if lineage is None and spec.run_id is not None:
        lineage = read_lineage(session, load_run(session, project, spec.run_id))
    connection = session.connection()
    now = utcnow()
    fields: dict[str, Any] = dict.fromkeys(_VERSION_FIELDS)
    fields.update(
        status="pending",
        status_message="validating" if digest else "awaiting files",
        flavor=spec.flavor,
        signature=spec.signature,
        artifact_uri=prefix,
        artifact_sha256=digest,
        description=spec.description,
        tags=spec.tags,
        archived=False,
        created_at=now,
        created_by=identity.username,
        updated_at=now,
    )
    if lineage is not None:
        fields.update(
            run_id=lineage.run_id,
            experiment_id=lineage.experiment_id,
            source_git_commit=lineage.git_commit,
            run_params=lineage.params,
            run_metrics=lineage.metrics,
        )
    model_key = {"b_project": project.id, "b_name": model_name, "b_now": now}
    if connection.dialect.name == "postgresql":  # number and insert in one round trip
        inserted = connection.execute(
            _INSERT_NEXT_VERSION, {**model_key, **{f"v_{key}": value for key, value in fields.items()}}
        ).first()
    else:
        inserted = _number_then_insert(connection, model_key, fields)
    if inserted is None:
        get_model(session, project, model_name)  # raises NotFound naming the model
    version_id, model_id, number = inserted
    version = ModelVersion(id=version_id, model_id=model_id, version=number, **fields)
    finalized = {"sha256": digest, "flavor": spec.flavor} if digest else {}
    record_change(
        session,
        identity,
        project,
        "model_version.create",
        "model_version",
        version.id,
        {"model": model_name, "version": number, **source, **finalized},
        platform,
    )
    if digest is not None:
        _enqueue_validation(session, version, project, platform)
    return version


def _number_then_insert(
    connection: Connection, model_key: Mapping[str, Any], fields: Mapping[str, Any]
) -> tuple[int, int, int] | None:
    """``(version id, model id, number)`` in two statements (SQLite), or ``None`` if there is no such model."""
    touched = connection.execute(_TOUCH_MODEL, model_key).first()
    if touched is None:
        return None
    model_id, number = touched
    row = {"model_id": model_id, "version": number, **fields}
    return connection.execute(_INSERT_VERSION, row).scalar_one(), model_id, number


def _enqueue_validation(session: Session, version: ModelVersion, project: Project, platform: Platform | None) -> None:
    if platform is None:
        raise ValueError("enqueueing a version's validation needs the platform")
    platform.jobs.enqueue(session, VALIDATE_JOB, {"version_id": version.id}, project=project.name)


def begin_version(
    platform: Platform,
    identity: Identity,
    project_name: str,
    model_name: str,
    spec: VersionSpec,
    *,
    source: Mapping[str, Any] | None = None,
) -> VersionView:
    """Create a version awaiting files (the upload flow's first step); writes ``input_example.json``.

    ``InvalidInput`` if ``spec.flavor`` names a flavor no plugin provides.
    """
    flavors = available_flavors(platform)
    if spec.flavor and spec.flavor not in flavors:
        raise InvalidInput(
            f"model flavor {spec.flavor!r} is not installed; available: {', '.join(sorted(flavors))}",
            errors={"flavor": ["unknown"]},
        )
    with platform.db.write() as session:
        project = access.get_project(session, project_name)
        prefix = new_version_prefix(project.id, get_model(session, project, model_name).id)
        version = create_version_row(
            session,
            identity,
            project,
            model_name,
            spec,
            source=source or {"source": "upload"},
            prefix=prefix,
            platform=platform,
        )
        if spec.input_example is not None:
            _put_example(platform.artifact_store, version.artifact_uri, spec.input_example)
    return VersionView(version, model_name)


def register_from_run(
    platform: Platform,
    identity: Identity,
    project: Project | str,
    model_name: str,
    run_id: str,
    artifact_path: str,
    spec: VersionSpec,
) -> VersionView:
    """Register the run's ``artifact_path`` folder as the model's next version, finalized.

    Checked before anything is written: the model and run exist, the folder holds files, its
    flavor can be told (given, from ``mlplatform-model.json``, or detected). Then the files
    are copied to a new folder (digested on the way) and one transaction creates the version
    finalized and enqueues its validation. If anything fails the copied files are removed.
    """
    store = platform.artifact_store
    folder = artifacts.normalise_path(artifact_path, allow_empty=True)
    with platform.db.read() as session:
        project = access.project_named(session, project)
        found, params, metrics = _split_values(
            session.connection().execute(
                _MODEL_RUN_AND_VALUES, {"project": project.id, "name": model_name, "run": run_id}
            )
        )
        if found is None:  # say which of the two is missing
            get_model(session, project, model_name)
            load_run(session, project, run_id)
        stored_name, run_prefix, model_id, experiment_id, git_commit = found
        lineage = Lineage(run_id, experiment_id, git_commit, params, metrics)
        source = f"{run_prefix.rstrip('/')}/" + (f"{folder}/" if folder else "")
        prefix = new_version_prefix(project.id, model_id)
    files = list(store.list(source))
    if not files:
        raise Unprocessable(
            f"run {run_id!r} has no artifacts under {artifact_path!r}", errors={"artifact_path": ["no files"]}
        )
    relative = [info.path[len(source) :] for info in files]
    spec = _complete_spec(platform, spec, _store_descriptor(store, source, relative), relative)
    try:
        entries = [
            (rel, store.copy(info.path, prefix + rel))
            for info, rel in zip(files, relative, strict=True)
            if not (rel == INPUT_EXAMPLE and spec.input_example is not None)
        ]
        if spec.input_example is not None:
            entries.append((INPUT_EXAMPLE, _put_example(store, prefix, spec.input_example)))
        with platform.db.write() as session:
            version = create_version_row(
                session,
                identity,
                project,
                model_name,
                spec,
                lineage=lineage,
                prefix=prefix,
                digest=combine_digests(entries),
                source={"source": "run", "run_id": run_id, "artifact_path": folder},
                platform=platform,
            )
    except BaseException:
        store.delete(prefix.rstrip("/"))
        raise
    return VersionView(version, stored_name)


def _complete_spec(
    platform: Platform, spec: VersionSpec, descriptor: Mapping[str, Any], files: list[str]
) -> VersionSpec:
    """``spec`` with the flavor picked (``InvalidInput`` if it cannot be) and the descriptor's signature as a fallback."""
    name = spec.flavor or descriptor.get("flavor")
    flavor = pick_flavor(available_flavors(platform), name, files).name
    signature = spec.signature
    if signature is None and descriptor.get("signature"):
        signature = check_signature(descriptor["signature"])
    return VersionSpec(flavor, signature, spec.input_example, spec.description, spec.tags, spec.run_id)


def _store_descriptor(store: ArtifactStore, prefix: str, files: list[str]) -> dict[str, Any]:
    if DESCRIPTOR not in files:
        return {}
    with store.open(prefix + DESCRIPTOR) as stream:
        raw = stream.read(1024 * 1024)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"{DESCRIPTOR} is not valid JSON: {exc}", errors={"artifact": [f"bad {DESCRIPTOR}"]}
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{DESCRIPTOR} must hold a JSON object", errors={"artifact": [f"bad {DESCRIPTOR}"]})
    return data


def _put_example(store: ArtifactStore, prefix: str, records: list[dict[str, Any]]) -> str:
    data = json.dumps({"instances": records}, sort_keys=True, default=str).encode()
    store.put(prefix + INPUT_EXAMPLE, io.BytesIO(data), len(data))
    return hashlib.sha256(data).hexdigest()


# --- upload flow ----------------------------------------------------------------------------------


def upload_file(
    platform: Platform,
    project_name: str,
    model_name: str,
    ref: str | int,
    path: str,
    stream: IO[bytes],
    *,
    size: int | None,
    limit: int,
) -> ArtifactInfo:
    """Stream one file into a version that is not finalized yet; ``Conflict`` once it is."""
    with platform.db.read() as session:
        _, version = resolve_version(session, access.get_project(session, project_name), model_name, ref)
        if version.artifact_sha256 is not None or version.status != "pending":
            raise Conflict(f"version {version.version} of {model_name!r} is finalized: its files cannot change")
        prefix = version.artifact_uri
    return artifacts.upload(platform.artifact_store, prefix, path, stream, size=size, limit=limit)


def finalize_version(
    platform: Platform,
    identity: Identity,
    project_name: str,
    model_name: str,
    ref: str | int,
    *,
    digest: str | None = None,
    spec: VersionSpec | None = None,
) -> VersionView:
    """Record the flavor and digest of the version's files and enqueue its validation job.

    Idempotent: a finalized version is returned as it is. ``Unprocessable`` if no file was
    uploaded; ``InvalidInput`` if the flavor cannot be told. ``digest`` and ``spec`` come from
    ``register_from_run``, which has already computed them.
    """
    store = platform.artifact_store
    with platform.db.read() as session:
        project = access.get_project(session, project_name)
        _, version = resolve_version(session, project, model_name, ref)
        if version.artifact_sha256 is not None:
            return version_views(session, model_name, [version])[0]
        if version.status != "pending":
            raise Conflict(f"version {version.version} of {model_name!r} is {version.status}: register a new version")
        prefix, number = version.artifact_uri, version.version
        current = VersionSpec(version.flavor, version.signature)
    if spec is None or digest is None:
        relative = [info.path[len(prefix) :] for info in store.list(prefix)]
        if not relative:
            raise Unprocessable(
                f"version {number} of {model_name!r} has no files: upload them before finalizing",
                errors={"files": ["none"]},
            )
        spec = _complete_spec(platform, current, _store_descriptor(store, prefix, relative), relative)
        digest = store_sha256(store, prefix)
    with platform.db.write() as session:
        project = access.get_project(session, project_name)
        get_model(session, project, model_name, for_update=True)
        _, version = resolve_version(session, project, model_name, number)
        if version.artifact_sha256 is None:  # a concurrent finalize may have won
            version.artifact_sha256, version.flavor, version.signature = digest, spec.flavor, spec.signature
            version.status_message, version.updated_at = "validating", utcnow()
            record_change(
                session,
                identity,
                project,
                "model_version.finalize",
                "model_version",
                version.id,
                {"model": model_name, "version": number, "sha256": digest, "flavor": spec.flavor},
                platform,
            )
            _enqueue_validation(session, version, project, platform)
        return version_views(session, model_name, [version])[0]


# --- reading and changing ---------------------------------------------------------------------------


def version_views(session: Session, model_name: str, versions: list[ModelVersion]) -> list[VersionView]:
    ids = [v.id for v in versions]
    aliases: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        for version_id, alias in session.execute(
            select(ModelAlias.version_id, ModelAlias.alias)
            .where(ModelAlias.version_id.in_(ids))
            .order_by(ModelAlias.alias)
        ):
            aliases[version_id].append(alias)
    return [VersionView(v, model_name, aliases[v.id]) for v in versions]


def get_version(session: Session, project_name: str, model_name: str, ref: str | int) -> VersionView:
    _, version = resolve_version(session, access.get_project(session, project_name), model_name, ref)
    return version_views(session, model_name, [version])[0]


def list_versions(
    session: Session,
    project_name: str,
    model_name: str,
    *,
    status: str | None = None,
    archived: bool | None = None,
    page_size: int = 100,
    page_token: str | None = None,
) -> Page[VersionView]:
    """A model's versions, oldest first; optionally only one ``status`` or archived state."""
    model = get_model(session, access.get_project(session, project_name), model_name)
    query = select(ModelVersion).where(ModelVersion.model_id == model.id)
    if status is not None:
        query = query.where(ModelVersion.status == status)
    if archived is not None:
        query = query.where(ModelVersion.archived.is_(archived))
    page = paginate(session, query, ModelVersion.id, page_size, page_token)
    return Page(version_views(session, model_name, page.items), page.next_page_token)


def update_version(
    session: Session,
    identity: Identity,
    project_name: str,
    model_name: str,
    ref: str | int,
    changes: Mapping[str, Any],
    *,
    platform: Platform | None = None,
) -> VersionView:
    """Apply ``description``, ``tags`` (merged; ``None`` removes) and ``archived``.

    ``Conflict`` when archiving a version a deployment still routes to or holds.
    """
    project = access.get_project(session, project_name)
    get_model(session, project, model_name, for_update=True)
    _, version = resolve_version(session, project, model_name, ref)
    summary: dict[str, Any] = {}
    if "description" in changes and changes["description"] != version.description:
        summary["description"] = {"from": version.description, "to": changes["description"]}
        version.description = changes["description"] or ""
    if "tags" in changes:
        merged = merge_tags(version.tags, changes["tags"])
        if merged != version.tags:
            summary["tags"] = {"from": version.tags, "to": merged}
            version.tags = merged
    if "archived" in changes and bool(changes["archived"]) != version.archived:
        if changes["archived"] and deployed_versions(session, [version.id]):
            raise Conflict(f"version {version.version} of {model_name!r} is deployed: undeploy it before archiving")
        summary["archived"] = {"from": version.archived, "to": bool(changes["archived"])}
        version.archived = bool(changes["archived"])
    if summary:
        version.updated_at = utcnow()
        record_change(
            session,
            identity,
            project,
            "model_version.update",
            "model_version",
            version.id,
            {"model": model_name, "version": version.version, **summary},
            platform,
        )
    return version_views(session, model_name, [version])[0]


def delete_version(
    session: Session, identity: Identity, project_name: str, model_name: str, ref: str | int, *, platform: Platform
) -> None:
    """Delete a version, the aliases on it, its reference profile and finished promotions; audited.

    ``Conflict`` while a deployment routes to or holds it, or a promotion of it is under way.
    Its number is not given again (``RegisteredModel.last_version``). Its files and its
    reference profile's are removed from the artifact store after the commit; deployment events and monitoring points keep
    their rows without the version.
    """
    project = access.get_project(session, project_name)
    model = get_model(session, project, model_name, for_update=True)
    version = version_in(session, model, ref)
    if deployed_versions(session, [version.id]):
        raise Conflict(
            f"version {version.version} of {model_name!r} is deployed: undeploy it before deleting it",
            errors={"version": ["deployed"]},
        )
    promoting = promotion_under_way(session, [version.id])
    if promoting is not None:
        raise Conflict(
            f"version {version.version} of {model_name!r} is being promoted (promotion {promoting.id}): "
            "finish or cancel it before deleting the version",
            errors={"version": ["promotion under way"]},
        )
    aliases = sorted(session.scalars(select(ModelAlias.alias).where(ModelAlias.version_id == version.id)))
    record_change(
        session,
        identity,
        project,
        "model_version.delete",
        "model_version",
        version.id,
        {"model": model.name, "version": version.version, "aliases": aliases, "artifact_uri": version.artifact_uri},
        platform,
    )
    remove_files_after_commit(session, platform, version_folders(session, [version.id]))
    model.updated_at = utcnow()
    session.delete(version)
    session.flush()


def file_listing(platform: Platform, project_name: str, model_name: str, ref: str | int) -> list[ArtifactInfo]:
    with platform.db.read() as session:
        _, version = resolve_version(session, access.get_project(session, project_name), model_name, ref)
        prefix = version.artifact_uri
    return list(artifacts.listing(platform.artifact_store, prefix))


def file_download(
    platform: Platform, project_name: str, model_name: str, ref: str | int, path: str
) -> artifacts.Download:
    with platform.db.read() as session:
        _, version = resolve_version(session, access.get_project(session, project_name), model_name, ref)
        prefix = version.artifact_uri
    return artifacts.download(platform.artifact_store, prefix, path)
