"""The ``compute_monitor_window`` job: one deployment, one window, every monitor point.

``compute_monitor_window(platform, deployment_id, window_start)`` reads the window's records
from the artifact store, splits them by model version (records without a version count for
the deployment's main version: the highest traffic weight, else the model's latest version),
analyses each version against its own reference (:mod:`.analysis`) and replaces the window's
points in one transaction: delete the window's ``monitor_points``, insert the new ones,
upsert its ``monitor_windows`` row. Running it twice gives the same rows, so a retried or
re-requested window is safe. A window without records still gets ``row_count`` 0.

After the points commit, ``mlplatform.core.services.alerting.evaluate_window(session,
platform, deployment_id, window_start)`` runs in its own transaction if that module exists.
Then the hours the window closes are compacted (:mod:`.compaction`); a compaction that
fails is logged and leaves the files as they were, never failing the window.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment, DeploymentVersion
from mlplatform.core.db.models import Project
from mlplatform.core.db.monitoring import MonitorLabel, MonitorPoint, MonitorWindow, ReferenceProfile
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.monitoring import compaction, reference_cache
from mlplatform.core.monitoring.analysis import analyze
from mlplatform.core.monitoring.drift_window import DriftSuite
from mlplatform.core.monitoring.ingest import InputSchema
from mlplatform.core.monitoring.records import WindowRecords, read_window
from mlplatform.core.monitoring.windows import as_utc, parse_length

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.monitoring")

JOB = "compute_monitor_window"
ALERTING_MODULE = "mlplatform.core.services.alerting"


@dataclass(frozen=True)
class VersionInfo:
    id: int
    number: int
    signature: Mapping[str, Any] | None
    profile: ReferenceProfile | None


@dataclass(frozen=True)
class DeploymentInfo:
    id: int
    project: str
    model: str
    environment: str
    versions: dict[int, VersionInfo]  # by version number
    main_version: int | None


def compute_monitor_window(platform: Platform, deployment_id: int, window_start: str) -> dict[str, Any]:
    """Compute and store one window; returns ``{"rows", "points"}``. See the module doc."""
    start = as_utc(dt.datetime.fromisoformat(window_start))
    end = start + parse_length(platform.config["monitoring"]["window"])
    with platform.db.read() as session:
        info = load_deployment(session, deployment_id)
        if info is None:
            return {"rows": 0, "points": 0}
        labels = _labels(session, deployment_id, start - (end - start))
    records = read_window(platform.artifact_store, info.project, info.model, info.environment, start, end)
    points = compute_points(platform, info, records, labels)
    rows = [
        {
            "deployment_id": deployment_id,
            "version_id": version_id,
            "metric": metric,
            "feature": feature,
            "window_start": start,
            "window_end": end,
            "value": value if value is None or math.isfinite(value) else None,
        }
        for version_id, metric, feature, value in points
    ]
    with platform.db.write() as session:
        store_window(session, deployment_id, start, end, records.num_rows, rows)
    _evaluate_alerts(platform, deployment_id, start)
    return {"rows": records.num_rows, "points": len(rows), "compacted": _compact(platform, info, start, end)}


def load_deployment(session: Session, deployment_id: int) -> DeploymentInfo | None:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        return None
    model = session.get(RegisteredModel, deployment.model_id)
    project = session.get(Project, deployment.project_id)
    assert model is not None and project is not None
    versions = {v.version: v for v in session.scalars(select(ModelVersion).where(ModelVersion.model_id == model.id))}
    profiles = {
        p.version_id: p
        for p in session.scalars(
            select(ReferenceProfile).where(ReferenceProfile.version_id.in_([v.id for v in versions.values()]))
        )
    }
    by_id = {v.id: v.version for v in versions.values()}
    weights = session.execute(
        select(DeploymentVersion.version_id, DeploymentVersion.weight).where(
            DeploymentVersion.deployment_id == deployment_id
        )
    ).all()
    ranked = sorted(((w, by_id[vid]) for vid, w in weights if vid in by_id), reverse=True)
    main = ranked[0][1] if ranked else (max(versions) if versions else None)
    return DeploymentInfo(
        id=deployment.id,
        project=project.name,
        model=model.name,
        environment=deployment.environment,
        versions={n: VersionInfo(v.id, n, v.signature, profiles.get(v.id)) for n, v in versions.items()},
        main_version=main,
    )


def compute_points(
    platform: Platform, info: DeploymentInfo, records: WindowRecords, labels: Mapping[str, Any]
) -> list[tuple[int | None, str, str, float | None]]:
    """``(version_id, metric, feature, value)`` for every version with records in the window."""
    suite = drift_suite(platform)
    by_version = _split_by_version(records, info.main_version)
    if not by_version and info.main_version is not None:
        by_version = {info.main_version: records}
    points = []
    for number, part in sorted(by_version.items()):
        version = info.versions.get(number)
        reference = None
        if version is not None and version.profile is not None:
            profile = version.profile
            reference = reference_cache.prepared(
                platform.artifact_store, version.id, profile.artifact_prefix, profile.profile
            )
        schema = InputSchema.build(version.signature if version else None, reference.profile if reference else None)
        for metric, feature, value in analyze(part, reference, schema, suite, labels):
            points.append((version.id if version else None, metric, feature, value))
    return points


def drift_suite(platform: Platform) -> DriftSuite:
    """The platform's drift metrics, instantiated once per platform object."""
    suite = getattr(platform, "_monitoring_drift_suite", None)
    if suite is None:
        suite = DriftSuite.from_config(platform)
        platform._monitoring_drift_suite = suite  # type: ignore[attr-defined]
    return suite


def store_window(
    session: Session,
    deployment_id: int,
    start: dt.datetime,
    end: dt.datetime,
    row_count: int,
    rows: list[dict[str, Any]],
) -> None:
    """Replace the window's points and upsert its ``monitor_windows`` row, in ``session``."""
    if session.get_bind().dialect.name == "postgresql":
        # Serialises computations of one deployment, so two runs of a window never interleave.
        session.execute(select(Deployment.id).where(Deployment.id == deployment_id).with_for_update())
    session.execute(
        delete(MonitorPoint).where(MonitorPoint.deployment_id == deployment_id, MonitorPoint.window_start == start)
    )
    if rows:
        session.execute(insert(MonitorPoint), rows)
    window = session.scalar(
        select(MonitorWindow).where(MonitorWindow.deployment_id == deployment_id, MonitorWindow.window_start == start)
    )
    if window is None:
        session.add(MonitorWindow(deployment_id=deployment_id, window_start=start, window_end=end, row_count=row_count))
    else:
        window.window_end, window.row_count, window.computed_at = end, row_count, utcnow()


def _split_by_version(records: WindowRecords, main: int | None) -> dict[int, WindowRecords]:
    if records.num_rows == 0:
        return {}
    versions = records.table.column("version")
    if main is not None:
        versions = pc.fill_null(versions, pa.scalar(main, versions.type))
    if versions.null_count == len(versions):
        return {}
    values = versions.to_numpy(zero_copy_only=False)
    distinct = [int(v) for v in np.unique(values[~np.isnan(values)] if values.dtype.kind == "f" else values)]
    if len(distinct) == 1:
        return {distinct[0]: records}
    return {v: records.filter(pc.equal(versions, v)) for v in distinct}


def _labels(session: Session, deployment_id: int, since: dt.datetime) -> dict[str, Any]:
    """Labels that may belong to this window: received since shortly before it started."""
    rows = session.execute(
        select(MonitorLabel.request_id, MonitorLabel.label).where(
            MonitorLabel.deployment_id == deployment_id, MonitorLabel.received_at >= since
        )
    )
    return dict(rows.all())


def _compact(platform: Platform, info: DeploymentInfo, start: dt.datetime, end: dt.datetime) -> int:
    """Compact the hours the window closes; the number of hour folders merged."""
    try:
        done = compaction.compact_window(platform, info.id, info.project, info.model, info.environment, start, end)
    except Exception:  # noqa: BLE001 - the points are stored; the files stay readable as they are
        log.exception("compacting the records of deployment %s up to %s failed", info.id, end.isoformat())
        return 0
    return sum(1 for hour in done if hour.file is not None)


def _evaluate_alerts(platform: Platform, deployment_id: int, start: dt.datetime) -> None:
    if importlib.util.find_spec(ALERTING_MODULE) is None:
        return
    evaluate = getattr(importlib.import_module(ALERTING_MODULE), "evaluate_window", None)
    if evaluate is None:
        return
    with platform.db.write() as session:
        evaluate(session, platform, deployment_id, start)
