"""Experiment tracking: mlplatform against an MLflow 3 tracking server on the same database.

For each backend (SQLite, PostgreSQL) both servers are started with 4 workers on fresh
throwaway databases and measured with the same client code, alternating ours / MLflow in
every repetition:

* small request   p50 latency of ~1000 sequential small GETs on one keep-alive connection
* W1 ingest       R runs x M metrics x S steps in batches of 1000, 1 client and 4 clients
                  (client processes, runs split between them) -> points/s
* W2 populate     N runs with 5 params, 5 metrics, 3 tags, 4 clients -> runs/s
                  (ours: one call per run; MLflow: runs/create + runs/log-batch)
* W2 search       metrics.m0 > 0.5 AND params.p0 = 'x', order by metrics.m0 DESC, top 100 (ms)
* W2 history      one metric with 10,000 steps, all points in one page (ms)

After populating, PostgreSQL databases get ANALYZE (both servers). Results are printed as a
table and written as JSON to bench/results/.

    .venv/bin/python bench/tracking.py [--backends sqlite,postgresql] [--quick]

MLflow runs from bench/.venv-mlflow (override with --mlflow).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH = 1000
PROJECT = "bench"
SEARCH_FILTER = "metrics.m0 > 0.5 AND params.p0 = 'x'"
SEARCH_ORDER = ["metrics.m0 DESC"]
RETRY_STATUSES = {429, 500, 502, 503, 504}

# uvicorn --workers N hands its workers a listening socket created with proto 0, and asyncio
# only sets TCP_NODELAY on accepted sockets whose proto is IPPROTO_TCP: every keep-alive
# request after the first then waits ~40 ms for the client's delayed ACK (Kludex/uvicorn#3149).
# MLflow 3 serves with uvicorn --workers 4 by default, so measured as shipped it pays 40 ms a
# request. We compare against MLflow with this one-line fix (loaded through PYTHONPATH into
# the server's processes; nothing in its virtualenv changes) and report the stock figures too.
NODELAY_FIX = """\
import socket
import asyncio.base_events as _be


def _set_nodelay(sock):
    if sock.family in {socket.AF_INET, socket.AF_INET6} and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_be._set_nodelay = _set_nodelay
"""

TARGETS = {
    "w1_1": ("ratio", ">=", 10),
    "w1_4": ("ratio", ">=", 5),
    "search_ms": ("ours", "<=", {"sqlite": 50, "postgresql": 30}),
    "history_ms": ("ours", "<=", 30),
    "populate_runs_s": ("ours", ">=", 300),
    "small_p50_ms": ("ours", "<=", 1),
}


# --------------------------------------------------------------------------- the two APIs


class Api:
    """One side of the comparison. Methods take a ``requests.Session`` (one per client)."""

    name = ""
    small_path = ""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base = base
        self.headers = {"Content-Type": "application/json", **headers}
        self.retries = 0

    def session(self) -> requests.Session:
        s = requests.Session()
        s.headers.update(self.headers)
        return s

    def _send(self, s: requests.Session, method: str, path: str, **kw: Any) -> requests.Response:
        for attempt in range(6):
            try:
                r = s.request(method, self.base + path, timeout=300, **kw)
            except requests.ConnectionError:
                if attempt == 5:
                    raise
                self.retries += 1
                time.sleep(0.05 * 2**attempt)
                continue
            if r.status_code in RETRY_STATUSES and attempt < 5:
                self.retries += 1
                time.sleep(0.05 * 2**attempt)
                continue
            if r.status_code >= 400:
                raise RuntimeError(f"{self.name}: {method} {path} -> {r.status_code} {r.text[:500]}")
            return r
        raise AssertionError("unreachable")

    def post(self, s: requests.Session, path: str, body: bytes | dict) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._send(s, "POST", path, data=data)

    def get(self, s: requests.Session, path: str, params: dict | None = None) -> requests.Response:
        return self._send(s, "GET", path, params=params)


class Ours(Api):
    name = "mlplatform"
    small_path = "/api/v1/health"
    prefix = f"/api/v1/projects/{PROJECT}"

    def setup(self, s: requests.Session) -> None:
        self.post(s, "/api/v1/projects", {"name": PROJECT})

    def create_experiment(self, s: requests.Session, name: str) -> str:
        return str(self.post(s, f"{self.prefix}/experiments", {"name": name}).json()["id"])

    def create_run(
        self,
        s: requests.Session,
        exp: str,
        name: str,
        metrics: bytes | None = None,
        params: dict | None = None,
        tags: dict | None = None,
    ) -> str:
        head = {"name": name}
        if params:
            head["params"] = params
        if tags:
            head["tags"] = tags
        body = json.dumps(head).encode()
        if metrics is not None:
            body = body[:-1] + b',"metrics":' + metrics + b"}"
        return self.post(s, f"{self.prefix}/experiments/{exp}/runs", body).json()["id"]

    def log_metrics(self, s: requests.Session, run: str, metrics: bytes) -> None:
        self.post(s, f"{self.prefix}/runs/{run}/log", b'{"metrics":' + metrics + b"}")

    def search(self, s: requests.Session, exp: str) -> list[tuple[float, str]]:
        body = {"experiment_ids": [int(exp)], "filter": SEARCH_FILTER, "order_by": SEARCH_ORDER, "page_size": 100}
        items = self.post(s, f"{self.prefix}/runs/search", body).json()["items"]
        return [(float(i["metrics"]["m0"]["value"]), i["params"]["p0"]) for i in items]

    def history(self, s: requests.Session, run: str, key: str) -> int:
        r = self.get(s, f"{self.prefix}/runs/{run}/metrics/{key}", {"page_size": 10000})
        body = r.json()
        assert body["next_page_token"] is None, "history did not fit one page"
        return len(body["items"])


class MLflow(Api):
    name = "mlflow"
    small_path = "/health"
    prefix = "/api/2.0/mlflow"

    def setup(self, s: requests.Session) -> None:
        pass

    def create_experiment(self, s: requests.Session, name: str) -> str:
        return self.post(s, f"{self.prefix}/experiments/create", {"name": name}).json()["experiment_id"]

    def create_run(
        self,
        s: requests.Session,
        exp: str,
        name: str,
        metrics: bytes | None = None,
        params: dict | None = None,
        tags: dict | None = None,
    ) -> str:
        body = {"experiment_id": exp, "start_time": int(time.time() * 1000), "run_name": name}
        run = self.post(s, f"{self.prefix}/runs/create", body).json()["run"]["info"]["run_id"]
        if metrics is not None or params or tags:
            batch = {"run_id": run}
            if params:
                batch["params"] = [{"key": k, "value": v} for k, v in params.items()]
            if tags:
                batch["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
            data = json.dumps(batch).encode()
            if metrics is not None:
                data = data[:-1] + b',"metrics":' + metrics + b"}"
            self.post(s, f"{self.prefix}/runs/log-batch", data)
        return run

    def log_metrics(self, s: requests.Session, run: str, metrics: bytes) -> None:
        self.post(s, f"{self.prefix}/runs/log-batch", b'{"run_id":"' + run.encode() + b'","metrics":' + metrics + b"}")

    def search(self, s: requests.Session, exp: str) -> list[tuple[float, str]]:
        body = {"experiment_ids": [exp], "filter": SEARCH_FILTER, "order_by": SEARCH_ORDER, "max_results": 100}
        runs = self.post(s, f"{self.prefix}/runs/search", body).json().get("runs", [])
        out = []
        for run in runs:
            metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
            params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
            out.append((float(metrics["m0"]), params["p0"]))
        return out

    def history(self, s: requests.Session, run: str, key: str) -> int:
        r = self.get(s, f"{self.prefix}/metrics/get-history", {"run_id": run, "metric_key": key, "max_results": 25000})
        body = r.json()
        assert not body.get("next_page_token"), "history did not fit one page"
        return len(body.get("metrics", []))


# --------------------------------------------------------------------------- servers


class Servers:
    """Both servers on fresh databases of one backend kind."""

    def __init__(self, backend: str, tmp: Path, args: argparse.Namespace) -> None:
        self.backend = backend
        self.tmp = tmp
        self.args = args
        self.dbs: list[str] = []
        self.procs: list[common.Server] = []
        self.analyze_targets: list[str] = []

    def _url(self, kind: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp / kind / (kind + '.db')}"
        db = common.create_pg_database(f"bench_{kind}")
        self.dbs.append(db)
        self.analyze_targets.append(db)
        return common.pg_url(db, "psycopg2" if kind == "mlflow" else "")  # MLflow's venv has psycopg2 only

    @staticmethod
    def _db_name(url: str) -> str | None:
        return url.rsplit("/", 1)[1] if url.startswith("postgresql") else None

    def start_ours(self) -> Ours:
        data = self.tmp / "mlp"
        data.mkdir(parents=True)
        url = self._url("mlp")
        env = {**os.environ, "MLPLATFORM_DATA_DIR": str(data), "MLPLATFORM_DATABASE_URL": url}
        bin_dir = ROOT / ".venv" / "bin"
        subprocess.run([bin_dir / "mlplatform", "db", "upgrade"], env=env, check=True, capture_output=True)
        port = common.free_port()
        server = common.Server(
            "mlplatform",
            [bin_dir / "mlplatform", "serve", "--port", str(port), "--workers", str(self.args.workers)],
            env,
            self.tmp / "mlplatform.log",
        )
        self.procs.append(server)
        try:
            common.wait_http(port, "/api/v1/health", time.time() + 120, server.proc)
        except RuntimeError:
            print(server.tail(), file=sys.stderr)
            raise
        deadline = time.time() + 30
        token_file = data / "admin-token"
        while not token_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        token = token_file.read_text().strip()
        api = Ours(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"})
        api.port, api.server, api.db = port, server, self._db_name(url)  # type: ignore[attr-defined]
        return api

    def start_mlflow(self, nodelay_fix: bool = True, url: str | None = None) -> MLflow:
        """MLflow on a fresh database, or on ``url`` (the same database as a running one)."""
        label = "mlflow" if nodelay_fix else "mlflow-stock"
        (self.tmp / label).mkdir(parents=True)
        artifacts = self.tmp / f"{label}-artifacts"
        artifacts.mkdir()
        env = {
            **os.environ,
            "MLFLOW_ENABLE_TELEMETRY": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        if nodelay_fix:
            (self.tmp / label / "sitecustomize.py").write_text(NODELAY_FIX)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.tmp / label), env.get("PYTHONPATH")]))
        url = url or self._url("mlflow")
        port = common.free_port()
        server = common.Server(
            label,
            [
                self.args.mlflow,
                "server",
                "--backend-store-uri",
                url,
                "--default-artifact-root",
                str(artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(self.args.workers),
            ],
            env,
            self.tmp / f"{label}.log",
        )
        self.procs.append(server)
        try:
            common.wait_http(port, "/health", time.time() + 240, server.proc)
            # uvicorn answers as soon as one worker is up: wait for all of them
            deadline = time.time() + 120
            while server.log_path.read_text(errors="replace").count("Application startup complete") < self.args.workers:
                if time.time() > deadline:
                    raise RuntimeError("MLflow workers did not all start")
                time.sleep(0.25)
        except RuntimeError:
            print(server.tail(), file=sys.stderr)
            raise
        api = MLflow(f"http://127.0.0.1:{port}", {})
        api.name = label
        api.port, api.server, api.url, api.db = port, server, url, self._db_name(url)  # type: ignore[attr-defined]
        return api

    def stop_one(self, api: Api) -> None:
        api.server.stop()  # type: ignore[attr-defined]
        self.procs.remove(api.server)  # type: ignore[attr-defined]

    def analyze(self) -> None:
        for db in self.analyze_targets:
            common.psql("ANALYZE", db)

    def stop(self) -> None:
        for server in self.procs:
            server.stop()
        for db in self.dbs:
            try:
                common.drop_pg_database(db)
            except subprocess.CalledProcessError as exc:
                print(f"could not drop {db}: {exc.stderr}", file=sys.stderr)


def _proc_cpu_seconds(stat: str) -> float:
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is state: utime and stime are the 12th and 13th
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def db_cpu_seconds(db: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``db`` (pid -> seconds), from /proc;
    empty for SQLite, or if the backends' /proc entries cannot be read."""
    if db is None:
        return {}
    out = {}
    for pid in common.psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{db}'").split():
        try:
            out[int(pid)] = _proc_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
        except OSError:
            pass
    return out


def server_cpu_seconds(pgid: int) -> float:
    """utime + stime of every live process in the process group (the server and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is state; pgrp is the 5th field of stat
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# --------------------------------------------------------------------------- payloads


def metric_batches(n_metrics: int, n_steps: int, rng: random.Random, prefix: str = "m") -> list[bytes]:
    """One run's points as JSON array fragments of at most BATCH points, step-major (a training loop)."""
    t0 = int(time.time() * 1000)
    points = [
        {"key": f"{prefix}{k}", "value": rng.random(), "step": step, "timestamp": t0 + step}
        for step in range(n_steps)
        for k in range(n_metrics)
    ]
    return [json.dumps(points[i : i + BATCH], separators=(",", ":")).encode() for i in range(0, len(points), BATCH)]


def populate_payload(i: int, rng: random.Random) -> tuple[dict, bytes, dict]:
    params = {"p0": rng.choice("xyzw"), **{f"p{k}": f"v{rng.randrange(100)}" for k in range(1, 5)}}
    t = int(time.time() * 1000)
    metrics = json.dumps(
        [{"key": f"m{k}", "value": rng.random(), "step": 0, "timestamp": t} for k in range(5)]
    ).encode()
    tags = {f"t{k}": f"tag-{i % (7 + k)}" for k in range(3)}
    return params, metrics, tags


# --------------------------------------------------------------------------- client processes


def _client_ingest(api: Api, exp: str, runs: list[int], batches: list[bytes], barrier: Any, out: Any) -> None:
    s = api.session()
    barrier.wait()
    for r in runs:
        run = api.create_run(s, exp, f"run-{r}", metrics=batches[0])
        for batch in batches[1:]:
            api.log_metrics(s, run, batch)
    out.put(api.retries)


def _client_populate(api: Api, exp: str, start: int, stop: int, seed: int, barrier: Any, out: Any) -> None:
    rng = random.Random(seed)
    payloads = [populate_payload(i, rng) for i in range(start, stop)]
    s = api.session()
    barrier.wait()
    for i, (params, metrics, tags) in zip(range(start, stop), payloads, strict=True):
        api.create_run(s, exp, f"run-{i}", metrics=metrics, params=params, tags=tags)
    out.put(api.retries)


def run_clients(target: Any, per_client_args: list[tuple]) -> tuple[float, int]:
    """Fork one process per client; time from the common start to the last client's end."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(per_client_args) + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, out)) for a in per_client_args]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a client failed: exit codes {[p.exitcode for p in procs]}")
    retries = sum(out.get(timeout=5) for _ in procs)
    return elapsed, retries


# --------------------------------------------------------------------------- measurements


def small_latency(api: Api, n: int, via_requests: bool = True) -> dict[str, float]:
    """``n`` sequential GETs on one http.client keep-alive connection, after 100 warm-up ones;
    and the same through a requests.Session for reference."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port)  # type: ignore[attr-defined]
    timings = []
    for i in range(n + 100):
        t = time.perf_counter()
        conn.request("GET", api.small_path)
        resp = conn.getresponse()
        resp.read()
        if i >= 100:
            timings.append((time.perf_counter() - t) * 1000)
        assert resp.status == 200, resp.status
    conn.close()
    s = requests.Session()
    timings_requests = []
    for i in range(n + 100 if via_requests else 0):
        t = time.perf_counter()
        r = s.get(api.base + api.small_path)
        if i >= 100:
            timings_requests.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200
    s.close()
    return {
        "p50": common.percentile(timings, 50),
        "p90": common.percentile(timings, 90),
        "p99": common.percentile(timings, 99),
        "requests_p50": common.percentile(timings_requests, 50) if timings_requests else None,
    }


class CpuMeter:
    """CPU seconds of one phase, per side of the machine: the server's process group, the
    PostgreSQL backends connected to the server's database (none on SQLite) and the client
    processes this script forked and waited for. All three share the same 2 cores."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.server0 = server_cpu_seconds(api.server.pid)  # type: ignore[attr-defined]
        self.db0 = db_cpu_seconds(api.db)  # type: ignore[attr-defined]
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.clients0 = usage.ru_utime + usage.ru_stime

    def read(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        db = db_cpu_seconds(self.api.db)  # type: ignore[attr-defined]
        return {
            "server_cpu_s": server_cpu_seconds(self.api.server.pid) - self.server0,  # type: ignore[attr-defined]
            "db_cpu_s": sum(cpu - self.db0.get(pid, 0.0) for pid, cpu in db.items()),
            "client_cpu_s": usage.ru_utime + usage.ru_stime - self.clients0,
        }


def ingest(api: Api, exp: str, n_runs: int, n_clients: int, batches: list[bytes]) -> dict[str, float]:
    split = [list(range(c, n_runs, n_clients)) for c in range(n_clients)]
    meter = CpuMeter(api)
    elapsed, retries = run_clients(_client_ingest, [(api, exp, runs, batches) for runs in split])
    points = n_runs * sum(len(json.loads(b)) for b in batches)
    return {"seconds": elapsed, "points": points, "points_s": points / elapsed, "retries": retries, **meter.read()}


def populate(api: Api, exp: str, n_runs: int, n_clients: int) -> dict[str, float]:
    bounds = [(n_runs * c // n_clients, n_runs * (c + 1) // n_clients) for c in range(n_clients)]
    meter = CpuMeter(api)
    elapsed, retries = run_clients(_client_populate, [(api, exp, a, b, 1000 + a) for a, b in bounds])
    return {"seconds": elapsed, "runs": n_runs, "runs_s": n_runs / elapsed, "retries": retries, **meter.read()}


def cpu_split(r: dict[str, float]) -> str:
    return f"CPU s: server {r['server_cpu_s']:.1f}, database {r['db_cpu_s']:.1f}, clients {r['client_cpu_s']:.1f}"


def timed_calls(fn: Any, n: int, warmup: int = 2) -> tuple[list[float], Any]:
    result = None
    for _ in range(warmup):
        result = fn()
    timings = []
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        timings.append((time.perf_counter() - t) * 1000)
    return timings, result


def check_search(name: str, rows: list[tuple[float, str]], expected: int) -> None:
    assert len(rows) == expected, f"{name}: search returned {len(rows)} runs, expected {expected}"
    assert all(m > 0.5 and p == "x" for m, p in rows), f"{name}: search returned non-matching runs"
    assert [m for m, _ in rows] == sorted((m for m, _ in rows), reverse=True), f"{name}: search not ordered"


def bench_backend(backend: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-tracking-{backend}-"))
    servers = Servers(backend, tmp, args)
    res: dict[str, Any] = {"backend": backend}
    try:
        t = time.time()
        apis: list[Api] = [servers.start_ours()]
        if not args.skip_mlflow:
            apis.append(servers.start_mlflow())
        log(
            f"[{backend}] servers up in {time.time() - t:.1f}s (" + ", ".join(f"{a.name} :{a.port}" for a in apis) + ")"
        )  # type: ignore[attr-defined]
        sessions = {a.name: a.session() for a in apis}
        for a in apis:
            a.setup(sessions[a.name])
        rng = random.Random(42)

        # warm-up: a little of every workload on 4 connections, so lazy imports and pools are done
        warm = metric_batches(5, 400, rng)
        warm_small = metric_batches(5, 10, rng)[0]  # MLflow counts params and tags against the 1000
        for a in apis:
            exp = a.create_experiment(sessions[a.name], "warm-up")
            ingest(a, exp, 8, 4, warm)
            run = a.create_run(sessions[a.name], exp, "warm", metrics=warm_small, params={"p0": "x"}, tags={"t": "1"})
            a.search(sessions[a.name], exp)
            a.history(sessions[a.name], run, "m0")
        log(f"[{backend}] warmed up")

        # small request latency, idle servers
        res["small_p50_ms"] = {a.name: [] for a in apis}
        for _rep in range(args.reps):
            for a in apis:
                res["small_p50_ms"][a.name].append(small_latency(a, args.small_requests))
        log(
            f"[{backend}] small request p50: "
            + ", ".join(f"{n} {common.median([r['p50'] for r in v]):.3f} ms" for n, v in res["small_p50_ms"].items())
        )

        # W1 ingest
        batches = metric_batches(args.metrics, args.steps, rng)
        for clients in (1, 4):
            key = f"w1_{clients}"
            res[key] = {a.name: [] for a in apis}
            for rep in range(args.reps):
                for a in apis:
                    exp = a.create_experiment(sessions[a.name], f"w1-{clients}c-rep{rep}")
                    r = ingest(a, exp, args.runs, clients, batches)
                    res[key][a.name].append(r)
                    log(
                        f"[{backend}] W1 {clients} client(s) rep {rep} {a.name}: {r['points_s']:,.0f} points/s "
                        f"({r['seconds']:.2f}s, {cpu_split(r)}, retries {r['retries']})"
                    )

        # MLflow as shipped (uvicorn without TCP_NODELAY): small request and W1 with 1 client
        if args.mlflow_stock and not args.skip_mlflow:
            stock = servers.start_mlflow(nodelay_fix=False, url=apis[1].url)  # type: ignore[attr-defined]
            ss = stock.session()
            exp = stock.create_experiment(ss, "warm-up-stock")
            ingest(stock, exp, 4, 4, warm)
            # ~44 ms a request: fewer of them (the p50 is steady), and a quarter of W1's runs
            res["mlflow_stock"] = {"small": small_latency(stock, min(args.small_requests, 200), via_requests=False)}
            exp = stock.create_experiment(ss, "w1-1c-stock")
            res["mlflow_stock"]["w1_1"] = ingest(stock, exp, max(1, args.runs // 4), 1, batches)
            servers.stop_one(stock)
            log(
                f"[{backend}] MLflow stock (no TCP_NODELAY): small p50 {res['mlflow_stock']['small']['p50']:.2f} ms, "
                f"W1 1 client {res['mlflow_stock']['w1_1']['points_s']:,.0f} points/s"
            )

        # W2 populate (once: 10k runs on MLflow take minutes)
        res["populate_runs_s"] = {}
        w2_exp = {}
        for a in apis:
            w2_exp[a.name] = a.create_experiment(sessions[a.name], "w2")
            r = populate(a, w2_exp[a.name], args.populate, 4)
            res["populate_runs_s"][a.name] = [r]
            log(
                f"[{backend}] W2 populate {a.name}: {r['runs_s']:,.1f} runs/s ({r['seconds']:.1f}s, "
                f"{cpu_split(r)}, retries {r['retries']})"
            )

        # history: one metric with N steps, in its own run of the W2 experiment
        hist_run = {}
        for a in apis:
            hb = metric_batches(1, args.history_steps, rng, prefix="loss")
            s = sessions[a.name]
            hist_run[a.name] = a.create_run(s, w2_exp[a.name], "history", metrics=hb[0])
            for b in hb[1:]:
                a.log_metrics(s, hist_run[a.name], b)

        if backend == "postgresql":
            t = time.time()
            servers.analyze()
            log(f"[{backend}] ANALYZE on both databases in {time.time() - t:.1f}s")

        # expected number of matches, computed from the same seeds the clients used
        bounds = [(args.populate * c // 4, args.populate * (c + 1) // 4) for c in range(4)]
        matches = 0
        for lo, hi in bounds:
            crng = random.Random(1000 + lo)
            for i in range(lo, hi):
                params, metrics, _tags = populate_payload(i, crng)
                matches += params["p0"] == "x" and json.loads(metrics)[0]["value"] > 0.5
        expected = min(100, matches)

        res["search_ms"] = {a.name: [] for a in apis}
        res["history_ms"] = {a.name: [] for a in apis}
        for _rep in range(args.reps):
            for a in apis:
                s = sessions[a.name]
                timings, rows = timed_calls(lambda a=a, s=s: a.search(s, w2_exp[a.name]), args.calls)
                check_search(a.name, rows, expected)
                res["search_ms"][a.name].append(common.median(timings))
                timings, n = timed_calls(lambda a=a, s=s: a.history(s, hist_run[a.name], "loss0"), args.calls)
                assert n == args.history_steps, f"{a.name}: history returned {n} points"
                res["history_ms"][a.name].append(common.median(timings))
        log(f"[{backend}] search ms: {res['search_ms']}  history ms: {res['history_ms']}")
        res["retries"] = {a.name: a.retries for a in apis}
    except BaseException:
        for server in servers.procs:
            print(f"--- {server.name} log tail ---\n{server.tail()}", file=sys.stderr)
        raise
    finally:
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# --------------------------------------------------------------------------- report


def summarise(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: median over repetitions for each side, and how many times better we are."""
    backend = res["backend"]
    rows = []

    def row(key: str, label: str, unit: str, higher_better: bool, pick: Any) -> None:
        ours = common.median([pick(r) for r in res[key]["mlplatform"]])
        theirs = common.median([pick(r) for r in res[key]["mlflow"]]) if "mlflow" in res[key] else None
        ratio = None if theirs is None else ours / theirs if higher_better else theirs / ours
        basis, op, goal = TARGETS[key]
        if isinstance(goal, dict):
            goal = goal[backend]
        value = ratio if basis == "ratio" else ours
        met = None if value is None else value >= goal if op == ">=" else value <= goal
        target = f"{'ratio' if basis == 'ratio' else 'ours'} {op} {goal}{'x' if basis == 'ratio' else ''}"
        rows.append(
            {
                "backend": backend,
                "key": key,
                "figure": label,
                "unit": unit,
                "mlplatform": ours,
                "mlflow": theirs,
                "ratio": ratio,
                "target": target,
                "met": met,
            }
        )

    row("w1_1", "W1 ingest, 1 client", "points/s", True, lambda r: r["points_s"])
    row("w1_4", "W1 ingest, 4 clients", "points/s", True, lambda r: r["points_s"])
    row("populate_runs_s", "W2 run creation (4 clients)", "runs/s", True, lambda r: r["runs_s"])
    row("search_ms", "W2 search, top 100", "ms", False, lambda r: r)
    row("history_ms", "W2 history, 10k points", "ms", False, lambda r: r)
    row("small_p50_ms", "small request p50 (keep-alive)", "ms", False, lambda r: r["p50"])
    stock = res.get("mlflow_stock")
    if stock:
        for key, label, unit, pick, higher in (
            ("w1_1", "W1 ingest, 1 client, vs MLflow as shipped", "points/s", lambda r: r["points_s"], True),
            ("small_p50_ms", "small request p50, vs MLflow as shipped", "ms", lambda r: r["p50"], False),
        ):
            ours = common.median([pick(r) for r in res[key]["mlplatform"]])
            theirs = pick(stock["w1_1" if key == "w1_1" else "small"])
            rows.append(
                {
                    "backend": backend,
                    "key": f"{key}_stock",
                    "figure": label,
                    "unit": unit,
                    "mlplatform": ours,
                    "mlflow": theirs,
                    "ratio": ours / theirs if higher else theirs / ours,
                    "target": "-",
                    "met": None,
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: float | None, unit: str) -> str:
        if v is None:
            return "-"
        if unit == "ms":
            return f"{v:.2f}"
        return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"

    lines = [
        "| backend | figure | unit | mlplatform | MLflow | ours vs MLflow | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['figure']} | {r['unit']} | {fmt(r['mlplatform'], r['unit'])} | "
            f"{fmt(r['mlflow'], r['unit'])} | {'-' if r['ratio'] is None else format(r['ratio'], '.1f') + 'x'} | {r['target']} | {'-' if r['met'] is None else 'yes' if r['met'] else 'NO'} |"
        )
    text = "\n".join(lines)
    print(text)
    return text


def versions(args: argparse.Namespace) -> dict[str, str]:
    out = common.software_versions(args.mlflow)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    p.add_argument("--quick", action="store_true", help="a small smoke run (a minute or two)")
    p.add_argument("--reps", type=int, help="repetitions (median reported); default 3, quick 1")
    p.add_argument("--workers", type=int, default=4, help="server worker processes, both sides")
    p.add_argument("--runs", type=int, help="W1 runs (default 20)")
    p.add_argument("--metrics", type=int, help="W1 metrics per run (default 50)")
    p.add_argument("--steps", type=int, help="W1 steps per metric (default 200)")
    p.add_argument("--populate", type=int, help="W2 runs to create (default 10000)")
    p.add_argument("--history-steps", type=int, help="W2 history points (default 10000)")
    p.add_argument("--calls", type=int, help="timed search / history calls per repetition (default 10)")
    p.add_argument("--small-requests", type=int, help="sequential small requests (default 1000)")
    p.add_argument(
        "--no-mlflow-stock",
        dest="mlflow_stock",
        action="store_false",
        help="skip the extra figures of MLflow as shipped (uvicorn without TCP_NODELAY)",
    )
    p.add_argument(
        "--skip-mlflow", action="store_true", help="measure mlplatform only (no MLflow server; ratios are not reported)"
    )
    p.add_argument("--mlflow", default=str(HERE / ".venv-mlflow/bin/mlflow"), help="the mlflow executable")
    p.add_argument("--out", type=Path, default=HERE / "results", help="directory for the JSON results")
    args = p.parse_args()
    full = {
        "reps": 3,
        "runs": 20,
        "metrics": 50,
        "steps": 200,
        "populate": 10000,
        "history_steps": 10000,
        "calls": 10,
        "small_requests": 1000,
    }
    quick = {
        "reps": 1,
        "runs": 4,
        "metrics": 10,
        "steps": 200,
        "populate": 400,
        "history_steps": 10000,
        "calls": 5,
        "small_requests": 300,
    }
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "postgresql"):
            p.error(f"unknown backend {b}")

    started = time.time()
    loads: list[float] = []  # 1-minute load average at every log line

    def log(msg: str) -> None:
        load = os.getloadavg()[0]
        loads.append(load)
        print(f"{time.time() - started:7.1f}s  load {load:4.2f}  {msg}", flush=True)

    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": common.machine_info(),
        "versions": versions(args),
        "settings": {k: getattr(args, k) for k in (*full, "workers")} | {"batch": BATCH, "quick": args.quick},
    }
    log(f"settings {meta['settings']}  versions {meta['versions']}")
    results = []
    for backend in backends:
        results.append(bench_backend(backend, args, log))
    rows = [row for r in results for row in summarise(r)]
    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["machine"]["loadavg_1m_during"] = {"median": common.median(loads), "max": max(loads)}
    meta["wall_seconds"] = round(time.time() - started, 1)
    print()
    print(
        f"{meta['date']}  {meta['machine'].get('cpus')} CPUs  wall {meta['wall_seconds']}s  "
        f"(medians of {args.reps} repetition(s); run creation measured once)"
    )
    table = print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"tracking-{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps({**meta, "summary": rows, "table": table, "raw": results}, indent=2, default=str))
    print(f"\nraw results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
