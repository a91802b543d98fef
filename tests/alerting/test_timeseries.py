"""Time-series queries bucketed in SQL (same answers on SQLite and PostgreSQL), and the
Prometheus gauges of the latest monitor values."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplatform.core.db.monitoring import MonitorPoint
from mlplatform.core.db.registry import ModelAlias, RegisteredModel
from mlplatform.core.services import timeseries
from tests.alerting.conftest import MODEL, PROJECT, T0, add_deployment, write_window
from tests.api_client import Api

SERIES = f"/api/v1/projects/{PROJECT}/models/{MODEL}/deployments/production/metrics"
HOUR = dt.timedelta(hours=1)


def value(feature: str, window: int) -> float:
    """Deterministic, distinct values: age climbs, income zig-zags."""
    return round(window * 0.01, 4) if feature == "age" else float((window * 7) % 11)


def seed_three_hours(api: Api) -> int:
    """5-minute psi points for age and income from 00:10 to 02:55 (the first hour is partial)."""
    deployment_id, (version,) = add_deployment(api.platform)
    with api.platform.db.write() as session:
        for window in range(2, 36):
            start = T0 + window * dt.timedelta(minutes=5)
            for feature in ("age", "income"):
                session.add(
                    MonitorPoint(
                        deployment_id=deployment_id,
                        version_id=version,
                        metric="psi",
                        feature=feature,
                        window_start=start,
                        window_end=start + dt.timedelta(minutes=5),
                        value=value(feature, window),
                    )
                )
            session.add(
                MonitorPoint(
                    deployment_id=deployment_id,
                    version_id=version,
                    metric="row_count",
                    feature="",
                    window_start=start,
                    window_end=start + dt.timedelta(minutes=5),
                    value=100.0,
                )
            )
    return deployment_id


def expected(feature: str, agg: str) -> list[dict]:
    buckets: dict[int, list[float]] = {}
    for window in range(2, 36):
        buckets.setdefault(window // 12, []).append(value(feature, window))
    compute = {"max": max, "min": min, "sum": sum, "count": len, "last": lambda v: v[-1], "avg": statistics.fmean}[agg]
    return [
        {"time": (T0 + hour * HOUR).isoformat(), "value": compute(values)} for hour, values in sorted(buckets.items())
    ]


def query(api: Api, **params: object) -> dict:
    args = {
        "name": "psi",
        "feature": ["age", "income"],
        "start": T0.isoformat(),
        "end": (T0 + 3 * HOUR).isoformat(),
        "step": "1h",
        **params,
    }
    response = api.get(SERIES, query_string=args)
    assert response.status_code == 200, response.json
    return response.json


def test_buckets_several_features_in_sql(aapi: Api) -> None:
    seed_three_hours(aapi)
    for agg in ("max", "avg", "min", "sum", "count", "last"):
        body = query(aapi, agg=agg)
        assert [s["feature"] for s in body["series"]] == ["age", "income"]
        for series in body["series"]:
            want = expected(series["feature"], agg)
            assert [p["time"] for p in series["points"]] == [p["time"] for p in want], agg
            assert [p["value"] for p in series["points"]] == pytest.approx([p["value"] for p in want], abs=1e-12), agg
    body = query(aapi, agg="max")
    assert body["series"][0]["points"] == [
        {"time": "2026-03-01T00:00:00+00:00", "value": 0.11},
        {"time": "2026-03-01T01:00:00+00:00", "value": 0.23},
        {"time": "2026-03-01T02:00:00+00:00", "value": 0.35},
    ]
    assert (body["name"], body["agg"], body["step"]) == ("psi", "max", 3600)

    # 30-minute buckets, a range that cuts the first hour, a feature with no points.
    body = query(aapi, step="30m", agg="count", start=(T0 + HOUR).isoformat(), feature=["age", "zip"])
    assert [p["value"] for p in body["series"][0]["points"]] == [6, 6, 6, 6]
    assert body["series"][1] == {"feature": "zip", "points": []}
    # No feature: every feature of the metric.
    assert [s["feature"] for s in query(aapi, feature=[])["series"]] == ["age", "income"]
    assert query(aapi, name="row_count", feature=[], agg="sum")["series"][0]["points"][0] == {
        "time": "2026-03-01T00:00:00+00:00",
        "value": 1000.0,
    }


def test_bad_queries_are_422_naming_the_field(aapi: Api) -> None:
    seed_three_hours(aapi)
    for params, field in (
        ({"name": "psy"}, "name"),
        ({"step": "1w"}, "step"),
        ({"step": "0h"}, "step"),
        ({"step": "1s", "start": (T0 - 30 * 24 * HOUR).isoformat()}, "step"),
        ({"end": T0.isoformat()}, "start"),
    ):
        response = aapi.get(
            SERIES, query_string={"name": "psi", "start": T0.isoformat(), "end": (T0 + HOUR).isoformat(), **params}
        )
        assert response.status_code == 422, params
        assert field in response.json["errors"], (params, response.json)
    for end in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"):  # no day before it (was a 500)
        response = aapi.get(SERIES, query_string={"name": "psi", "end": end})
        assert response.status_code == 422 and "start" in response.json["errors"], (end, response.json)
    response = aapi.get(SERIES, query_string={"name": "psi", "agg": "median"})
    assert response.status_code == 422 and "agg" in response.json["errors"]["query"]
    assert aapi.get(SERIES, query_string={}).status_code == 422
    assert aapi.get(SERIES.replace("production", "staging"), query_string={"name": "psi"}).status_code == 404
    assert aapi.get(SERIES.replace(MODEL, "other"), query_string={"name": "psi"}).status_code == 404


def test_a_month_of_five_minute_points(aapi: Api, db_kind: str) -> None:
    deployment_id, (version,) = add_deployment(aapi.platform)
    windows = 30 * 24 * 12  # 8640
    rows = []
    for feature in ("age", "income", "zip"):  # other series share the index
        for window in range(windows):
            start = T0 + window * dt.timedelta(minutes=5)
            rows.append(
                {
                    "deployment_id": deployment_id,
                    "version_id": version,
                    "metric": "psi",
                    "feature": feature,
                    "window_start": start,
                    "window_end": start + dt.timedelta(minutes=5),
                    "value": (window % 97) / 97,
                }
            )
    with aapi.platform.db.write() as session:
        session.execute(MonitorPoint.__table__.insert(), rows)
    args = {
        "name": "psi",
        "feature": "age",
        "start": T0.isoformat(),
        "end": (T0 + 30 * 24 * HOUR).isoformat(),
        "step": "1h",
        "agg": "max",
    }
    timings, in_sql = [], []
    for _ in range(7):
        began = time.perf_counter()
        response = aapi.get(SERIES, query_string=args)
        timings.append(time.perf_counter() - began)
        assert response.status_code == 200
        with aapi.platform.db.read() as session:
            began = time.perf_counter()
            result = timeseries.query(
                session,
                aapi.platform,
                deployment_id,
                name="psi",
                features=["age"],
                start=T0,
                end=T0 + 30 * 24 * HOUR,
                step="1h",
                agg="max",
            )
            in_sql.append(time.perf_counter() - began)
    assert len(response.json["series"][0]["points"]) == len(result.series[0].points) == 720
    best, median = min(timings) * 1000, statistics.median(timings) * 1000
    print(
        f"\n{db_kind}: 30 days of 5-minute points, one feature, 1h max: request best {best:.1f} ms, "
        f"median {median:.1f} ms; service query best {min(in_sql) * 1000:.1f} ms (bench/drift.py --series-only times it)"
    )


def test_prometheus_gauges_show_the_latest_window(aapi: Api) -> None:
    deployment_id, (version,) = add_deployment(aapi.platform)
    assert "mlplatform_monitor_value{" not in aapi.get("/metrics").get_data(as_text=True)
    write_window(
        aapi.platform,
        deployment_id,
        0,
        {("psi", "age"): 0.5, ("row_count", ""): 10.0},
        version_id=version,
        evaluate=False,
    )
    write_window(
        aapi.platform,
        deployment_id,
        1,
        {("psi", "age"): 0.25, ("row_count", ""): 12.0},
        version_id=version,
        evaluate=False,
    )
    text = aapi.get("/metrics").get_data(as_text=True)
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "mlplatform_monitor_value"]
    assert family.type == "gauge"
    common = {"project": PROJECT, "model": MODEL, "environment": "production", "version": "1"}
    assert sorted(((s.labels, s.value) for s in family.samples), key=lambda x: x[0]["metric"]) == [
        ({**common, "metric": "psi", "feature": "age"}, 0.25),
        ({**common, "metric": "row_count", "feature": ""}, 12.0),
    ]


def seed_two_versions(api: Api) -> tuple[int, list[int]]:
    """5-minute psi points of age for versions 1 and 2 in the same windows (a canary), from
    00:00 to 00:55: version 1 is ``window``, version 2 is ``10 * window``; version 2 is
    aliased ``canary``."""
    deployment_id, versions = add_deployment(api.platform, versions=2)
    with api.platform.db.write() as session:
        for window in range(12):
            start = T0 + window * dt.timedelta(minutes=5)
            for factor, version in zip((1, 10), versions, strict=True):
                session.add(
                    MonitorPoint(
                        deployment_id=deployment_id,
                        version_id=version,
                        metric="psi",
                        feature="age",
                        window_start=start,
                        window_end=start + dt.timedelta(minutes=5),
                        value=float(factor * window),
                    )
                )
        session.add(ModelAlias(model_id=_model_id(session), alias="canary", version_id=versions[1], updated_by="test"))
    return deployment_id, versions


def _model_id(session: Session) -> int:
    return session.scalars(select(RegisteredModel.id).where(RegisteredModel.name == MODEL)).one()


def test_version_filter_by_number_or_alias(aapi: Api) -> None:
    seed_two_versions(aapi)
    window = {"feature": ["age"], "end": (T0 + HOUR).isoformat()}

    def values(**params: object) -> tuple[object, list[float]]:
        body = query(aapi, **window, **params)
        return body["version"], [p["value"] for p in body["series"][0]["points"]]

    # Every version, aggregated together per window, 5-minute buckets (one window each) and 30-minute ones.
    assert values(step="5m", agg="sum") == (None, [11.0 * w for w in range(12)])
    assert values(step="5m", agg="avg") == (None, [5.5 * w for w in range(12)])
    assert values(step="5m", agg="count") == (None, [2.0] * 12)
    assert values(step="30m", agg="max") == (None, [50.0, 110.0])
    for ref in ("1", "v1"):
        assert values(step="5m", agg="max", version=ref) == (1, [float(w) for w in range(12)])
    for ref in ("2", "canary"):
        assert values(step="5m", agg="min", version=ref) == (2, [10.0 * w for w in range(12)])
        assert values(step="30m", agg="last", version=ref) == (2, [50.0, 110.0])
        assert values(step="1h", agg="avg", version=ref) == (2, [55.0])
    assert values(step="5m", agg="max", version="latest")[0] == 2

    for ref in ("3", "stable", "v0"):
        response = aapi.get(SERIES, query_string={"name": "psi", "version": ref})
        assert response.status_code == 422, (ref, response.json)
        assert "version" in response.json["errors"], response.json
    response = aapi.get(SERIES, query_string={"name": "psi", "version": ""})
    assert response.status_code == 422 and "version" in response.json["errors"]["query"]


def test_windows_longer_or_shorter_than_the_configured_one(make_api: Callable[..., Api], db_kind: str) -> None:
    """Buckets of one window are grouped per window; windows shorter than the step (points
    stored under another window length) fall back to grouping per bucket: same answers."""
    api = make_api({"monitoring": {"window": "30m"}}, db=db_kind)
    assert api.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
    seed_three_hours(api)  # 5-minute points: shorter than the 30m window and the 30m step
    for agg in ("max", "avg", "count", "last"):
        body = query(api, agg=agg)
        for series in body["series"]:
            want = expected(series["feature"], agg)
            assert [p["value"] for p in series["points"]] == pytest.approx([p["value"] for p in want]), agg
    body = query(api, step="30m", agg="count", start=(T0 + HOUR).isoformat(), feature=["age"])
    assert [p["value"] for p in body["series"][0]["points"]] == [6, 6, 6, 6]
    body = query(api, step="5m", agg="max", feature=["income"], end=(T0 + 15 * dt.timedelta(minutes=5)).isoformat())
    assert [p["time"] for p in body["series"][0]["points"]] == [
        (T0 + w * dt.timedelta(minutes=5)).isoformat() for w in range(2, 15)
    ]


def test_default_range_ends_now_and_the_spec_documents_version(aapi: Api) -> None:
    seed_three_hours(aapi)
    response = aapi.get(SERIES, query_string={"name": "psi"})  # end: now, with microseconds
    assert response.status_code == 200 and response.json["series"] == [] and response.json["version"] is None
    spec = aapi.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/projects/{project}/models/{model}/deployments/{environment}/metrics"]["get"]
    [version] = [p for p in operation["parameters"] if p["name"] == "version"]
    assert version["in"] == "query" and "alias" in version["description"]


def test_series_columns_to_json_match_to_dict() -> None:
    result = timeseries.SeriesResult(
        "psi",
        "avg",
        300,
        T0,
        T0 + HOUR,
        [
            timeseries.Series('a"b', np.array([0, 300, 86_400 * 365]), np.array([1.5, np.nan, np.inf])),
            timeseries.Series.empty("c"),
        ],
        version=2,
    )
    assert json.loads(result.to_json()) == result.to_dict()
    assert result.series[0].points[1:] == [
        (dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.UTC), None),
        (dt.datetime(1971, 1, 1, tzinfo=dt.UTC), None),
    ]
