"""Model registry writes and the prediction gateway: mlplatform against MLflow 3.

For each backend (SQLite, PostgreSQL) our server (``mlplatform serve``, 4 workers) and MLflow's
tracking server (4 workers; uvicorn by default, and gunicorn through ``--gunicorn-opts``) run on
fresh throwaway databases. Registry writes are timed one request at a time on one persistent
connection (``common.KeepAlive``):

* create version   ours: POST .../models/{m}/versions {run_id, artifact_path} (copies the run's
                   files, queues the validation job); MLflow: model-versions/create {name, source,
                   run_id} (records the source, copies nothing). Timed back to back, each write
                   while earlier versions' validation jobs run on the same CPUs; with a separate
                   worker (``--jobs rq``) also "worker paused": the worker SIGSTOPped during the
                   timed writes and resumed after (the jobs wait in Redis), which is the write
                   path alone, as on a deployment whose workers run on other machines
* set alias        ours: PUT .../aliases/champion {version}; MLflow: registered-models/alias POST;
                   every call moves the alias to another version

Gateway (backends in ``--gateway-backends``): one LogisticRegression on 4 features, trained here,
saved once for us (model.joblib + mlplatform-model.json, registered from a run and deployed to
staging on the local target) and once with ``mlflow.sklearn.save_model`` in MLflow's venv from
the same pickle, served by ``mlflow models serve --env-manager local -w 4``:

* in process       ``predictor.predict(pd.DataFrame([row]))`` on the loaded model, in this process
* latency          one row per request, sequential, one persistent session: p50 / p90
* overhead         our predict p50 minus the in-process p50
* throughput       4 client processes (one session each), one row per request, for N seconds

Our bench config raises ``gateway.rate_limit`` to 1e9 requests/s (burst 1e9) so that the
per-token limit (default 100/s, burst 200) does not cap the throughput; capture stays as shipped
(``sample_rate`` 1.0) and one extra latency row has capture off. MLflow servers are measured with
the uvicorn TCP_NODELAY fix (see bench/README.md) and, in separate rows, as shipped.

    .venv/bin/python bench/registry_gateway.py [--backends sqlite,postgresql]
        [--gateway-backends sqlite,postgresql] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from tracking import NODELAY_FIX  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROJECT = "bench"
FEATURES = ["f0", "f1", "f2", "f3"]
ROW = {"f0": 0.25, "f1": -1.5, "f2": 0.75, "f3": 2.0}
JSON = {"Content-Type": "application/json"}

# the train / save step runs inside MLflow's virtualenv (same scikit-learn 1.9 as ours)
MLFLOW_SAVE = """\
import sys, joblib, pandas as pd, mlflow.sklearn
from mlflow.models import infer_signature
model = joblib.load(sys.argv[1])
example = pd.DataFrame([{row}])
mlflow.sklearn.save_model(model, sys.argv[2], signature=infer_signature(example, model.predict(example)),
                          input_example=example)
"""


def log_factory(started: float) -> Any:
    def log(msg: str) -> None:
        print(f"{time.time() - started:7.1f}s  {msg}", flush=True)

    return log


def stats(timings_ms: list[float]) -> dict[str, float]:
    return {
        "p50": common.percentile(timings_ms, 50),
        "p90": common.percentile(timings_ms, 90),
        "p99": common.percentile(timings_ms, 99),
        "n": len(timings_ms),
    }


def check(r: requests.Response, what: str, ok: tuple[int, ...] = (200, 201, 202)) -> requests.Response:
    checked(r.status_code, r.content, what, ok)
    return r


# --------------------------------------------------------------------------- the model


def checked(status: int, body: bytes, what: str, ok: tuple[int, ...]) -> bytes:
    if status not in ok:
        raise RuntimeError(f"{what}: HTTP {status}: {body[:500]!r}")
    return body


def train_model(folder: Path) -> Path:
    """A LogisticRegression on 4 features, saved as our sklearn flavor; returns the folder."""
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(2000, 4)), columns=FEATURES)
    y = (x["f0"] + 0.5 * x["f1"] - x["f2"] + 0.1 * rng.normal(size=2000) > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    descriptor = {
        "flavor": "sklearn",
        "model_file": "model.joblib",
        "predict_method": "predict",
        "signature": {
            "inputs": [{"name": f, "type": "double"} for f in FEATURES],
            "outputs": [{"name": "label", "type": "long"}],
        },
    }
    (folder / "mlplatform-model.json").write_text(json.dumps(descriptor))
    return folder


def save_mlflow_model(args: argparse.Namespace, ours: Path, dest: Path) -> None:
    python = Path(args.mlflow).parent / "python"
    script = MLFLOW_SAVE.replace("{row}", json.dumps(ROW))
    subprocess.run(
        [python, "-c", script, ours / "model.joblib", dest],
        check=True,
        capture_output=True,
        env={**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "true"},
    )


def in_process_latency(model_dir: Path, n: int) -> dict[str, Any]:
    """Our flavor's predictor, loaded here: ``predictor.predict(pd.DataFrame([row]))``."""
    import pandas as pd

    from mlplatform.plugins.flavors import SklearnFlavor

    predictor = SklearnFlavor().load(str(model_dir))
    for _ in range(200):
        out = predictor.predict(pd.DataFrame([ROW]))
    timings = []
    for _ in range(n):
        t = time.perf_counter()
        out = predictor.predict(pd.DataFrame([ROW]))
        timings.append((time.perf_counter() - t) * 1000)
    return {**stats(timings), "prediction": out}


# --------------------------------------------------------------------------- servers


def mlflow_env(tmp: Path, label: str, nodelay_fix: bool, mlflow: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    # `mlflow models serve` runs `uvicorn` from PATH: put MLflow's venv first, as if activated
    env["PATH"] = os.pathsep.join([str(Path(mlflow).parent), env.get("PATH", "")])
    if nodelay_fix:
        fix_dir = tmp / f"{label}-fix"
        fix_dir.mkdir(exist_ok=True)
        (fix_dir / "sitecustomize.py").write_text(NODELAY_FIX)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fix_dir), env.get("PYTHONPATH")]))
    return env


def wait_log(server: common.Server, text: str, count: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while server.log_path.read_text(errors="replace").count(text) < count:
        if time.time() > deadline:
            return False
        time.sleep(0.25)
    return True


class Stack:
    """The servers of one backend, their databases and temp dir; stop() cleans everything up."""

    def __init__(self, backend: str, args: argparse.Namespace, log: Any) -> None:
        self.backend = backend
        self.args = args
        self.log = log
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-registry-{backend}-"))
        self.dbs: list[str] = []
        self.procs: list[common.Server] = []

    def url(self, kind: str) -> str:
        if self.backend == "sqlite":
            (self.tmp / kind).mkdir(exist_ok=True)
            return f"sqlite:///{self.tmp / kind / (kind + '.db')}"
        db = common.create_pg_database(f"bench_{kind}")
        self.dbs.append(db)
        if not self.args.pg_durable_commit:  # a diagnostic, for ours and MLflow's databases alike
            common.psql(f'ALTER DATABASE "{db}" SET synchronous_commit = off')
        return common.pg_url(db, "psycopg2" if kind.startswith("mlflow") else "")

    # --- ours

    def write_config(self, capture: bool, jobs: str) -> Path:
        raw = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
        raw = copy.deepcopy(raw)
        raw["environments"] = [{"name": "staging", "target": "local"}]
        raw["gateway"] = {
            "rate_limit": {"requests_per_second": 1.0e9, "burst": 1_000_000_000},
            "capture": {"enabled": capture, "sample_rate": 1.0},
        }
        if jobs == "rq":  # the production layout: jobs on Redis, run by a separate `mlplatform worker`
            queue = f"bench-{os.getpid()}-{len(self.procs)}"
            raw["jobs"] = {"backend": "rq", "options": {"url": self.args.redis_url, "queue": queue}}
        path = self.tmp / f"mlplatform{'' if capture else '-nocapture'}-{jobs}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def start_ours(self, capture: bool = True, db_url: str | None = None, jobs: str = "inline") -> dict[str, Any]:
        data = self.tmp / f"mlp-data-{jobs}"
        data.mkdir(exist_ok=True)
        url = db_url or self.url("mlp" if jobs == "inline" else f"mlp_{jobs}")
        env = {
            **os.environ,
            "MLPLATFORM_DATA_DIR": str(data),
            "MLPLATFORM_DATABASE_URL": url,
            "MLPLATFORM_CONFIG": str(self.write_config(capture, jobs)),
        }
        bin_dir = ROOT / ".venv" / "bin"
        subprocess.run([bin_dir / "mlplatform", "db", "upgrade"], env=env, check=True, capture_output=True)
        port = common.free_port()
        label = ("mlplatform" if capture else "mlplatform-nocapture") + ("-rq" if jobs == "rq" else "")
        worker = None
        if jobs == "rq":
            worker = common.Server(
                f"{label}-worker", [bin_dir / "mlplatform", "worker"], env, self.tmp / f"{label}-worker.log"
            )
            self.procs.append(worker)
        server = common.Server(
            label,
            [bin_dir / "mlplatform", "serve", "--port", str(port), "--workers", str(self.args.workers)],
            env,
            self.tmp / f"{label}.log",
        )
        self.procs.append(server)
        common.wait_http(port, "/api/v1/health", time.time() + 120, server.proc)
        token_file = data / "admin-token"
        deadline = time.time() + 30
        while not token_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        token = token_file.read_text().strip()
        return {
            "name": label,
            "base": f"http://127.0.0.1:{port}",
            "port": port,
            "server": server,
            "worker": worker,
            "url": url,
            "headers": {**JSON, "Authorization": f"Bearer {token}"},
        }

    # --- MLflow tracking server

    def start_mlflow(self, mode: str, url: str | None = None) -> dict[str, Any]:
        """``mode``: uvicorn (with the TCP_NODELAY fix), uvicorn-stock, gunicorn."""
        label = f"mlflow-{mode}"
        artifacts = self.tmp / f"{label}-artifacts"
        artifacts.mkdir()
        url = url or self.url("mlflow")
        port = common.free_port()
        argv = [
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
        ]
        if mode == "gunicorn":
            argv += ["--gunicorn-opts", "--timeout 120"]
        server = common.Server(
            label, argv, mlflow_env(self.tmp, label, mode == "uvicorn", self.args.mlflow), self.tmp / f"{label}.log"
        )
        self.procs.append(server)
        common.wait_http(port, "/health", time.time() + 240, server.proc)
        if mode.startswith("uvicorn") and not wait_log(server, "Application startup complete", self.args.workers, 120):
            raise RuntimeError(f"{label}: not all workers started")
        if mode == "gunicorn" and not wait_log(server, "Booting worker", self.args.workers, 120):
            raise RuntimeError(f"{label}: not all workers started")
        time.sleep(1)
        return {
            "name": label,
            "base": f"http://127.0.0.1:{port}",
            "port": port,
            "server": server,
            "url": url,
            "headers": dict(JSON),
        }

    # --- MLflow model server

    def start_mlflow_serve(self, model_dir: Path, nodelay_fix: bool) -> dict[str, Any]:
        label = "mlflow-serve" if nodelay_fix else "mlflow-serve-stock"
        port = common.free_port()
        argv = [
            self.args.mlflow,
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "-w",
            str(self.args.workers),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
        ]
        server = common.Server(
            label, argv, mlflow_env(self.tmp, label, nodelay_fix, self.args.mlflow), self.tmp / f"{label}.log"
        )
        self.procs.append(server)
        common.wait_http(port, "/ping", time.time() + 240, server.proc)
        if not wait_log(server, "Application startup complete", self.args.workers, 120):
            self.log(f"warning: {label}: fewer than {self.args.workers} 'Application startup complete' lines")
        time.sleep(1)
        return {
            "name": label,
            "base": f"http://127.0.0.1:{port}",
            "port": port,
            "server": server,
            "headers": dict(JSON),
        }

    def stop_one(self, side: dict[str, Any]) -> None:
        for server in (side["server"], side.get("worker")):
            if server is not None:
                server.stop()
                self.procs.remove(server)

    def stop(self) -> None:
        for server in self.procs:
            server.stop()
        self.procs.clear()
        for db in self.dbs:
            try:
                common.drop_pg_database(db)
            except subprocess.CalledProcessError as exc:
                print(f"could not drop {db}: {exc.stderr}", file=sys.stderr)
        shutil.rmtree(self.tmp, ignore_errors=True)


def session(side: dict[str, Any]) -> requests.Session:
    s = requests.Session()
    s.headers.update(side["headers"])
    return s


# --------------------------------------------------------------------------- registry: ours


def ours_setup(side: dict[str, Any], s: requests.Session, model_dir: Path) -> str:
    """Project, experiment, a run holding the model files under model/; returns the run id."""
    b = side["base"] + "/api/v1"
    check(s.post(f"{b}/projects", json={"name": PROJECT}), "create project")
    exp = check(s.post(f"{b}/projects/{PROJECT}/experiments", json={"name": "registry"}), "experiment").json()["id"]
    run = check(s.post(f"{b}/projects/{PROJECT}/experiments/{exp}/runs", json={"name": "train"}), "run").json()["id"]
    for f in sorted(model_dir.iterdir()):
        check(
            s.put(
                f"{b}/projects/{PROJECT}/runs/{run}/artifacts/model/{f.name}",
                data=f.read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
            ),
            f"upload {f.name}",
        )
    return run


def ours_wait_ready(
    side: dict[str, Any], s: requests.Session, model: str, versions: list[int], timeout: float = 300
) -> None:
    b = f"{side['base']}/api/v1/projects/{PROJECT}/models/{model}/versions"
    deadline = time.time() + timeout
    pending = list(versions)
    while pending:
        status = check(s.get(f"{b}/{pending[0]}"), "get version").json()["status"]
        if status == "ready":
            pending.pop(0)
            continue
        if status == "failed":
            raise RuntimeError(f"{model} v{pending[0]} failed")
        if time.time() > deadline:
            raise RuntimeError(f"{model} v{pending[0]} still {status}")
        time.sleep(0.1)


def ours_registry(side: dict[str, Any], run: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    s = session(side)
    b = f"{side['base']}/api/v1/projects/{PROJECT}/models"
    check(s.post(b, json={"name": "reg"}), "create model")
    body = json.dumps({"run_id": run, "artifact_path": "model"}).encode()
    out: dict[str, list] = {"create_version": [], "set_alias": []}
    created: list[int] = []

    conn = common.KeepAlive(side["base"], side["headers"])
    path = b.removeprefix(side["base"])

    def create(n: int) -> list[float]:
        timings = []
        for _ in range(n):
            ms, status, data = conn.call("POST", f"{path}/reg/versions", body)
            timings.append(ms)
            created.append(json.loads(checked(status, data, "create version", (201,)))["version"])
        return timings

    def alias(n: int, pool: list[int], offset: int) -> list[float]:
        bodies = [json.dumps({"version": pool[(offset + i) % len(pool)]}).encode() for i in range(n)]
        timings = []
        for data in bodies:
            ms, status, answer = conn.call("PUT", f"{path}/reg/aliases/champion", data)
            timings.append(ms)
            checked(status, answer, "set alias", (200,))
        return timings

    def create_worker_paused(n: int) -> list[float]:
        """Writes while the worker is stopped (SIGSTOP): what the write path costs without our own
        validation jobs competing for this machine's CPUs; the jobs run after SIGCONT."""
        worker = side["worker"]
        os.killpg(worker.pid, signal.SIGSTOP)
        try:
            return create(n)
        finally:
            os.killpg(worker.pid, signal.SIGCONT)

    create(args.warmup_writes)
    ours_wait_ready(side, s, "reg", created)
    alias(args.warmup_writes, created[:10], 0)
    for rep in range(args.reps):
        start = len(created)
        out["create_version"].append(stats(create(args.writes)))
        t = time.time()
        ours_wait_ready(side, s, "reg", created[start:])  # the validation jobs finish before the alias timing
        out.setdefault("jobs_drain_s", []).append(round(time.time() - t, 2))
        out["set_alias"].append(stats(alias(args.writes, created[:50], rep)))
        paused = ""
        if side.get("worker") is not None:
            start = len(created)
            out.setdefault("create_version_worker_paused", []).append(stats(create_worker_paused(args.writes)))
            ours_wait_ready(side, s, "reg", created[start:])
            paused = f" (worker paused {out['create_version_worker_paused'][-1]['p50']:.2f})"
        log(
            f"  {side['name']} rep {rep}: create version p50 {out['create_version'][-1]['p50']:.2f} ms{paused}, "
            f"set alias p50 {out['set_alias'][-1]['p50']:.2f} ms (jobs drained {out['jobs_drain_s'][-1]} s later)"
        )
    return out


# --------------------------------------------------------------------------- registry: MLflow


def mlflow_registry(
    side: dict[str, Any], args: argparse.Namespace, log: Any, model: str, writes: int, reps: int
) -> dict[str, Any]:
    s = session(side)
    b = side["base"] + "/api/2.0/mlflow"
    exp = check(s.post(f"{b}/experiments/create", json={"name": f"registry-{model}"}), "mlflow experiment").json()[
        "experiment_id"
    ]
    info = check(
        s.post(f"{b}/runs/create", json={"experiment_id": exp, "start_time": int(time.time() * 1000)}), "mlflow run"
    ).json()["run"]["info"]
    run, source = info["run_id"], info["artifact_uri"].rstrip("/") + "/model"
    check(s.post(f"{b}/registered-models/create", json={"name": model}), "mlflow registered model")
    body = json.dumps({"name": model, "source": source, "run_id": run}).encode()
    out: dict[str, list] = {"create_version": [], "set_alias": []}
    created: list[int] = []

    conn = common.KeepAlive(side["base"], side["headers"])
    path = b.removeprefix(side["base"])

    def create(n: int) -> list[float]:
        timings = []
        for _ in range(n):
            ms, status, data = conn.call("POST", f"{path}/model-versions/create", body)
            timings.append(ms)
            answer = json.loads(checked(status, data, "mlflow create version", (200,)))
            created.append(int(answer["model_version"]["version"]))
        return timings

    def alias(n: int, pool: list[int], offset: int) -> list[float]:
        bodies = [
            json.dumps({"name": model, "alias": "champion", "version": str(pool[(offset + i) % len(pool)])}).encode()
            for i in range(n)
        ]
        timings = []
        for data in bodies:
            ms, status, answer = conn.call("POST", f"{path}/registered-models/alias", data)
            timings.append(ms)
            checked(status, answer, "mlflow set alias", (200,))
        return timings

    create(args.warmup_writes)
    alias(args.warmup_writes, created[:10], 0)
    for rep in range(reps):
        out["create_version"].append(stats(create(writes)))
        out["set_alias"].append(stats(alias(writes, created[:50], rep)))
        log(
            f"  {side['name']} rep {rep}: create version p50 {out['create_version'][-1]['p50']:.2f} ms, "
            f"set alias p50 {out['set_alias'][-1]['p50']:.2f} ms"
        )
    return out


# --------------------------------------------------------------------------- gateway


def ours_deploy(side: dict[str, Any], run: str, log: Any) -> tuple[str, bytes]:
    """Register the model from the run (with an input example), deploy it to staging; returns url, body."""
    s = session(side)
    b = f"{side['base']}/api/v1/projects/{PROJECT}/models"
    check(s.post(b, json={"name": "served"}), "create model")
    v = check(
        s.post(
            f"{b}/served/versions",
            json={"run_id": run, "artifact_path": "model", "flavor": "sklearn", "input_example": [ROW]},
        ),
        "create version",
    ).json()["version"]
    ours_wait_ready(side, s, "served", [v])
    check(s.put(f"{b}/served/aliases/champion", json={"version": v}), "alias")
    check(s.put(f"{b}/served/deployments/staging", json={"version": v}), "deploy", ok=(202,))
    deadline = time.time() + 120
    while True:
        status = check(s.get(f"{b}/served/deployments/staging"), "deployment").json()["status"]
        if status == "healthy":
            break
        if status in ("failed", "retired") or time.time() > deadline:
            raise RuntimeError(f"deployment is {status}")
        time.sleep(0.2)
    log(f"  {side['name']}: served v{v} healthy on staging")
    return f"{b}/served/deployments/staging/predict", json.dumps({"instances": [ROW]}).encode()


def sequential_latency(url: str, headers: dict[str, str], body: bytes, n: int, key: str) -> dict[str, Any]:
    s = requests.Session()
    s.headers.update(headers)
    for _ in range(200):
        r = check(s.post(url, data=body), "predict warm-up")
    timings = []
    for _ in range(n):
        t = time.perf_counter()
        r = s.post(url, data=body)
        timings.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"predict: {r.status_code} {r.text[:300]}")
    s.close()
    return {**stats(timings), "prediction": r.json()[key]}


def _client_throughput(url: str, headers: dict[str, str], body: bytes, seconds: float, barrier: Any, out: Any) -> None:
    s = requests.Session()
    s.headers.update(headers)
    for _ in range(20):
        s.post(url, data=body)
    barrier.wait()
    end = time.perf_counter() + seconds
    n = errors = 0
    while time.perf_counter() < end:
        r = s.post(url, data=body)
        n += 1
        errors += r.status_code != 200
    out.put((n, errors))


def throughput(url: str, headers: dict[str, str], body: bytes, clients: int, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_client_throughput, args=(url, headers, body, seconds, barrier, out)) for _ in range(clients)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    n = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    if errors:
        raise RuntimeError(f"throughput: {errors} of {n} requests failed")
    return {"requests": n, "seconds": elapsed, "rps": n / elapsed}


def gateway_side(
    name: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    key: str,
    args: argparse.Namespace,
    log: Any,
    do_throughput: bool = True,
) -> dict[str, Any]:
    res: dict[str, Any] = {"latency": [], "throughput": []}
    if do_throughput:  # warms every worker (lazy model loads, imports)
        throughput(url, headers, body, args.clients, 2.0)
    for rep in range(args.reps):
        res["latency"].append(sequential_latency(url, headers, body, args.predict_requests, key))
        line = f"  {name} rep {rep}: predict p50 {res['latency'][-1]['p50']:.3f} ms"
        if do_throughput:
            res["throughput"].append(throughput(url, headers, body, args.clients, args.seconds))
            line += f", {args.clients} clients {res['throughput'][-1]['rps']:,.0f} req/s"
        log(line)
    return res


# --------------------------------------------------------------------------- per backend


def bench_backend(
    backend: str, args: argparse.Namespace, model_dir: Path, mlflow_model: Path, log: Any
) -> dict[str, Any]:
    stack = Stack(backend, args, log)
    res: dict[str, Any] = {"backend": backend, "registry": {}, "gateway": {}}
    try:
        ours = stack.start_ours()
        log(f"[{backend}] ours up on :{ours['port']}")
        run = ours_setup(ours, session(ours), model_dir)
        if not args.skip_registry:
            res["registry"]["mlplatform"] = ours_registry(ours, run, args, log)
            if "rq" in args.jobs:
                side = stack.start_ours(jobs="rq")
                log(f"[{backend}] {side['name']} up on :{side['port']} with one `mlplatform worker`")
                side_run = ours_setup(side, session(side), model_dir)
                res["registry"][side["name"]] = ours_registry(side, side_run, args, log)
                stack.stop_one(side)
            for mode in args.mlflow_modes:
                side = stack.start_mlflow(mode)
                log(f"[{backend}] {side['name']} up on :{side['port']}")
                stock = mode == "uvicorn-stock"  # ~44 ms a request: fewer of them, one repetition
                res["registry"][side["name"]] = mlflow_registry(
                    side,
                    args,
                    log,
                    f"reg-{mode}",
                    args.writes // 4 if stock else args.writes,
                    1 if stock else args.reps,
                )
                stack.stop_one(side)

        if backend in args.gateway_backends:
            url, body = ours_deploy(ours, run, log)
            res["gateway"]["mlplatform"] = gateway_side(
                "mlplatform", url, ours["headers"], body, "predictions", args, log
            )
            stack.stop_one(ours)
            if args.capture_off:
                off = stack.start_ours(capture=False, db_url=ours["url"])
                res["gateway"]["mlplatform-nocapture"] = gateway_side(
                    "mlplatform capture off",
                    url.replace(ours["base"], off["base"]),
                    off["headers"],
                    body,
                    "predictions",
                    args,
                    log,
                )
                stack.stop_one(off)
            # MLflow's model server has no database: measured with the first gateway backend only
            for fix in ((True, False) if args.mlflow_stock else (True,)) if backend == args.gateway_backends[0] else ():
                side = stack.start_mlflow_serve(mlflow_model, nodelay_fix=fix)
                log(f"[{backend}] {side['name']} up on :{side['port']}")
                body_mlflow = json.dumps({"dataframe_records": [ROW]}).encode()
                if fix:
                    res["gateway"][side["name"]] = gateway_side(
                        side["name"],
                        side["base"] + "/invocations",
                        side["headers"],
                        body_mlflow,
                        "predictions",
                        args,
                        log,
                    )
                else:  # as shipped: ~44 ms a keep-alive request; latency only, 300 requests, once
                    saved = (args.reps, args.predict_requests)
                    args.reps, args.predict_requests = 1, min(300, args.predict_requests)
                    res["gateway"][side["name"]] = gateway_side(
                        side["name"],
                        side["base"] + "/invocations",
                        side["headers"],
                        body_mlflow,
                        "predictions",
                        args,
                        log,
                        do_throughput=False,
                    )
                    args.reps, args.predict_requests = saved
                stack.stop_one(side)
    except BaseException:
        for server in stack.procs:
            print(f"--- {server.name} log tail ---\n{server.tail()}", file=sys.stderr)
        raise
    finally:
        stack.stop()
    return res


# --------------------------------------------------------------------------- report


def med(items: list[dict[str, float]], key: str) -> float:
    return common.median([i[key] for i in items])


def table(results: list[dict[str, Any]], direct: dict[str, Any], args: argparse.Namespace) -> str:
    lines = ["| backend | figure | server | p50 ms | p90 ms | target | met |", "|---|---|---|---:|---:|---|---|"]
    for res in results:
        reg = res["registry"]
        for op, label in (
            ("create_version", "create version"),
            ("create_version_worker_paused", "create version, worker paused"),
            ("set_alias", "set alias"),
        ):
            for name, r in reg.items():
                if op not in r:  # only a server with a separate worker has this row
                    continue
                p50, p90 = med(r[op], "p50"), med(r[op], "p90")
                target, met = (
                    ("ours <= 3 ms", "yes" if p50 <= 3 else "NO") if name.startswith("mlplatform") else ("-", "-")
                )
                if res["backend"] == "postgresql" and not args.pg_durable_commit:
                    target, met = "diagnostic: synchronous_commit = off", "-"
                lines.append(f"| {res['backend']} | {label} | {name} | {p50:.2f} | {p90:.2f} | {target} | {met} |")
    lines += [
        "",
        "| backend | figure | server | p50 ms | p90 ms | overhead p50 ms | 4-client req/s | target | met |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
        f"| - | in-process `predictor.predict(pd.DataFrame([row]))` | this process | {direct['p50']:.3f} | "
        f"{direct['p90']:.3f} | - | - | - | - |",
    ]
    for res in results:
        for name, g in res["gateway"].items():
            p50, p90 = med(g["latency"], "p50"), med(g["latency"], "p90")
            over = p50 - direct["p50"]
            rps = f"{common.median([t['rps'] for t in g['throughput']]):,.0f}" if g["throughput"] else "-"
            target, met = "-", "-"
            if name == "mlplatform":
                target, met = "overhead <= 2 ms", "yes" if over <= 2 else "NO"
            lines.append(
                f"| {res['backend']} | predict, 1 row | {name} | {p50:.3f} | {p90:.3f} | {over:.3f} | {rps} | "
                f"{target} | {met} |"
            )
    return "\n".join(lines)


def versions(args: argparse.Namespace) -> dict[str, str]:
    out = common.software_versions(args.mlflow)
    import sklearn

    out["scikit-learn"] = sklearn.__version__
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    p.add_argument("--gateway-backends", default="sqlite", help="backends that also run the gateway part")
    p.add_argument("--quick", action="store_true", help="a small smoke run")
    p.add_argument("--reps", type=int, help="repetitions (median reported); default 3, quick 1")
    p.add_argument("--workers", type=int, default=4, help="server worker processes, every server")
    p.add_argument("--writes", type=int, help="timed registry writes of each kind per repetition (default 100)")
    p.add_argument("--predict-requests", type=int, help="timed sequential predictions per repetition (default 2000)")
    p.add_argument("--clients", type=int, default=4, help="throughput client processes")
    p.add_argument("--seconds", type=float, help="throughput duration per repetition (default 10)")
    p.add_argument(
        "--mlflow-modes",
        default="uvicorn,gunicorn,uvicorn-stock",
        help="MLflow tracking server variants for the registry: uvicorn (TCP_NODELAY fix), gunicorn, uvicorn-stock",
    )
    p.add_argument(
        "--no-mlflow-stock",
        dest="mlflow_stock",
        action="store_false",
        help="skip `mlflow models serve` as shipped (without the TCP_NODELAY fix)",
    )
    p.add_argument(
        "--no-capture-off", dest="capture_off", action="store_false", help="skip our latency with capture off"
    )
    p.add_argument("--skip-registry", action="store_true")
    p.add_argument(
        "--jobs",
        default="inline,rq",
        help="job layouts for our registry writes: inline (the embedded default: jobs on the server's threads), "
        "rq (the production layout: Redis and one `mlplatform worker`)",
    )
    p.add_argument(
        "--pg-no-durable-commit",
        dest="pg_durable_commit",
        action="store_false",
        help="diagnostic: every PostgreSQL database (ours and MLflow's) with synchronous_commit = off, so a "
        "COMMIT does not wait for the WAL flush to disk; shows how much of a write is that flush. Not a "
        "setting the targets are measured with (an acknowledged write could be lost in a crash)",
    )
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--mlflow", default=str(HERE / ".venv-mlflow/bin/mlflow"), help="the mlflow executable")
    p.add_argument("--out", type=Path, default=HERE / "results", help="directory for the JSON results")
    args = p.parse_args()
    full = {"reps": 3, "writes": 100, "predict_requests": 2000, "seconds": 10.0}
    quick = {"reps": 1, "writes": 30, "predict_requests": 300, "seconds": 3.0}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.warmup_writes = 10
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.gateway_backends = [b.strip() for b in args.gateway_backends.split(",") if b.strip()]
    args.mlflow_modes = [m.strip() for m in args.mlflow_modes.split(",") if m.strip()]
    args.jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    if "uvicorn-stock" in args.mlflow_modes and not args.mlflow_stock:
        args.mlflow_modes.remove("uvicorn-stock")

    started = time.time()
    log = log_factory(started)
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": common.machine_info(),
        "versions": versions(args),
        "settings": {
            k: getattr(args, k)
            for k in (
                *full,
                "workers",
                "clients",
                "backends",
                "gateway_backends",
                "mlflow_modes",
                "jobs",
                "pg_durable_commit",
            )
        },
        "bench_config": {
            "gateway.rate_limit": {"requests_per_second": 1e9, "burst": 1_000_000_000},
            "gateway.capture": {"enabled": True, "sample_rate": 1.0},
            "environments": ["staging (local)"],
        },
    }
    log(f"loadavg at start {meta['machine'].get('loadavg')}  versions {meta['versions']}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-registry-model-"))
    try:
        model_dir = train_model(tmp / "ours")
        mlflow_model = tmp / "mlflow-model"
        if args.gateway_backends:  # only `mlflow models serve` needs it
            save_mlflow_model(args, model_dir, mlflow_model)
        direct = in_process_latency(model_dir, args.predict_requests * 2)
        log(f"in process: predict p50 {direct['p50']:.3f} ms p90 {direct['p90']:.3f} ms -> {direct['prediction']}")
        results = [bench_backend(b, args, model_dir, mlflow_model, log) for b in args.backends]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for res in results:
        for name, g in res["gateway"].items():
            got = g["latency"][0]["prediction"]
            if got != direct["prediction"]:
                raise RuntimeError(f"{res['backend']} {name}: prediction {got} != in-process {direct['prediction']}")
    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["wall_seconds"] = round(time.time() - started, 1)
    text = table(results, direct, args)
    print()
    print(
        f"{meta['date']}  {meta['machine'].get('cpus')} CPUs  loadavg start {meta['machine'].get('loadavg')} "
        f"end {meta['machine']['loadavg_end']}  wall {meta['wall_seconds']}s  (medians of {args.reps} repetition(s))"
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"registry-gateway-{stamp}{'-quick' if args.quick else ''}.json"
    settings = {k: v for k, v in meta["settings"].items()}
    path.write_text(
        json.dumps(
            {**meta, "settings": settings, "direct": direct, "table": text, "raw": results}, indent=2, default=str
        )
    )
    print(f"\nraw results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
