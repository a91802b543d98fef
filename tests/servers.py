"""Helpers for the servers tests start themselves: wait until one answers, stop it by its pid."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from werkzeug.serving import make_server


def wait_until_up(process: subprocess.Popen[bytes], probe: Callable[[], bool], timeout: float) -> bool:
    """Poll ``probe`` until it returns True; False if the process exits or time runs out.
    ``probe`` may raise OSError-like errors while the server is still starting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if probe():
                return True
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.2)
    return False


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to this pid only, then SIGKILL if it has not gone within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port in a thread; yields its base URL."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()
