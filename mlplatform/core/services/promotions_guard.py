"""The SLO guard: compare the new version with the old one while (and after) traffic moves.

Measured since the rollout's first traffic move, per version: requests, errors and latency
p99, from

- the gateway's in-memory window (``promotions_outcomes``) when this process served the
  deployment: every answer counts and a failure is seen within one check interval;
- otherwise the captured records (Parquet, ``gateway.capture``): what every gateway process
  wrote, subject to capture's sampling and flush interval (an rq worker judges this way),
  counted per request (capture writes a row per input row, each with the request's status).

A breach (:func:`judge`) is any of, with ``guard`` the promotion config's ``guard`` section:

- errors: the new version has at least ``min_requests`` answers and an error rate above the
  old version's plus ``error_rate_margin``;
- latency: both have ``min_requests`` answers, and at least ``LATENCY_MIN_REQUESTS`` (100), and
  the new p99 is above the old p99 times ``latency_p99_ratio`` and by more than
  ``latency_p99_margin_ms``. Below 100 answers a nearest-rank p99 is the slowest single answer,
  and the new version's first answer in a process is a cold start (Ray Serve: the handle's
  first look-up of the replicas, the replica's first call) that the warm old version never pays;
- alerts (``guard.alerts``): an alert of the deployment started firing since the rollout began.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.monitoring import Alert, AlertRule
from mlplatform.core.services.promotions_outcomes import VersionStats, outcomes, p99

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

LATENCY_MIN_REQUESTS = 100  # fewer, and the p99 is the maximum: one cold start would decide it


@dataclass(frozen=True)
class Measurement:
    source: str  # "gateway" | "capture"
    new_version: int
    new: VersionStats
    old_version: int | None
    old: VersionStats | None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    first_error_at: float | None = None  # Unix seconds of the new version's first failure (gateway source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "new": {"version": self.new_version, **self.new.to_dict()},
            "old": None if self.old is None else {"version": self.old_version, **self.old.to_dict()},
            "alerts": self.alerts,
            "measured_at": utcnow().isoformat(),
        }


def measure(
    platform: Platform,
    session: Session,
    *,
    project: str,
    model: str,
    environment: str,
    deployment_id: int,
    new_version: int,
    old_version: int | None,
    since: dt.datetime,
) -> Measurement:
    """Both versions' answers since ``since`` and the deployment's alerts since then."""
    window = outcomes(platform)
    start = since.timestamp()
    alerts = _alerts_since(session, deployment_id, since)
    if window.has_deployment(project, model, environment):
        new = window.stats(project, model, environment, new_version, start)
        old = window.stats(project, model, environment, old_version, start) if old_version is not None else None
        first = window.first_error_at(project, model, environment, new_version, start)
        return Measurement("gateway", new_version, new, old_version, old, alerts, first)
    by_version = _captured(platform, project, model, environment, since)
    empty = VersionStats(0, 0, None)
    old = by_version.get(old_version, empty) if old_version is not None else None
    return Measurement("capture", new_version, by_version.get(new_version, empty), old_version, old, alerts)


def judge(measurement: Measurement, guard: Mapping[str, Any]) -> list[str]:
    """Why the new version breaches its SLOs (empty: it does not)."""
    reasons = []
    new, old = measurement.new, measurement.old
    minimum = guard["min_requests"]
    old_rate = old.error_rate if old is not None and old.requests >= minimum else 0.0
    if new.requests >= minimum and new.error_rate > old_rate + guard["error_rate_margin"]:
        reasons.append(
            f"error rate {new.error_rate:.1%} of version {measurement.new_version} over {new.requests} requests "
            f"exceeds {old_rate:.1%} + {guard['error_rate_margin']:.1%}"
        )
    latency_minimum = max(minimum, LATENCY_MIN_REQUESTS)
    if (
        old is not None
        and new.requests >= latency_minimum
        and old.requests >= latency_minimum
        and new.latency_p99_ms is not None
        and old.latency_p99_ms is not None
        and new.latency_p99_ms > old.latency_p99_ms * guard["latency_p99_ratio"]
        and new.latency_p99_ms - old.latency_p99_ms > guard["latency_p99_margin_ms"]
    ):
        reasons.append(
            f"latency p99 {new.latency_p99_ms:.1f} ms of version {measurement.new_version} exceeds "
            f"{guard['latency_p99_ratio']:g} x {old.latency_p99_ms:.1f} ms"
        )
    if guard["alerts"] and measurement.alerts:
        reasons.append("alert firing on the deployment: " + ", ".join(sorted({a["rule"] for a in measurement.alerts})))
    return reasons


def _alerts_since(session: Session, deployment_id: int, since: dt.datetime) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Alert.id, AlertRule.name, Alert.value, Alert.started_at)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .where(Alert.deployment_id == deployment_id, Alert.state == "firing", Alert.started_at >= since)
    )
    return [{"id": i, "rule": name, "value": value, "started_at": at.isoformat()} for i, name, value, at in rows]


def _captured(
    platform: Platform, project: str, model: str, environment: str, since: dt.datetime
) -> dict[int, VersionStats]:
    from mlplatform.core.monitoring.records import read_window

    records = read_window(
        platform.artifact_store, project, model, environment, since, utcnow() + dt.timedelta(seconds=1)
    )
    table = records.table
    if table.num_rows == 0:
        return {}
    names = ("version", "request_id", "timestamp", "status", "latency_ms")
    columns = [table.column(name).to_pylist() for name in names]
    grouped: dict[int, list[tuple[bool, float | None]]] = {}
    seen: set[tuple[int, str, dt.datetime]] = set()
    for version, request_id, at, status, latency in zip(*columns, strict=True):
        if version is None or (version, request_id, at) in seen:
            continue  # a record of no version, or another row of a request already counted
        seen.add((version, request_id, at))  # capture writes one row per input row, each with the request's status
        grouped.setdefault(int(version), []).append((status in (None, 200), latency))
    return {
        version: VersionStats(
            len(rows), sum(1 for ok, _ in rows if not ok), p99([lat for _, lat in rows if lat is not None])
        )
        for version, rows in grouped.items()
    }
