"""Metric history: every point of a run's metric, a page at a time, or downsampled for charts.

Downsampling (``max_points``) is bucketed min/max, the shape that keeps spikes visible:
the first and the last point are always kept; the points between are split in order into
``(max_points - 2) // 2`` buckets of equal count and each bucket keeps its minimum and its
maximum point (one point if they are the same, its first point if it is all NaN), in step
order. So the global minimum and maximum always survive and at most ``max_points`` points
come back. The points of one series are read with one indexed range scan
(``ix_metrics_run_id_key_step``) and bucketed in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from mlplatform.core.db.tracking import Metric, Run
from mlplatform.core.errors import InvalidInput, NotFound
from mlplatform.core.services import access
from mlplatform.core.services.pagination import Page, decode_token, encode_token
from mlplatform.core.services.tracking import load_run

Point = tuple[int, int, float | None]  # (step, timestamp, value); value None is NaN
MIN_MAX_POINTS = 4
MAX_SERIES = 1000
METRICS: Table = Metric.__table__  # type: ignore[assignment]


def downsample(points: Sequence[Point], max_points: int) -> list[Point]:
    """Bucketed min/max of ``points`` (in step order) down to at most ``max_points``."""
    if max_points < MIN_MAX_POINTS:
        raise InvalidInput(
            f"max_points must be at least {MIN_MAX_POINTS}", errors={"max_points": [f"at least {MIN_MAX_POINTS}"]}
        )
    count = len(points)
    if count <= max_points:
        return list(points)
    buckets = (max_points - 2) // 2
    interior = count - 2
    kept: list[Point] = [points[0]]
    for b in range(buckets):
        start = 1 + b * interior // buckets
        end = 1 + (b + 1) * interior // buckets
        low = high = -1
        for i in range(start, end):
            value = points[i][2]
            if value is None:
                continue
            if low < 0 or value < points[low][2]:  # type: ignore[operator]
                low = i
            if high < 0 or value > points[high][2]:  # type: ignore[operator]
                high = i
        if low < 0:
            kept.append(points[start])
        elif low == high:
            kept.append(points[low])
        else:
            kept.extend((points[low], points[high]) if low < high else (points[high], points[low]))
    kept.append(points[-1])
    return kept


def history(
    session: Session,
    project_name: str,
    run_id: str,
    key: str,
    *,
    page_size: int = 10000,
    page_token: str | None = None,
    max_points: int | None = None,
) -> Page[Point]:
    """Points of ``key`` ordered by step (then logging order). With ``max_points`` the whole
    series is downsampled into one page; otherwise it is paged with keyset tokens."""
    position = None
    if page_token and max_points is None:
        position = decode_token(page_token)
        if not (isinstance(position, list) and len(position) == 2 and all(isinstance(p, int) for p in position)):
            raise InvalidInput("page_token is not a token this server issued", errors={"page_token": ["invalid"]})
    rows = _points(session, project_name, run_id, key, position, None if max_points is not None else page_size + 1)
    if not rows:
        load_run(session, access.get_project(session, project_name), run_id)  # NotFound for a missing run
    if max_points is not None:
        return Page(downsample(rows, max_points), None)  # type: ignore[arg-type]
    token = encode_token([rows[page_size - 1][0], rows[page_size - 1][3]]) if len(rows) > page_size else None
    # Rows are (step, timestamp, value, id): callers read the first three, so no copy is made.
    return Page(rows[:page_size], token)  # type: ignore[arg-type]


_POINTS = (
    'SELECT step, "timestamp", value, id FROM metrics WHERE run_id = {run_id} AND "key" = {key}'
    " AND EXISTS (SELECT 1 FROM runs JOIN projects ON projects.id = runs.project_id"
    " WHERE runs.id = {run_id} AND projects.name = {project})"
)


def _points(
    session: Session, project_name: str, run_id: str, key: str, after: list[int] | None, limit: int | None
) -> list[tuple[int, int, float | None, int]]:
    """(step, timestamp, value, id) rows of one series in order, after ``after`` (a (step, id)
    position), at most ``limit``; none if the run is not in the project.

    One statement, driver-level: the hot read of the tracking API. The run's project is
    checked in the same query (an uncorrelated EXISTS, evaluated once). PostgreSQL sends the
    rows in binary, which spares formatting and parsing 10,000 floats and bigints as text."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    names = ("run_id", "key", "project", "step", "id", "limit")
    marks = {n: f"%({n})s" if postgresql else f":{n}" for n in names}
    sql = _POINTS.format(**marks)
    if after is not None:
        sql += " AND (step, id) > ({step}, {id})".format(**marks)
    sql += " ORDER BY step, id"
    if limit is not None:
        sql += " LIMIT {limit}".format(**marks)
    arguments: dict[str, Any] = {"run_id": run_id, "key": key, "project": project_name, "limit": limit}
    if after is not None:
        arguments.update(step=after[0], id=after[1])
    driver = session.connection().connection.driver_connection
    assert driver is not None
    cursor = driver.cursor(binary=True) if postgresql else driver.cursor()
    try:
        cursor.execute(sql, arguments)
        return cursor.fetchall()
    finally:
        cursor.close()


def compare(
    session: Session, project_name: str, run_ids: Sequence[str], keys: Sequence[str], max_points: int | None = 1000
) -> list[dict[str, Any]]:
    """Series for every (run, key) pair that has points, each downsampled to ``max_points``
    (None: every point). One query for the runs, one for all the points."""
    if len(run_ids) * len(keys) > MAX_SERIES:
        raise InvalidInput(
            f"at most {MAX_SERIES} run x key series in one call", errors={"runs": [f"runs x keys <= {MAX_SERIES}"]}
        )
    project = access.get_project(session, project_name)
    found = set(session.scalars(select(Run.id).where(Run.id.in_(run_ids), Run.project_id == project.id)))
    missing = [r for r in run_ids if r not in found]
    if missing:
        raise NotFound(f"runs do not exist in project {project.name!r}: {', '.join(missing[:10])}")
    series: dict[tuple[str, str], list[Point]] = {}
    m = METRICS.c
    rows = session.connection().execute(
        select(m.run_id, m.key, m.step, m.timestamp, m.value)
        .where(m.run_id.in_(run_ids), m.key.in_(keys))
        .order_by(m.run_id, m.key, m.step, m.id)
    )
    for run_id, key, step, stamp, value in rows:
        series.setdefault((run_id, key), []).append((step, stamp, value))
    result = []
    for run_id in run_ids:
        for key in keys:
            points = series.get((run_id, key))
            if points is not None:
                result.append(
                    {"run_id": run_id, "key": key, "points": downsample(points, max_points) if max_points else points}
                )
    return result
