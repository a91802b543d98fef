"""Monitoring: our window computation against Evidently 0.7's DataDriftPreset, event ingest,
and a 30-day series query.

Data (seeded): reference 100,000 rows; current windows of 1,000,000 and 100,000 rows; 20 float
columns ``f0..f19`` (N(0, 1); ``f0..f4`` shifted by 0.05 sd in the windows) and 5 categorical
columns ``c0..c4`` with 10, 20, 30, 40 and 50 categories (Zipf-like shares).

* drift        seconds per window, same data for both:
               Evidently: ``Report([DataDriftPreset()])`` default methods, forced PSI, forced KS
               (numerical columns; categories keep the default), Datasets built in the timing;
               ours: :func:`mlplatform.core.monitoring.analysis.analyze` with psi + ks (and each
               alone): every data-quality figure plus drift, on the window as ``read_window``
               returns it (Parquet string columns dictionary-encoded); the prepared reference
               is warm (as for every window after a version's first).
* window job   ``compute_monitor_window`` end to end on SQLite: read the window's Parquet
               records from the local artifact store, compute, replace the points; cold (loads
               the reference's .npy files) and warm.
* ingest       Parquet bodies of 50,000 rows POSTed to the events route of a real server
               (``mlplatform serve``, 4 workers), 4 client threads -> rows/s.
* series       ``GET .../metrics?name=psi&feature=f0&step=5m`` over 30 days of 5-minute
               windows (8,640 windows x 180 points each in ``monitor_points``) -> p50 ms, over
               HTTP and through ``services.timeseries.query`` in process; also with
               ``version=1`` and with ``step=1h``. On every database of ``--backends``
               (PostgreSQL: a throwaway ``scratch_bench_drift_*`` database, dropped after).

    .venv/bin/python bench/drift.py [--quick] [--repeats 3] [--skip-evidently] [--skip-server]
                                    [--series-only] [--backends sqlite,postgresql]

Evidently runs from bench/.venv-evidently (``make bench-drift`` creates it). Results are
printed and written as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from mlplatform.core.monitoring.analysis import analyze  # noqa: E402
from mlplatform.core.monitoring.drift_window import DriftSuite  # noqa: E402
from mlplatform.core.monitoring.ingest import InputSchema  # noqa: E402
from mlplatform.core.monitoring.profiles import build_profile  # noqa: E402
from mlplatform.core.monitoring.records import INPUT_PREFIX, WindowRecords, read_parquet  # noqa: E402
from mlplatform.core.monitoring.reference_cache import CategoricalReference, NumericReference, PreparedReference  # noqa: E402
from mlplatform.plugins.drift import KS, PSI  # noqa: E402

REFERENCE_ROWS = 100_000
CATEGORIES = (10, 20, 30, 40, 50)
SHIFTED = 5
WINDOW = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)
EVIDENTLY = HERE / ".venv-evidently" / "bin" / "python"


# --------------------------------------------------------------------------- data


def make_table(rows: int, seed: int, shift: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {f"f{i}": rng.normal(shift if i < SHIFTED else 0.0, 1.0, rows) for i in range(20)}
    for j, k in enumerate(CATEGORIES):
        shares = 1.0 / np.arange(1, k + 1)
        codes = rng.choice(k, rows, p=shares / shares.sum())
        columns[f"c{j}"] = pa.array(np.array([f"cat{x}" for x in range(k)], dtype=object)[codes], pa.string())
    return pa.table(columns)


def write_data(folder: Path, sizes: list[int]) -> None:
    pq.write_table(make_table(REFERENCE_ROWS, 0, 0.0), folder / "reference.parquet")
    for size in sizes:
        pq.write_table(make_table(size, size, 0.05), folder / f"current_{size}.parquet")


def as_window(table: pa.Table) -> WindowRecords:
    """The current data as ``read_window`` hands it over (records layout, dictionary strings)."""
    n = table.num_rows
    stamped = table.rename_columns([INPUT_PREFIX + name for name in table.column_names])
    buffer = io.BytesIO()
    pq.write_table(stamped, buffer)
    buffer.seek(0)
    read = read_parquet(buffer)
    base = pa.table(
        {
            "request_id": pa.nulls(n, pa.string()),
            "timestamp": pa.nulls(n, pa.timestamp("ms", tz="UTC")),
            "version": pa.nulls(n, pa.int32()),
            "output": pa.nulls(n, pa.float64()),
            "latency_ms": pa.nulls(n, pa.float64()),
            "status": pa.nulls(n, pa.int16()),
            "source": pa.nulls(n, pa.string()),
            "violations": pa.nulls(n, pa.list_(pa.string())),
        }
    )
    return WindowRecords(base, {name[len(INPUT_PREFIX) :]: read.column(name) for name in read.column_names})


# --------------------------------------------------------------------------- ours


def ours_compute(folder: Path, sizes: list[int], repeats: int) -> dict[str, Any]:
    reference = pq.read_table(folder / "reference.parquet")
    start = time.perf_counter()
    profile, arrays = build_profile(reference, None)
    profile_s = time.perf_counter() - start
    prepared = PreparedReference(
        profile,
        {n: NumericReference(arrays[f["sorted"]]) for n, f in profile["features"].items() if f["kind"] == "numerical"},
        {
            n: CategoricalReference(list(f["categories"]), np.array(list(f["categories"].values()), dtype=np.int64))
            for n, f in profile["features"].items()
            if f["kind"] == "categorical"
        },
        None,
    )
    suites = {"psi+ks": [PSI({"bins": 10}), KS({})], "psi": [PSI({"bins": 10})], "ks": [KS({})]}
    results = []
    for size in sizes:
        window = as_window(pq.read_table(folder / f"current_{size}.parquet"))
        for name, metrics in suites.items():
            suite = DriftSuite(metrics, {}, {})
            analyze(window, prepared, InputSchema(), suite)  # warm the reference's derived arrays
            times, rows = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                rows = analyze(window, prepared, InputSchema(), suite)
                times.append(time.perf_counter() - t0)
            drifted = sorted(feature for metric, feature, value in rows if metric == "drifted" and value == 1.0)
            results.append(
                {"rows": size, "metrics": name, "seconds": sorted(times), "points": len(rows), "drifted": drifted}
            )
    return {"profile_reference_s": profile_s, "windows": results}


def ours_window_job(folder: Path, tmp: Path, size: int) -> dict[str, Any]:
    """``compute_monitor_window`` end to end on SQLite and the local artifact store."""
    from mlplatform.core.backends import Identity
    from mlplatform.core.db import migrate
    from mlplatform.core.db.deployments import Deployment, DeploymentVersion
    from mlplatform.core.db.models import Project
    from mlplatform.core.db.registry import ModelVersion, RegisteredModel
    from mlplatform.core.monitoring import reference_cache
    from mlplatform.core.monitoring.records import write_records
    from mlplatform.core.monitoring.window_job import compute_monitor_window
    from mlplatform.core.platform import Platform
    from mlplatform.core.services import monitoring as service

    url = f"sqlite:///{tmp / 'job.db'}"
    migrate.upgrade(url)
    platform = Platform({"data_dir": str(tmp / "job-data"), "database": {"url": url}})
    try:
        with platform.db.write() as session:
            project = Project(name="bench", created_by="bench")
            session.add(project)
            session.flush()
            model = RegisteredModel(project_id=project.id, name="m", created_by="bench")
            session.add(model)
            session.flush()
            version = ModelVersion(model_id=model.id, version=1, status="ready", artifact_uri="x", created_by="bench")
            deployment = Deployment(
                project_id=project.id, model_id=model.id, environment="prod", target="local", updated_by="bench"
            )
            session.add_all([version, deployment])
            session.flush()
            session.add(DeploymentVersion(deployment_id=deployment.id, version_id=version.id, weight=100))
            deployment_id = deployment.id
        t0 = time.perf_counter()
        with platform.db.write() as session:
            service.put_reference(
                session,
                platform,
                Identity("bench", "bench"),
                "bench",
                "m",
                1,
                data=(folder / "reference.parquet").read_bytes(),
                fmt="parquet",
            )
        put_reference_s = time.perf_counter() - t0
        current = pq.read_table(folder / f"current_{size}.parquet")
        n = current.num_rows
        records = current.rename_columns([INPUT_PREFIX + c for c in current.column_names])
        stamps = pa.array(np.full(n, int(WINDOW.timestamp() * 1000)) + np.arange(n) % 3_600_000, pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")
        )
        records = records.append_column("timestamp", stamps).append_column(
            "request_id", pa.array([f"r{i}" for i in range(n)])
        )
        records = records.append_column("output", pa.array(np.zeros(n))).append_column(
            "source", pa.repeat(pa.scalar("events"), n)
        )
        write_records(platform.artifact_store, "bench", "m", "prod", records)
        reference_cache.clear()
        timings = []
        for _ in range(2):
            t0 = time.perf_counter()
            result = compute_monitor_window(platform, deployment_id, WINDOW.isoformat())
            timings.append(time.perf_counter() - t0)
        return {
            "rows": size,
            "put_reference_s": put_reference_s,
            "cold_s": timings[0],
            "warm_s": timings[1],
            "points": result["points"],
        }
    finally:
        platform.close()


# --------------------------------------------------------------------------- evidently


def evidently(folder: Path, repeats: int) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(EVIDENTLY), str(HERE / "drift_evidently.py"), str(folder), str(repeats)], capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"evidently failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- server: ingest and series

SERIES_METRICS = (
    "row_count",
    "missing_rate",
    "mean",
    "psi",
    "psi_drifted",
    "ks",
    "ks_drifted",
    "ks_statistic",
    "drifted",
)
SERIES_FEATURES = tuple(f"f{i}" for i in range(20))


class Served:
    """``mlplatform serve`` (4 workers) on a fresh database of ``backend``, with project
    ``bench`` and model ``m`` version 1 deployed to ``prod``; ``close()`` stops it and drops a
    PostgreSQL database."""

    def __init__(self, tmp: Path, backend: str) -> None:
        import requests

        from mlplatform.core.db.deployments import Deployment, DeploymentVersion
        from mlplatform.core.db.models import Project
        from mlplatform.core.db.registry import ModelVersion, RegisteredModel
        from mlplatform.core.platform import Platform

        self.backend = backend
        self.data = tmp / f"srv-{backend}"
        self.data.mkdir()
        self.pg_database = common.create_pg_database("scratch_bench_drift") if backend == "postgresql" else None
        self.url = common.pg_url(self.pg_database) if self.pg_database else f"sqlite:///{self.data / 'mlp.db'}"
        # The series data are 5-minute windows: the server is configured so.
        env = {
            **os.environ,
            "MLPLATFORM_DATA_DIR": str(self.data),
            "MLPLATFORM_DATABASE_URL": self.url,
            "MLPLATFORM__MONITORING__WINDOW": "5m",
        }
        bin_dir = ROOT / ".venv" / "bin"
        self.server: common.Server | None = None
        self.platform: Any = None
        try:
            subprocess.run([bin_dir / "mlplatform", "db", "upgrade"], env=env, check=True, capture_output=True)
            port = common.free_port()
            self.server = common.Server(
                "mlplatform",
                [bin_dir / "mlplatform", "serve", "--port", str(port), "--workers", "4"],
                env,
                tmp / f"server-{backend}.log",
            )
            common.wait_http(port, "/api/v1/health", time.time() + 120, self.server.proc)
            token_file = self.data / "admin-token"
            deadline = time.time() + 30
            while not token_file.exists() and time.time() < deadline:
                time.sleep(0.1)
            self.base = f"http://127.0.0.1:{port}/api/v1"
            self.headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
            created = requests.post(f"{self.base}/projects", json={"name": "bench"}, headers=self.headers, timeout=30)
            assert created.status_code == 201, created.text
            self.platform = Platform(
                {"data_dir": str(self.data), "database": {"url": self.url}, "monitoring": {"window": "5m"}}
            )
            with self.platform.db.write() as session:
                project = session.query(Project).filter_by(name="bench").one()
                model = RegisteredModel(project_id=project.id, name="m", created_by="bench")
                session.add(model)
                session.flush()
                version = ModelVersion(
                    model_id=model.id, version=1, status="ready", artifact_uri="x", created_by="bench"
                )
                deployment = Deployment(
                    project_id=project.id, model_id=model.id, environment="prod", target="local", updated_by="bench"
                )
                session.add_all([version, deployment])
                session.flush()
                session.add(DeploymentVersion(deployment_id=deployment.id, version_id=version.id, weight=100))
                self.model_id, self.deployment_id, self.version_id = model.id, deployment.id, version.id
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.platform is not None:
            self.platform.close()
        if self.server is not None:
            self.server.stop()
        if self.pg_database:
            common.drop_pg_database(self.pg_database)


def ingest_figures(served: Served, ingest_rows: int) -> dict[str, Any]:
    """Parquet bodies of 50,000 rows POSTed to the events route by 4 client threads."""
    import requests

    batch = 50_000
    table = make_table(batch, 3, 0.0)
    table = table.append_column(
        "timestamp",
        pa.array(np.full(batch, int(WINDOW.timestamp() * 1000)), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    )
    table = table.append_column("output", pa.array(np.zeros(batch)))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    body = buffer.getvalue()
    requests_total = max(ingest_rows // batch, 4)
    events = f"{served.base}/projects/bench/models/m/deployments/prod/events"
    lock, sent, accepted = threading.Lock(), [0], [0]

    def client() -> None:
        session = requests.Session()
        session.headers.update({**served.headers, "Content-Type": "application/vnd.apache.parquet"})
        while True:
            with lock:
                if sent[0] >= requests_total:
                    return
                sent[0] += 1
            response = session.post(events, data=body, timeout=300)
            response.raise_for_status()
            with lock:
                accepted[0] += response.json()["accepted"]

    session0 = requests.Session()
    session0.headers.update({**served.headers, "Content-Type": "application/vnd.apache.parquet"})
    session0.post(events, data=body, timeout=300).raise_for_status()  # warm the workers' caches
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ingest_s = time.perf_counter() - t0
    return {
        "backend": served.backend,
        "requests": requests_total,
        "rows": accepted[0],
        "seconds": ingest_s,
        "rows_per_s": accepted[0] / ingest_s,
        "body_mb": len(body) / 1e6,
    }


def populate_series(served: Served, days: int) -> tuple[dt.datetime, int, float]:
    """``days`` of 5-minute windows ending at ``WINDOW``, 180 points each (9 metrics x 20
    features): returns (first window start, windows, seconds)."""
    from mlplatform.core.db.monitoring import MonitorPoint, MonitorWindow

    windows = days * 288
    start = WINDOW - dt.timedelta(days=days)
    per_window = [(m, f) for m in SERIES_METRICS for f in SERIES_FEATURES]
    t0 = time.perf_counter()
    chunk = 50  # windows per INSERT
    with served.platform.db.engine.begin() as conn:
        for first in range(0, windows, chunk):
            points, rows = [], []
            for w in range(first, min(first + chunk, windows)):
                ws = start + dt.timedelta(minutes=5 * w)
                we = ws + dt.timedelta(minutes=5)
                points += [
                    {
                        "deployment_id": served.deployment_id,
                        "version_id": served.version_id,
                        "metric": m,
                        "feature": f,
                        "window_start": ws,
                        "window_end": we,
                        "value": float((w * 7 + i) % 100) / 100,
                    }
                    for i, (m, f) in enumerate(per_window)
                ]
                rows.append(
                    {"deployment_id": served.deployment_id, "window_start": ws, "window_end": we, "row_count": 1}
                )
            conn.execute(MonitorPoint.__table__.insert(), points)
            conn.execute(MonitorWindow.__table__.insert(), rows)
    if served.backend == "postgresql":  # what autovacuum does to a table that stopped growing
        autocommit = served.platform.db.engine.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE monitor_points")
    return start, windows, time.perf_counter() - t0


#: The queries timed: the target (one feature, 5-minute buckets), the same for one version,
#: and hourly buckets. ``version`` is skipped where ``timeseries.query`` does not take it.
SERIES_QUERIES = {
    "5m": {"name": "psi", "feature": "f0", "step": "5m"},
    "5m_version": {"name": "psi", "feature": "f0", "step": "5m", "version": "1"},
    "1h": {"name": "psi", "feature": "f0", "step": "1h"},
}


def series_figures(served: Served, days: int, repeats: int = 50) -> dict[str, Any]:
    """``GET .../metrics`` over ``days`` of 5-minute windows: p50/p90 ms over HTTP (one
    keep-alive connection, 4 server workers warmed first), and p50 ms of
    ``services.timeseries.query`` in process (SQL and bucketing, no JSON)."""
    import requests

    from mlplatform.core.services import timeseries

    start, windows, populate_s = populate_series(served, days)
    url = f"{served.base}/projects/bench/models/m/deployments/prod/metrics"
    session = requests.Session()
    session.headers.update(served.headers)
    figures: dict[str, Any] = {
        "backend": served.backend,
        "days": days,
        "windows": windows,
        "points_in_table": windows * len(SERIES_METRICS) * len(SERIES_FEATURES),
        "populate_s": populate_s,
    }
    for label, params in SERIES_QUERIES.items():
        query = {**params, "start": start.isoformat(), "end": WINDOW.isoformat()}
        if "version" in params and "version" not in inspect.signature(timeseries.query).parameters:
            continue  # a server without the version filter
        first = session.get(url, params=query, timeout=60)
        first.raise_for_status()
        for _ in range(12):  # every worker answers once before the timing
            session.get(url, params=query, timeout=60).raise_for_status()
        latencies = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session.get(url, params=query, timeout=60).raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
        service_ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with served.platform.db.read() as db:
                kwargs = (
                    {"version": timeseries.version_filter(db, served.model_id, params["version"])}
                    if "version" in params
                    else {}
                )
                timeseries.query(
                    db,
                    served.platform,
                    served.deployment_id,
                    name="psi",
                    features=["f0"],
                    start=start,
                    end=WINDOW,
                    step=params["step"],
                    **kwargs,
                )
            service_ms.append((time.perf_counter() - t0) * 1000)
        figures[label] = {
            "points_returned": sum(len(s["points"]) for s in first.json().get("series", [])),
            "bytes": len(first.content),
            "p50_ms": statistics.median(latencies),
            "p90_ms": common.percentile(latencies, 90),
            "best_ms": min(latencies),
            "service_p50_ms": statistics.median(service_ms),
        }
    return figures


def server_figures(
    tmp: Path, backends: list[str], ingest_rows: int, days: int, *, ingest: bool
) -> list[dict[str, Any]]:
    """Ingest (on the first backend only: records go to the artifact store) and the series,
    one fresh server per backend."""
    results = []
    for index, backend in enumerate(backends):
        served = Served(tmp, backend)
        try:
            result: dict[str, Any] = {"backend": backend}
            if ingest and index == 0:
                result["ingest"] = ingest_figures(served, ingest_rows)
                print(f"ingest    {json.dumps(result['ingest'])}", flush=True)
            result["series"] = series_figures(served, days)
            print(f"series    {json.dumps(result['series'])}", flush=True)
            results.append(result)
        finally:
            served.close()
    return results


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="100k-row window only, 3 days of series, fewer ingest rows"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--skip-server", action="store_true", help="no ingest and no series")
    parser.add_argument("--series-only", action="store_true", help="only the series query (no drift, job or ingest)")
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="databases of the server part, comma-separated (default: sqlite,postgresql; ingest runs on the first)",
    )
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown or not backends:
        parser.error(f"--backends: sqlite and/or postgresql, not {', '.join(sorted(unknown)) or 'nothing'}")
    sizes = [100_000] if args.quick else [1_000_000, 100_000]
    days = 3 if args.quick else 30
    report: dict[str, Any] = {"machine": common.machine_info(), "started": dt.datetime.now(dt.UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as name:
        tmp = Path(name)
        if not args.series_only:
            write_data(tmp, sizes)
            report["ours"] = ours_compute(tmp, sizes, args.repeats)
            for row in report["ours"]["windows"]:
                print(
                    f"ours      {row['rows']:>9,} rows  {row['metrics']:<7} median {statistics.median(row['seconds']):.3f}s  drifted {row['drifted']}",
                    flush=True,
                )
            report["window_job"] = ours_window_job(tmp, tmp, sizes[0])
            print(f"job       {json.dumps(report['window_job'])}", flush=True)
            if not args.skip_evidently:
                report["evidently"] = evidently(tmp, args.repeats)
                for row in report["evidently"]:
                    print(
                        f"evidently {row['rows']:>9,} rows  {row['mode']:<7} median {statistics.median(row['seconds']):.3f}s  drifted {row['drifted_columns']}",
                        flush=True,
                    )
        if args.series_only or not args.skip_server:
            report["server"] = server_figures(
                tmp, backends, 200_000 if args.quick else 1_000_000, days, ingest=not args.series_only
            )
    report["loadavg_after"] = os.getloadavg()
    suffix = ("-series" if args.series_only else "") + ("-quick" if args.quick else "")
    out = HERE / "results" / f"drift-{time.strftime('%Y%m%d-%H%M%S')}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    main()
