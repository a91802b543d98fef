"""Compaction: the many small record files of an hour folder merged into one Parquet file.

The gateway's capture and the events route each write a new small file per flush or request
(:mod:`.records`). Once an hour's windows are closed its files are merged::

    monitoring/<project>/<model>/<env>/<YYYY-MM-DD>/<HH>/<uuid>.parquet        parts
    monitoring/<project>/<model>/<env>/<YYYY-MM-DD>/<HH>/compacted-<gen>-<id>.parquet

A merged file names, in its Parquet metadata (``mlplatform.replaces``), every file of the
folder whose rows it holds; ``<gen>`` is one more than the generation of the newest merged
file it replaces. Compacting writes the merged file (atomically: the store's ``put``), then
deletes what it replaces. Readers (:func:`.records.read_hour`) skip every file named by a
merged file they read, newest generation first, and list the folder again if a file they
listed was deleted before they opened it, so a read during a compaction sees each row
exactly once whichever step the compaction is at. A file that arrives after the merged file
was planned (a late event) is not named by it: it is read beside it, and merged by the next
compaction of the hour (the window's recompute, or ``mlplatform monitor compact``).

Compactions of one hour folder never overlap: each holds a lease, a ``monitor_compactions``
row (``leased_until``), claimed in a short transaction. A compaction that finds the lease
held, or the hour compacted less than ``MIN_INTERVAL`` ago, skips the hour: its newer files
stay readable beside the merged file until the next compaction. (The spacing is what lets a
reader trust its second listing: two compactions cannot both finish within one read.)
Compacting again without new files changes nothing (idempotent).

The window job compacts every hour that ended by the end of its window
(:func:`compact_window`); ``mlplatform monitor compact`` compacts every closed hour of every
deployment (:func:`compact_closed_hours`). A merge holds the hour's records in memory, as a
one-hour window computation does.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.models import Project
from mlplatform.core.db.monitoring import MonitorCompaction
from mlplatform.core.db.registry import RegisteredModel
from mlplatform.core.monitoring import records
from mlplatform.core.monitoring.windows import as_utc, hours_between, parse_length

if TYPE_CHECKING:
    from mlplatform.core.backends import ArtifactStore
    from mlplatform.core.platform import Platform

HOUR = dt.timedelta(hours=1)
LEASE = dt.timedelta(minutes=15)
MIN_INTERVAL = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class HourCompaction:
    """What compacting one hour folder did: ``merged`` files (parts and earlier merged files)
    replaced by ``file`` holding ``rows`` rows. ``file`` None: nothing to merge, or
    ``skipped`` (another compaction held the hour, or one finished less than
    ``MIN_INTERVAL`` ago)."""

    hour: dt.datetime
    merged: int = 0
    rows: int = 0
    file: str | None = None
    skipped: bool = False


def compact_hour(store: ArtifactStore, prefix: str, hour: dt.datetime) -> HourCompaction:
    """Merge the hour folder ``prefix`` into one file, then delete what it replaces.

    Without the lease this is only safe when nothing else compacts the folder: use
    :func:`compact_hours`. Files already replaced by a merged file (a compaction stopped
    before it deleted them) are deleted; a folder that already is one file is left alone.
    """
    snapshot = records.read_hour(store, prefix)
    stale = [path for path in snapshot.listed if path not in snapshot.live]
    if len(snapshot.live) <= 1:
        for path in stale:
            store.delete(path)
        return HourCompaction(hour)
    table = records.concat([snapshot.tables[path] for path in snapshot.live])
    generation = snapshot.generation + 1
    name = f"{records.MERGED_PREFIX}{generation:06d}-{uuid.uuid4().hex[:12]}.parquet"
    replaces = sorted(path.rsplit("/", 1)[-1] for path in snapshot.listed)
    metadata = {**(table.schema.metadata or {}), records.REPLACES_KEY: json.dumps(replaces).encode()}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer, compression="zstd")
    size = buffer.tell()
    buffer.seek(0)
    store.put(prefix + name, buffer, size)  # from here on readers read it instead of the files it replaces
    for path in snapshot.listed:
        store.delete(path)
    return HourCompaction(hour, merged=len(snapshot.live), rows=table.num_rows, file=name)


def compact_hours(
    platform: Platform,
    deployment_id: int,
    project: str,
    model: str,
    environment: str,
    hours: Iterable[dt.datetime],
    *,
    min_interval: dt.timedelta = MIN_INTERVAL,
) -> list[HourCompaction]:
    """Compact each hour folder of the deployment under its lease (see the module doc)."""
    done = []
    for hour in hours:
        hour = as_utc(hour)
        if not _claim(platform, deployment_id, hour, min_interval):
            done.append(HourCompaction(hour, skipped=True))
            continue
        result = HourCompaction(hour)
        try:
            result = compact_hour(platform.artifact_store, records.hour_prefix(project, model, environment, hour), hour)
        finally:
            _release(platform, deployment_id, hour, result)
        done.append(result)
    return done


def window_hours(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The hours a window ending at ``end`` closes: those overlapping ``[start, end)`` that
    ended by ``end`` (with 5-minute windows, only the hour's last window closes it)."""
    return [hour for hour in hours_between(start, end) if hour + HOUR <= end]


def compact_window(
    platform: Platform,
    deployment_id: int,
    project: str,
    model: str,
    environment: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    now: dt.datetime | None = None,
) -> list[HourCompaction]:
    """What the window job runs after storing a window's points: compact the hours the window
    closes that ended ``monitoring.close_delay`` ago (a window computed early closes none)."""
    cutoff = _cutoff(platform, now)
    hours = [hour for hour in window_hours(start, end) if hour + HOUR <= cutoff]
    return compact_hours(platform, deployment_id, project, model, environment, hours)


def compact_closed_hours(
    platform: Platform, *, deployment_ids: Iterable[int] | None = None, now: dt.datetime | None = None
) -> dict[int, list[HourCompaction]]:
    """Compact every hour folder of every deployment (or of ``deployment_ids``) that has more
    than one file and ended ``monitoring.close_delay`` ago. Returns what was done per deployment."""
    cutoff = _cutoff(platform, now)
    with platform.db.read() as session:
        deployments = _deployments(session, deployment_ids)
    store = platform.artifact_store
    results: dict[int, list[HourCompaction]] = {}
    for deployment_id, project, model, environment in deployments:
        prefix = records.deployment_prefix(project, model, environment)
        files: dict[dt.datetime, int] = defaultdict(int)
        for info in store.list(prefix):
            hour = _hour_of(info.path[len(prefix) :])
            if hour is not None and hour + HOUR <= cutoff:
                files[hour] += 1
        due = sorted(hour for hour, count in files.items() if count > 1)
        if due:
            results[deployment_id] = compact_hours(platform, deployment_id, project, model, environment, due)
    return results


def _cutoff(platform: Platform, now: dt.datetime | None) -> dt.datetime:
    """Hours that ended by this time are closed: no more captured records are expected."""
    return as_utc(now or utcnow()) - parse_length(platform.config["monitoring"]["close_delay"])


def _hour_of(relative: str) -> dt.datetime | None:
    """``2024-05-01/10/<file>.parquet`` -> 2024-05-01 10:00 UTC; None for anything else."""
    parts = relative.split("/")
    if len(parts) != 3 or not parts[2].endswith(".parquet"):
        return None
    try:
        return dt.datetime.strptime(f"{parts[0]} {parts[1]}", "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _deployments(session: Session, ids: Iterable[int] | None) -> list[tuple[int, str, str, str]]:
    query = (
        select(Deployment.id, Project.name, RegisteredModel.name, Deployment.environment)
        .join(RegisteredModel, RegisteredModel.id == Deployment.model_id)
        .join(Project, Project.id == Deployment.project_id)
        .order_by(Deployment.id)
    )
    if ids is not None:
        query = query.where(Deployment.id.in_(list(ids)))
    return [(int(i), p, m, e) for i, p, m, e in session.execute(query)]


# --- the lease --------------------------------------------------------------------------------


def _claim(platform: Platform, deployment_id: int, hour: dt.datetime, min_interval: dt.timedelta) -> bool:
    """Take the hour's lease unless another compaction holds it (and its lease has not
    expired) or the hour was compacted less than ``min_interval`` ago."""
    now = utcnow()
    with platform.db.write() as session:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(
            dialect.insert(MonitorCompaction)
            .values(deployment_id=deployment_id, hour_start=hour, row_count=0, files_merged=0, file="")
            .on_conflict_do_nothing()
        )
        row = session.scalars(
            select(MonitorCompaction)
            .where(MonitorCompaction.deployment_id == deployment_id, MonitorCompaction.hour_start == hour)
            .with_for_update()
        ).one()
        if row.leased_until is not None and as_utc(row.leased_until) > now:
            return False
        if row.compacted_at is not None and now - as_utc(row.compacted_at) < min_interval:
            return False
        row.leased_until = now + LEASE
        return True


def _release(platform: Platform, deployment_id: int, hour: dt.datetime, result: HourCompaction) -> None:
    with platform.db.write() as session:
        row = session.scalars(
            select(MonitorCompaction).where(
                MonitorCompaction.deployment_id == deployment_id, MonitorCompaction.hour_start == hour
            )
        ).one_or_none()
        if row is None:  # the deployment was deleted meanwhile
            return
        row.leased_until = None
        if result.file is not None:
            row.file, row.files_merged, row.row_count, row.compacted_at = (
                result.file,
                result.merged,
                result.rows,
                utcnow(),
            )
