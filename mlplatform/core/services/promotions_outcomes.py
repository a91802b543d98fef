"""Per-version request outcomes, kept in memory by the gateway for the promotion SLO guard.

The gateway records every prediction it answers (not only the sampled ones capture keeps)
as ``(wall time, ok, latency_ms)`` under ``(project, model, environment, version)``. The
guard reads the window in the same process, so a canary's errors are seen within one
check interval. A process that serves no predictions (an rq worker) has an empty window;
the guard then reads the captured Parquet records instead (``promotions_guard``).

Bounded: at most ``MAX_PER_VERSION`` outcomes per version and only the last ``HORIZON_S``
seconds are kept; recording is one deque append under a lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

MAX_PER_VERSION = 50_000
HORIZON_S = 6 * 3600.0

Key = tuple[str, str, str, int]


@dataclass(frozen=True)
class VersionStats:
    """What one version answered in a time range."""

    requests: int
    errors: int
    latency_p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "latency_p99_ms": None if self.latency_p99_ms is None else round(self.latency_p99_ms, 3),
        }


def p99(values: list[float]) -> float | None:
    """The 99th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class OutcomeWindow:
    """The in-memory window; see the module docstring. Thread-safe."""

    def __init__(self) -> None:
        self._data: dict[Key, deque[tuple[float, bool, float]]] = {}
        self._lock = threading.Lock()

    def record(self, project: str, model: str, environment: str, version: int, ok: bool, latency_ms: float) -> None:
        """Note one answered request of ``version``."""
        key = (project, model, environment, version)
        now = time.time()
        with self._lock:
            entries = self._data.get(key)
            if entries is None:
                entries = self._data[key] = deque(maxlen=MAX_PER_VERSION)
            entries.append((now, ok, latency_ms))
            while entries and entries[0][0] < now - HORIZON_S:
                entries.popleft()

    def stats(
        self, project: str, model: str, environment: str, version: int, since: float, until: float | None = None
    ) -> VersionStats:
        """Requests of ``version`` answered at or after ``since`` (Unix seconds), before ``until``."""
        with self._lock:
            entries = list(self._data.get((project, model, environment, version), ()))
        end = until if until is not None else math.inf
        chosen = [(ok, latency) for at, ok, latency in entries if since <= at < end]
        return VersionStats(len(chosen), sum(1 for ok, _ in chosen if not ok), p99([latency for _, latency in chosen]))

    def first_error_at(self, project: str, model: str, environment: str, version: int, since: float) -> float | None:
        """When ``version`` first failed at or after ``since`` (Unix seconds), or None."""
        with self._lock:
            entries = list(self._data.get((project, model, environment, version), ()))
        return next((at for at, ok, _ in entries if at >= since and not ok), None)

    def has_deployment(self, project: str, model: str, environment: str) -> bool:
        """Whether this process recorded anything for the deployment (it serves it)."""
        with self._lock:
            return any(key[:3] == (project, model, environment) and entries for key, entries in self._data.items())


def outcomes(platform: Platform) -> OutcomeWindow:
    """The platform's one window in this process (the gateway records, the guard reads)."""
    return platform.shared("promotion_outcomes", OutcomeWindow)
