"""Prometheus metrics: requests and latency per route, jobs by state, latest monitor values.

Under gunicorn each worker is a process; when ``PROMETHEUS_MULTIPROC_DIR`` is set (``mlplatform
serve`` sets it) the request metrics are aggregated across workers by prometheus-client's
multiprocess mode. Job counts and monitor values are read from the database at scrape time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from mlplatform.core.db.deployments import Deployment
from mlplatform.core.db.models import Job, Project
from mlplatform.core.db.monitoring import MonitorPoint
from mlplatform.core.db.registry import ModelVersion, RegisteredModel

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform


class JobStateCollector:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("mlplatform_jobs", "Jobs by name and state", labels=["name", "state"])
        with self.platform.db.read() as session:
            for name, state, count in session.execute(
                select(Job.name, Job.state, func.count()).group_by(Job.name, Job.state)
            ):
                family.add_metric([name, state], count)
        yield family


class MonitorValueCollector:
    """``mlplatform_monitor_value``: every point of each deployment's latest window, one query.

    The latest window is per deployment (so a series that stopped being written disappears
    instead of repeating a stale value); retired deployments are left out. ``version`` is the
    model version that wrote the point ("" when none): with several versions serving, one
    window holds a point per version, and Prometheus refuses two samples with equal labels.
    """

    LABELS = ("project", "model", "environment", "metric", "feature", "version")

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mlplatform_monitor_value",
            "Latest value of each monitor series (quality, drift, performance)",
            labels=self.LABELS,
        )
        latest = aliased(MonitorPoint)
        latest_window = (
            select(func.max(latest.window_start))
            .where(latest.deployment_id == Deployment.id)
            .correlate(Deployment)
            .scalar_subquery()
        )
        query = (
            select(
                Project.name,
                RegisteredModel.name,
                Deployment.environment,
                MonitorPoint.metric,
                MonitorPoint.feature,
                ModelVersion.version,
                MonitorPoint.value,
            )
            .select_from(Deployment)
            .join(Project, Project.id == Deployment.project_id)
            .join(RegisteredModel, RegisteredModel.id == Deployment.model_id)
            .join(
                MonitorPoint,
                (MonitorPoint.deployment_id == Deployment.id) & (MonitorPoint.window_start == latest_window),
            )
            .outerjoin(ModelVersion, ModelVersion.id == MonitorPoint.version_id)
            .where(Deployment.status != "retired", MonitorPoint.value.is_not(None))
        )
        with self.platform.db.read() as session:
            for project, model, environment, metric, feature, version, value in session.execute(query):
                if value is not None:  # filtered in SQL already; this tells the type checker
                    labels = [project, model, environment, metric, feature, "" if version is None else str(version)]
                    family.add_metric(labels, value)
        yield family


class Metrics:
    def __init__(self, app: Flask, platform: Platform) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # Request metrics live in their own registry so that several apps (tests) can coexist.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlplatform_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mlplatform_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.jobs = JobStateCollector(platform)
        self.monitor = MonitorValueCollector(platform)
        app.before_request(self._start)
        app.after_request(self._observe)

    def _start(self) -> None:
        g.metrics_start = time.perf_counter()

    def _observe(self, response: Response) -> Response:
        start = g.get("metrics_start")
        if start is not None:
            route = request.url_rule.rule if request.url_rule else "unmatched"
            self.requests.labels(request.method, route, str(response.status_code)).inc()
            self.latency.labels(request.method, route).observe(time.perf_counter() - start)
        return response

    def render(self) -> Response:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        body = generate_latest(registry) + generate_latest(_single(self.jobs)) + generate_latest(_single(self.monitor))
        return Response(body, content_type=CONTENT_TYPE_LATEST)


def _single(collector: JobStateCollector | MonitorValueCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return registry
