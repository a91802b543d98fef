"""Latency of a small authenticated request on one persistent (keep-alive) connection.

Starts ``mlplatform serve`` (gunicorn, gthread) on a free port with a throwaway data dir,
sends N sequential ``GET /api/v1/whoami`` on one HTTP/1.1 connection and reports p50/p90/p99.

    .venv/bin/python bench/keepalive.py [--requests 2000] [--workers 4]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, deadline: float) -> None:
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not become ready")


def time_path(port: int, path: str, headers: dict[str, str], requests: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    timings = []
    for i in range(requests + 100):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        if i >= 100:  # warm-up
            timings.append((time.perf_counter() - start) * 1000)
        assert response.status == 200, response.status
    conn.close()
    return sorted(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--path", action="append", help="paths to time (default: /api/v1/health and /api/v1/whoami)")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "MLPLATFORM_DATA_DIR": data}
        subprocess.run([bin_dir / "mlplatform", "db", "upgrade"], env=env, check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen(
            [bin_dir / "mlplatform", "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(port, time.time() + 60)
            token = (Path(data) / "admin-token").read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
            print(f"one keep-alive connection, {args.requests} sequential requests, {args.workers} gunicorn workers:")
            for path in args.path or ["/api/v1/health", "/api/v1/whoami"]:
                timings = time_path(port, path, headers, args.requests)
                q = statistics.quantiles(timings, n=100)
                print(
                    f"  GET {path:<20} p50 {q[49]:.3f} ms   p90 {q[89]:.3f} ms   p99 {q[98]:.3f} ms   max {timings[-1]:.3f} ms"
                )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
