"""Job handlers for the job tests, importable by path from a worker subprocess.

Each records its runs as lines in a file so a test (or another process) can count them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

HANDLERS = {
    "test.record": "tests.jobs.handlers:record",
    "test.flaky": "tests.jobs.handlers:flaky",
    "test.fail": "tests.jobs.handlers:fail",
    "test.sleep": "tests.jobs.handlers:sleep",
    "test.slow_first": "tests.jobs.handlers:slow_first",
    "test.succeed_in": "tests.jobs.handlers:succeed_in_its_transaction",
}


def runs(path: str | Path) -> list[str]:
    path = Path(path)
    return path.read_text().splitlines() if path.exists() else []


def _append(path: str, line: str) -> int:
    with open(path, "a") as file:
        file.write(line + "\n")
    return len(runs(path))


def record(platform: Any, path: str, text: str = "ran") -> None:
    _append(path, text)


def flaky(platform: Any, path: str, failures: int) -> None:
    """Fail the first ``failures`` runs, then succeed."""
    if _append(path, "run") <= failures:
        raise RuntimeError(f"flaky failure number {len(runs(path))}")


def fail(platform: Any, path: str, message: str) -> None:
    _append(path, "run")
    raise ValueError(message)


def sleep(platform: Any, path: str, seconds: float) -> None:
    _append(path, "start")
    time.sleep(seconds)
    _append(path, "end")


def slow_first(platform: Any, path: str, seconds: float) -> None:
    """The first run writes ``started <pid>`` and sleeps (to be killed); later runs finish at once."""
    number = _append(path, f"started {os.getpid()}")
    if number == 1:
        time.sleep(seconds)
    _append(path, f"finished {os.getpid()}")


def succeed_in_its_transaction(platform: Any, path: str, roll_back_first: bool = False) -> None:
    """Ends the job with ``succeed_in`` in its own write and notes the row's state seen inside
    that transaction; with ``roll_back_first`` the first run raises after, rolling both back."""
    from sqlalchemy import select

    from mlplatform.core.db.models import Job
    from mlplatform.core.jobs import succeed_in

    number = len([line for line in runs(path) if line == "run"]) + 1
    _append(path, "run")
    with platform.db.write() as session:
        succeed_in(session)
        state = session.scalar(select(Job.state).where(Job.name == "test.succeed_in"))
        _append(path, f"state in the handler's transaction: {state}")
        if roll_back_first and number == 1:
            raise RuntimeError("rolled back after succeed_in")
