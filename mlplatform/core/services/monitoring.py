"""Monitoring use cases: reference data, events and labels, windows on demand, the summary.

Services take a session (the caller owns the transaction) and names from the URL, and raise
the platform's errors. The computations live in :mod:`mlplatform.core.monitoring`.

- ``put_reference`` profiles a version's reference data once (CSV or Parquet bytes, or a
  run artifact) and replaces its ``reference_profiles`` row; files of a replaced profile are
  deleted after commit. ``get_reference`` returns the profile summary.
- ``ingest_records`` validates records and writes the valid ones to the artifact store (the
  layout of :mod:`mlplatform.core.monitoring.records`); ``late_windows`` names the computed
  windows they fell into and ``requeue_windows`` re-queues those, so late records are counted
  (compacted or not, a window's records are read whole); ``ingest_labels`` upserts
  ``monitor_labels`` and re-queues computed windows named by a label's ``timestamp``.
- ``request_window`` queues one window's (re)computation; ``summary`` reads the latest window.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.monitoring import OVERALL, MonitorLabel, MonitorPoint, MonitorWindow, ReferenceProfile
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.db.session import after_commit
from mlplatform.core.errors import InvalidInput, NotFound
from mlplatform.core.monitoring import ingest, profiles, records
from mlplatform.core.monitoring.scheduler import active_windows, enqueue_window
from mlplatform.core.monitoring.windows import as_utc, check_aligned, parse_length, window_start
from mlplatform.core.services import audit
from mlplatform.core.services.access import get_project
from mlplatform.core.services.registry import resolve_version

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

REFERENCE_ROOT = "monitoring-references"
MAX_LABELS = 100_000
IN_CHUNK = 1000
REFERENCE_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


# --- lookups ------------------------------------------------------------------------------------


def model_version(
    session: Session, project: str, model: str, version: str | int
) -> tuple[RegisteredModel, ModelVersion]:
    """The version ``version`` names: a number, ``v<N>``, ``latest`` or an alias (the registry's rules)."""
    return resolve_version(session, get_project(session, project), model, version)


def deployment(session: Session, project: str, model: str, environment: str) -> Deployment:
    project_row = get_project(session, project)
    row = session.scalar(
        select(Deployment)
        .join(RegisteredModel, RegisteredModel.id == Deployment.model_id)
        .where(
            RegisteredModel.project_id == project_row.id,
            RegisteredModel.name == model,
            Deployment.environment == environment,
        )
    )
    if row is None:
        raise NotFound(f"model {model!r} has no deployment in environment {environment!r}")
    return row


# --- reference data ----------------------------------------------------------------------------


def put_reference(
    session: Session,
    platform: Platform,
    identity: Identity,
    project: str,
    model: str,
    version: str | int,
    *,
    data: bytes | None = None,
    fmt: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Profile the reference (``data`` in ``fmt``, or a run's artifact) and store it;
    returns ``(reference summary, created)``."""
    _model_row, version_row = model_version(session, project, model, version)
    store = platform.artifact_store
    if run_id is not None:
        fmt = REFERENCE_EXTENSIONS.get(_extension(artifact_path or ""))
        if fmt is None:
            raise InvalidInput(
                "artifact_path must end in .csv, .parquet or .pq",
                errors={"artifact_path": ["unknown reference format"]},
            )
        data, source = _run_artifact(session, platform, project, run_id, artifact_path or ""), "run_artifact"
    else:
        source = "upload"
    assert data is not None and fmt is not None
    table = profiles.read_reference(data, fmt)
    bins = int(platform.config["monitoring"]["metric_options"].get("psi", {}).get("bins", 10))
    profile, arrays = profiles.build_profile(table, version_row.signature, bins)
    monitoring_config = platform.config["monitoring"]
    if monitoring_config.get("learned_thresholds"):
        from mlplatform.core.monitoring.window_job import drift_suite

        profile["learned_thresholds"] = profiles.learned_thresholds(
            table,
            profile,
            drift_suite(platform).metrics,
            monitoring_config["thresholds"],
            int(monitoring_config.get("learned_threshold_chunks", 10)),
        )
    prefix = f"{REFERENCE_ROOT}/{project}/{model}/{version_row.version}/{uuid.uuid4().hex}/"
    profiles.save_sorted(store, prefix, arrays)
    if source == "upload":
        _put_bytes(store, f"{prefix}reference.{fmt}", data)
    else:
        profile["source"] = {"run_id": run_id, "artifact_path": artifact_path}

    existing = session.scalar(select(ReferenceProfile).where(ReferenceProfile.version_id == version_row.id))
    if existing is not None:
        old_prefix = existing.artifact_prefix
        after_commit(session, lambda: store.delete(old_prefix.rstrip("/")))
        existing.source, existing.artifact_prefix, existing.row_count = source, prefix, table.num_rows
        existing.profile, existing.created_at, existing.created_by = profile, utcnow(), identity.username
        row = existing
    else:
        row = ReferenceProfile(
            version_id=version_row.id,
            source=source,
            artifact_prefix=prefix,
            row_count=table.num_rows,
            profile=profile,
            created_by=identity.username,
        )
        session.add(row)
    session.flush()
    audit.record(
        session,
        actor=identity.username,
        action="model_version.reference_set",
        resource_type="model_version",
        resource_id=version_row.id,
        summary={
            "model": model,
            "version": version_row.version,
            "source": source,
            "rows": table.num_rows,
            "features": len(profile["features"]),
        },
        project=project,
        platform=platform,
    )
    return reference_body(row, model, version_row.version), existing is None


def get_reference(session: Session, project: str, model: str, version: str | int) -> dict[str, Any]:
    _model_row, version_row = model_version(session, project, model, version)
    row = session.scalar(select(ReferenceProfile).where(ReferenceProfile.version_id == version_row.id))
    if row is None:
        raise NotFound(f"version {version_row.version} of model {model!r} has no reference data")
    return reference_body(row, model, version_row.version)


def reference_body(row: ReferenceProfile, model: str, version: int) -> dict[str, Any]:
    return {
        "model": model,
        "version": version,
        "source": row.source,
        "row_count": row.row_count,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "created_by": row.created_by,
        **profiles.summary(row.profile),
    }


def _run_artifact(session: Session, platform: Platform, project: str, run_id: str, path: str) -> bytes:
    from mlplatform.core.services import artifacts
    from mlplatform.core.services.tracking import load_run

    run = load_run(session, get_project(session, project), run_id)
    download = artifacts.download(platform.artifact_store, run.artifact_prefix.rstrip("/") + "/", path)
    with download.stream as stream:
        return stream.read()


def _extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name[name.rfind(".") :].lower() if "." in name else ""


def _put_bytes(store: Any, path: str, data: bytes) -> None:
    store.put(path, io.BytesIO(data), len(data))


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestTarget:
    project: str
    model: str
    environment: str
    deployment_id: int
    schema: ingest.InputSchema
    versions: set[int]


def ingest_target(session: Session, project: str, model: str, environment: str) -> IngestTarget:
    """What records for this deployment are checked against: the main version's signature
    (else its reference profile) and the model's version numbers."""
    from mlplatform.core.monitoring.window_job import load_deployment

    row = deployment(session, project, model, environment)
    info = load_deployment(session, row.id)
    assert info is not None
    main = info.versions.get(info.main_version) if info.main_version is not None else None
    schema = ingest.InputSchema.build(
        main.signature if main else None, main.profile.profile if main and main.profile else None
    )
    return IngestTarget(project, model, environment, row.id, schema, set(info.versions))


def ingest_records(
    platform: Platform, target: IngestTarget, *, json_records: Any = None, table: pa.Table | None = None
) -> ingest.IngestResult:
    """Validate and store records (no database writes: records live in the artifact store)."""
    now = utcnow()
    if table is not None:
        result = ingest.records_from_arrow(table, target.schema, target.versions, now=now)
    else:
        result = ingest.records_from_json(json_records, target.schema, target.versions, now=now)
    if result.table is not None and result.table.num_rows:
        records.write_records(platform.artifact_store, target.project, target.model, target.environment, result.table)
    return result


def late_windows(
    session: Session, platform: Platform, target: IngestTarget, result: ingest.IngestResult
) -> list[dt.datetime]:
    """Starts of the already computed windows that accepted records of ``result`` fall in."""
    if result.table is None or not result.table.num_rows:
        return []
    length_ms = int(parse_length(platform.config["monitoring"]["window"]).total_seconds() * 1000)
    stamps = result.table.column("timestamp").cast(pa.int64()).to_numpy()
    starts = {dt.datetime.fromtimestamp(int(ms) // 1000, dt.UTC) for ms in np.unique(stamps // length_ms * length_ms)}
    return _computed(session, target.deployment_id, starts)


def requeue_windows(session: Session, platform: Platform, target: IngestTarget, starts: list[dt.datetime]) -> int:
    """Queue the recomputation of each window of ``starts`` not queued or running already."""
    queued = active_windows(session)
    count = 0
    for start in sorted(starts):
        if (target.deployment_id, start) not in queued:
            enqueue_window(session, platform, target.deployment_id, start, project=target.project)
            count += 1
    return count


def _computed(session: Session, deployment_id: int, starts: set[dt.datetime]) -> list[dt.datetime]:
    """The windows of ``starts`` computed already (``IN`` lists of at most ``IN_CHUNK``: a
    backfill may name thousands)."""
    ordered, found = sorted(starts), []
    for at in range(0, len(ordered), IN_CHUNK):
        found += session.scalars(
            select(MonitorWindow.window_start).where(
                MonitorWindow.deployment_id == deployment_id,
                MonitorWindow.window_start.in_(ordered[at : at + IN_CHUNK]),
            )
        )
    return sorted(as_utc(s) for s in found)


def ingest_labels(session: Session, platform: Platform, target: IngestTarget, labels: Any) -> ingest.IngestResult:
    """Upsert ``{"request_id", "label", "timestamp"?}`` items; a label with the prediction's
    ``timestamp`` re-queues that window if it was computed already."""
    result = ingest.IngestResult(None)
    if not isinstance(labels, list):
        raise InvalidInput("'labels' must be a list", errors={"labels": ["not a list"]})
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"at most {MAX_LABELS} labels per request", errors={"labels": ["too many"]})
    good: dict[str, Any] = {}  # a later item for the same request id wins
    accepted: list[str] = []
    timestamps: list[int] = []
    for index, item in enumerate(labels):
        if not isinstance(item, Mapping):
            result.reject(index, "label is not an object")
            continue
        request_id, label = item.get("request_id"), item.get("label")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= ingest.MAX_REQUEST_ID:
            result.reject(index, f"request_id must be a string of 1 to {ingest.MAX_REQUEST_ID} characters")
        elif label is None or not isinstance(label, (str, int, float, bool)):
            result.reject(index, "label must be a string, number or boolean")
        elif set(item) - {"request_id", "label", "timestamp"}:
            result.reject(
                index,
                f"unknown field(s): {', '.join(sorted(map(str, set(item) - {'request_id', 'label', 'timestamp'})))}",
            )
        else:
            ts = ingest.timestamp_ms(item["timestamp"]) if item.get("timestamp") is not None else None
            if item.get("timestamp") is not None and ts is None:
                result.reject(index, "timestamp is not an ISO 8601 string or epoch seconds")
                continue
            good[request_id] = label
            accepted.append(request_id)
            if ts is not None:
                timestamps.append(ts)
    now = utcnow()
    existing = (
        {
            row.request_id: row
            for row in session.scalars(
                select(MonitorLabel).where(
                    MonitorLabel.deployment_id == target.deployment_id, MonitorLabel.request_id.in_(list(good))
                )
            )
        }
        if good
        else {}
    )
    for request_id, label in good.items():
        row = existing.get(request_id)
        if row is None:
            session.add(
                MonitorLabel(deployment_id=target.deployment_id, request_id=request_id, label=label, received_at=now)
            )
        else:
            row.label, row.received_at = label, now
    _requeue_labelled_windows(session, platform, target, timestamps)
    result.table = pa.table({"request_id": pa.array(accepted, pa.string())})
    return result


def _requeue_labelled_windows(
    session: Session, platform: Platform, target: IngestTarget, timestamps: list[int]
) -> None:
    if not timestamps:
        return
    length = parse_length(platform.config["monitoring"]["window"])
    starts = {window_start(dt.datetime.fromtimestamp(ms / 1000, dt.UTC), length) for ms in timestamps}
    requeue_windows(session, platform, target, _computed(session, target.deployment_id, starts))


# --- windows and the summary ---------------------------------------------------------------------


def request_window(
    session: Session,
    platform: Platform,
    identity: Identity,
    project: str,
    model: str,
    environment: str,
    start: dt.datetime,
) -> dict[str, Any]:
    """Queue the (re)computation of the window starting at ``start`` (must be aligned)."""
    row = deployment(session, project, model, environment)
    length = parse_length(platform.config["monitoring"]["window"])
    start = check_aligned(start, length)
    job_id = enqueue_window(session, platform, row.id, start, project=project)
    audit.record(
        session,
        actor=identity.username,
        action="monitoring.window_requested",
        resource_type="deployment",
        resource_id=row.id,
        summary={"model": model, "environment": environment, "window_start": start.isoformat(), "job_id": job_id},
        project=project,
        platform=platform,
    )
    return {"job_id": job_id, "window_start": start.isoformat(), "window_end": (start + length).isoformat()}


def summary(session: Session, project: str, model: str, environment: str) -> dict[str, Any]:
    """The latest computed window's figures, per version: overall, prediction and per feature."""
    row = deployment(session, project, model, environment)
    body: dict[str, Any] = {
        "project": project,
        "model": model,
        "environment": environment,
        "window": None,
        "versions": [],
    }
    window = session.scalar(
        select(MonitorWindow)
        .where(MonitorWindow.deployment_id == row.id)
        .order_by(MonitorWindow.window_start.desc())
        .limit(1)
    )
    if window is None:
        return body
    body["window"] = {
        "start": as_utc(window.window_start).isoformat(),
        "end": as_utc(window.window_end).isoformat(),
        "row_count": window.row_count,
        "computed_at": as_utc(window.computed_at).isoformat() if window.computed_at else None,
    }
    points = session.execute(
        select(MonitorPoint.version_id, MonitorPoint.metric, MonitorPoint.feature, MonitorPoint.value).where(
            MonitorPoint.deployment_id == row.id, MonitorPoint.window_start == window.window_start
        )
    ).all()
    numbers = dict(
        session.execute(
            select(ModelVersion.id, ModelVersion.version).where(ModelVersion.model_id == row.model_id)
        ).all()
    )
    grouped: dict[int | None, dict[str, Any]] = defaultdict(lambda: {"overall": {}, "prediction": {}, "features": {}})
    for version_id, metric, feature, value in points:
        part = grouped[version_id]
        if metric.startswith("prediction_"):
            key = metric.removeprefix("prediction_")
            if key == "share":
                part["prediction"].setdefault("share", {})[feature] = value
            else:
                part["prediction"][key] = value
        elif feature == OVERALL:
            part["overall"][metric] = value
        else:
            part["features"].setdefault(feature, {})[metric] = value
    for version_id, part in sorted(grouped.items(), key=lambda item: numbers.get(item[0] or -1, 0)):
        drifted = sorted(name for name, figures in part["features"].items() if figures.get("drifted") == 1.0)
        body["versions"].append(
            {"version": numbers.get(version_id) if version_id else None, **part, "drifted_features": drifted}
        )
    return body
