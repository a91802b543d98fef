"""The writes of experiment tracking's hot paths: a new run with its first batch, and a batch.

Driver-level SQL on the session's connection: a batch is the hot path, and SQLAlchemy's
per-statement and per-row work (compiling, parameter processing) would cost more than the
database does. PostgreSQL gets one statement per call (one round trip); SQLite, which runs
in process, one ``executemany`` per table. Columns are quoted where PostgreSQL reserves
their names. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, Table, select, true
from sqlalchemy.orm import Session

from mlplatform.core.db.models import Project
from mlplatform.core.db.tracking import Experiment, LatestMetric, Param, Run, RunTag

if TYPE_CHECKING:
    from mlplatform.core.services.tracking_batch import Batch

Point = tuple[str, float | None, int, int]  # (key, value, step, timestamp); value None is NaN

runs_table: Table = Run.__table__  # type: ignore[assignment]
experiments_table: Table = Experiment.__table__  # type: ignore[assignment]
projects_table: Table = Project.__table__  # type: ignore[assignment]
params_table: Table = Param.__table__  # type: ignore[assignment]
tags_table: Table = RunTag.__table__  # type: ignore[assignment]
latest_table: Table = LatestMetric.__table__  # type: ignore[assignment]

# The columns a new run is inserted with (end_time and deleted_at start NULL).
NEW_RUN_COLUMNS = (
    "id",
    "project_id",
    "experiment_id",
    "name",
    "status",
    "lifecycle_stage",
    "start_time",
    "user",
    "source_git_commit",
    "source_entry_point",
    "parent_run_id",
    "artifact_prefix",
)


class Target(NamedTuple):
    """Where a new run was asked to go: its experiment's project, the experiment's stage and
    whether the parent run (if one was named) exists in that project."""

    project_id: int
    lifecycle_stage: str
    parent_found: bool

    @property
    def accepts(self) -> bool:
        return self.lifecycle_stage == "active" and self.parent_found


def artifact_prefix(project_id: int, run_id: str) -> str:
    return f"projects/{project_id}/runs/{run_id}"


def insert_run(session: Session, project_name: str, run: Mapping[str, Any], batch: Batch) -> Target | None:
    """Insert a new run with its first batch, in the caller's transaction, if its experiment
    (``run["experiment_id"]`` in ``project_name``) is active and its parent run, if any, is in
    the project. Returns what was found (None: no such experiment in the project), so the
    caller can name the problem; nothing is written unless ``Target.accepts``.

    ``run`` holds the ``NEW_RUN_COLUMNS`` but ``project_id`` and ``artifact_prefix``, which
    follow from the project. PostgreSQL checks and writes in one statement."""
    return _writer(session).create(session.connection(), project_name, run, batch)


def _target_query(project_name: str, experiment_id: int, parent: str | None) -> Any:
    e, p, r = experiments_table.c, projects_table.c, runs_table.c
    parent_found = select(r.id).where(r.id == parent, r.project_id == p.id).exists() if parent is not None else true()
    return (
        select(p.id, e.lifecycle_stage, parent_found)
        .select_from(experiments_table.join(projects_table, p.id == e.project_id))
        .where(p.name == project_name, e.id == experiment_id)
    )


def write_batch(session: Session, run_id: str, batch: Batch, params: dict[str, str]) -> None:
    """Write ``batch`` to the existing run ``run_id`` (``params``: those not logged yet)."""
    _writer(session).write(session.connection(), run_id, batch, params)


def latest_points(metrics: Iterable[Point]) -> dict[str, Point]:
    """The newest point per key of a batch: max step, then latest timestamp, then the later one
    (the rule ``_LATEST_WINS`` applies against the stored point)."""
    newest: dict[str, Point] = {}
    for point in metrics:
        held = newest.get(point[0])
        if held is None or (point[2], point[3]) >= (held[2], held[3]):
            newest[point[0]] = point
    return newest


def _columns(points: Iterable[Point]) -> tuple[list[Any], ...]:
    """(key, value, step, timestamp) rows as four column lists."""
    columns = tuple(map(list, zip(*points, strict=True)))
    return columns if columns else ([], [], [], [])


_LATEST_WINS = (
    'excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step AND excluded."timestamp" >= '
    'latest_metrics."timestamp")'
)


def _pg_batch_inserts(run_id: str, source: str) -> list[str]:
    """The four inserts of a batch on PostgreSQL, each from ``unnest()`` of column arrays:
    params, tags (upsert), latest values (upsert, the newer point wins) and points.
    ``run_id`` is the SQL of the run's id; ``source`` is joined with every ``unnest()``."""

    def rows(*arrays: str) -> str:
        return f"SELECT {run_id}, u.* FROM {source}unnest({', '.join(arrays)}) AS u"

    return [
        'INSERT INTO params (run_id, "key", value) ' + rows("%(param_keys)b::text[]", "%(param_values)b::text[]"),
        'INSERT INTO run_tags (run_id, "key", value) '
        + rows("%(tag_keys)b::text[]", "%(tag_values)b::text[]")
        + ' ON CONFLICT (run_id, "key") DO UPDATE SET value = excluded.value',
        'INSERT INTO latest_metrics (run_id, "key", step, "timestamp", value) '
        + rows(
            "%(latest_keys)b::text[]",
            "%(latest_steps)b::int8[]",
            "%(latest_stamps)b::int8[]",
            "%(latest_values)b::float8[]",
        )
        + ' ON CONFLICT (run_id, "key") DO UPDATE SET step = excluded.step, "timestamp" = excluded."timestamp",'
        + f" value = excluded.value WHERE {_LATEST_WINS}",
        'INSERT INTO metrics (run_id, "key", step, "timestamp", value) '
        + rows("%(keys)b::text[]", "%(steps)b::int8[]", "%(stamps)b::int8[]", "%(values)b::float8[]"),
    ]


class _PostgresWriter:
    """A batch in one statement (one round trip): data-modifying CTEs that insert from
    ``unnest()`` of column arrays, which psycopg sends in binary (``%b``: no text formatting
    or parsing of 1000 floats); empty arrays insert nothing.

    A new run is one statement too: the experiment and parent checks (``target``), the run
    (``new_run``, only if the checks pass) and its batch, whose rows join ``new_run`` so that
    nothing is written without it. Foreign keys are checked at the end of the statement, so
    the batch's rows may refer to the run inserted beside them."""

    def __init__(self) -> None:
        params, tags, latest, points = _pg_batch_inserts("%(run_id)s", "")
        self.log_sql = f"WITH params AS ({params}), tags AS ({tags}), latest AS ({latest}) {points}"
        # Parameters are cast where they are used, so each has one type in the statement.
        target = (
            "SELECT p.id AS project_id, e.lifecycle_stage,"
            " %(parent_run_id)s::text IS NULL OR EXISTS (SELECT 1 FROM runs AS r"
            " WHERE r.id = %(parent_run_id)s::text AND r.project_id = p.id) AS parent_found"
            " FROM experiments AS e JOIN projects AS p ON p.id = e.project_id"
            " WHERE p.name = %(project)s::text AND e.id = %(experiment_id)s::bigint"
        )
        computed = {
            "id": "%(run_id)s::text",
            "project_id": "project_id",
            "experiment_id": "%(experiment_id)s::bigint",
            "start_time": "%(start_time)s::timestamptz",
            "artifact_prefix": "'projects/' || project_id || '/runs/' || %(run_id)s::text",  # as artifact_prefix()
        }
        columns = ", ".join(f'"{c}"' for c in NEW_RUN_COLUMNS)
        values = ", ".join(computed.get(c, f"%({c})s::text") for c in NEW_RUN_COLUMNS)
        new_run = (
            f"INSERT INTO runs ({columns}) SELECT {values}"
            " FROM target WHERE lifecycle_stage = 'active' AND parent_found RETURNING id"
        )
        params, tags, latest, points = _pg_batch_inserts("new_run.id", "new_run, ")
        self.create_sql = (
            f"WITH target AS ({target}), new_run AS ({new_run}), params AS ({params}), tags AS ({tags}),"
            f" latest AS ({latest}), points AS ({points})"
            " SELECT project_id, lifecycle_stage, parent_found FROM target"
        )

    def create(self, connection: Connection, project_name: str, run: Mapping[str, Any], batch: Batch) -> Target | None:
        arguments = {**run, "project": project_name, **self._arguments(run["id"], batch, batch.params)}
        row = connection.exec_driver_sql(self.create_sql, arguments).first()
        return None if row is None else Target(*row)

    def write(
        self,
        connection: Connection,
        run_id: str,
        batch: Batch,
        params: dict[str, str],
    ) -> None:
        connection.exec_driver_sql(self.log_sql, self._arguments(run_id, batch, params))

    @staticmethod
    def _arguments(run_id: str, batch: Batch, params: dict[str, str]) -> dict[str, Any]:
        keys, values, steps, stamps = _columns(batch.metrics)
        latest_keys, latest_values, latest_steps, latest_stamps = _columns(latest_points(batch.metrics).values())
        return {
            "run_id": run_id,
            "param_keys": list(params),
            "param_values": list(params.values()),
            "tag_keys": list(batch.tags),
            "tag_values": list(batch.tags.values()),
            "keys": keys,
            "values": values,
            "steps": steps,
            "stamps": stamps,
            "latest_keys": latest_keys,
            "latest_values": latest_values,
            "latest_steps": latest_steps,
            "latest_stamps": latest_stamps,
        }


class _SqliteWriter:
    """``executemany`` per table: SQLite runs in process, so statements cost no round trip."""

    params = 'INSERT INTO params (run_id, "key", value) VALUES (?, ?, ?)'
    tags = 'INSERT INTO run_tags (run_id, "key", value) VALUES (?, ?, ?) ON CONFLICT (run_id, "key") DO UPDATE SET value = excluded.value'
    points = 'INSERT INTO metrics (run_id, "key", step, "timestamp", value) VALUES (?, ?, ?, ?, ?)'
    latest = (
        'INSERT INTO latest_metrics (run_id, "key", step, "timestamp", value) VALUES (?, ?, ?, ?, ?)'
        ' ON CONFLICT (run_id, "key") DO UPDATE SET step = excluded.step, "timestamp" = excluded."timestamp",'
        f" value = excluded.value WHERE {_LATEST_WINS}"
    )

    def create(self, connection: Connection, project_name: str, run: Mapping[str, Any], batch: Batch) -> Target | None:
        row = connection.execute(_target_query(project_name, run["experiment_id"], run["parent_run_id"])).first()
        if row is None:
            return None
        target = Target(row[0], row[1], bool(row[2]))
        if target.accepts:
            full = {
                **run,
                "project_id": target.project_id,
                "artifact_prefix": artifact_prefix(target.project_id, run["id"]),
            }
            connection.execute(runs_table.insert(), full)  # Core: stores start_time as SQLite expects
            self.write(connection, run["id"], batch, batch.params)
        return target

    def write(self, connection: Connection, run_id: str, batch: Batch, params: dict[str, str]) -> None:
        if params:
            connection.exec_driver_sql(self.params, [(run_id, k, v) for k, v in params.items()])
        if batch.tags:
            connection.exec_driver_sql(self.tags, [(run_id, k, v) for k, v in batch.tags.items()])
        if batch.metrics:
            connection.exec_driver_sql(self.points, [(run_id, k, s, t, v) for k, v, s, t in batch.metrics])
            latest = latest_points(batch.metrics).values()
            connection.exec_driver_sql(self.latest, [(run_id, k, s, t, v) for k, v, s, t in latest])


_WRITERS: dict[str, _PostgresWriter | _SqliteWriter] = {}


def _writer(session: Session) -> _PostgresWriter | _SqliteWriter:
    dialect = session.get_bind().dialect.name
    if dialect not in _WRITERS:
        _WRITERS[dialect] = _PostgresWriter() if dialect == "postgresql" else _SqliteWriter()
    return _WRITERS[dialect]
