"""Prometheus metrics: requests and latency per route, and jobs by state.

Under gunicorn each worker is a process; when ``PROMETHEUS_MULTIPROC_DIR`` is set (``mlplatform
serve`` sets it) the request metrics are aggregated across workers by prometheus-client's
multiprocess mode. Job counts come from the ``jobs`` table at scrape time.
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

from mlplatform.core.db.models import Job

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform


class JobStateCollector:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("mlplatform_jobs", "Jobs by name and state", labels=["name", "state"])
        with self.platform.db.read() as session:
            for name, state, count in session.execute(select(Job.name, Job.state, func.count()).group_by(Job.name, Job.state)):
                family.add_metric([name, state], count)
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
            "mlplatform_http_request_duration_seconds", "HTTP request latency", ["method", "route"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.jobs = JobStateCollector(platform)
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
        body = generate_latest(registry) + generate_latest(_single(self.jobs))
        return Response(body, content_type=CONTENT_TYPE_LATEST)


def _single(collector: JobStateCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return registry
