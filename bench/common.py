"""Shared helpers for the benchmarks: free ports, servers started and stopped by their pid,
throwaway PostgreSQL databases, and small statistics.

Every server is started in its own session (process group) so that stopping it also stops
the workers it forked (gunicorn / uvicorn); nothing here matches processes by name.
"""

from __future__ import annotations

import http.client
import os
import platform as _platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, path: str, deadline: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``GET path`` until it answers 200, the process dies or the deadline passes."""
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server on port {port} did not answer {path} in time")


class Server:
    """A server process in its own process group, logging to ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str | os.PathLike], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(a) for a in argv], env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the process group we created (its pgid is our child's pid), then SIGKILL it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # workers left in the group after the master exited
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class KeepAlive:
    """One http.client keep-alive connection: the thinnest client, so latency figures are the server's.

    (A ``requests.Session`` adds about 1 ms of client-side work per call on this machine.)
    """

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port))
        self.headers = headers

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[float, int, bytes]:
        """(milliseconds, status, body) of one request."""
        t = time.perf_counter()
        self.conn.request(method, path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return (time.perf_counter() - t) * 1000, resp.status, data

    def close(self) -> None:
        self.conn.close()


def psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(
        ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def create_pg_database(prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    psql(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(db: str, driver: str = "") -> str:
    """``driver``: e.g. ``psycopg2`` (SQLAlchemy 2.1 picks psycopg 3 for a bare postgresql://)."""
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def pg_version() -> str:
    try:
        return psql("SHOW server_version")
    except (OSError, subprocess.CalledProcessError):
        return "unavailable"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank-interpolated percentile (p in 0..100)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def machine_info() -> dict[str, object]:
    info: dict[str, object] = {
        "cpus": os.cpu_count(),
        "platform": _platform.platform(),
        "python": _platform.python_version(),
    }
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["mem_gb"] = round(int(mem[1]) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        pass
    return info


ROOT = Path(__file__).resolve().parent.parent


def software_versions(mlflow: str) -> dict[str, str]:
    """What a benchmark ran: MLflow (``mlflow`` is its executable), our package and commit, the databases, Python."""
    import sqlite3

    def output(*command: object) -> str:
        try:
            return subprocess.run([str(c) for c in command], capture_output=True, text=True).stdout.strip()
        except OSError:
            return "unavailable"

    dirty = output("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no")
    return {
        "mlflow": output(mlflow, "--version"),
        "mlplatform": output(ROOT / ".venv/bin/python", "-c", "import mlplatform; print(mlplatform.__version__)"),
        "git_commit": output("git", "-C", ROOT, "rev-parse", "--short", "HEAD"),
        "tree": f"{len(dirty.splitlines())} modified tracked files" if dirty else "clean",
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version(),
        "python": sys.version.split()[0],
    }
