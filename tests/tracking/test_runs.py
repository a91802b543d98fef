"""Runs and log batches: create with a first batch, update, delete, params, metrics, tags, limits, idempotency."""

from __future__ import annotations

from sqlalchemy import func, select

from mlplatform.core.db.models import AuditEvent
from mlplatform.core.db.tracking import LatestMetric, Metric, Param, Run, RunTag
from tests.api_client import Api
from tests.tracking.conftest import P, experiment, log, run


def count(api: Api, model: type, run_id: str) -> int:
    with api.platform.db.read() as session:
        return session.scalar(select(func.count()).select_from(model).where(model.run_id == run_id)) or 0


def test_create_with_first_batch_and_get(tracked: Api) -> None:
    api = tracked
    eid = experiment(api)
    created = api.post(
        f"{P}/experiments/{eid}/runs",
        token="dev",
        json={
            "name": "r1",
            "start_time": "2026-01-02T03:04:05+00:00",
            "source": {"git_commit": "abc123", "entry_point": "train.py"},
            "params": {"lr": 0.01, "layers": 3, "opt": "adam"},
            "tags": {"team": "ml"},
            "metrics": [
                {"key": "loss", "value": 0.5, "step": 0, "timestamp": 1000},
                {"key": "loss", "value": 0.25, "step": 1, "timestamp": 2000},
            ],
        },
    )
    assert created.status_code == 201, created.json
    body = created.json
    assert len(body["id"]) == 32 and int(body["id"], 16) >= 0
    assert (
        body["user"] == "dev" and body["status"] == "running" and body["start_time"].startswith("2026-01-02T03:04:05")
    )
    assert body["source"] == {"git_commit": "abc123", "entry_point": "train.py"}
    assert body["params"] == {"lr": "0.01", "layers": "3", "opt": "adam"}
    assert body["metrics"] == {"loss": {"value": 0.25, "step": 1, "timestamp": 2000}}
    fetched = api.get(f"{P}/runs/{body['id']}", token="viewer").json
    assert fetched == body
    child = run(api, eid, parent_run_id=body["id"], name="child")
    assert child["parent_run_id"] == body["id"]
    assert api.post(f"{P}/experiments/{eid}/runs", json={"parent_run_id": "f" * 32}).status_code == 404
    assert api.post(f"{P}/experiments/999/runs", json={}).status_code == 404
    assert api.get(f"{P}/runs/{'0' * 32}").status_code == 404


def test_a_bad_first_batch_creates_no_run(tracked: Api) -> None:
    api = tracked
    eid = experiment(api)
    bad = api.post(
        f"{P}/experiments/{eid}/runs", json={"metrics": [{"key": "m", "value": 1}, {"key": "m", "value": "oops"}]}
    )
    assert bad.status_code == 400 and "metrics[1]" in bad.json["message"]
    assert api.post(f"{P}/runs/search", json={}).json["items"] == []


def test_update_finish_refuses_metrics_until_reopened(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    finished = api.patch(f"{P}/runs/{r}", json={"status": "finished", "name": "renamed"}, token="dev").json
    assert finished["status"] == "finished" and finished["end_time"] and finished["name"] == "renamed"
    refused = log(api, r, metrics=[{"key": "m", "value": 1}])
    assert refused.status_code == 409 and "finished" in refused.json["message"]
    assert log(api, r, tags={"note": "late tags are fine"}).status_code == 200
    reopened = api.patch(f"{P}/runs/{r}", json={"status": "running"}).json
    assert reopened["status"] == "running" and reopened["end_time"] is None
    assert log(api, r, metrics=[{"key": "m", "value": 1}]).status_code == 200
    assert api.patch(f"{P}/runs/{r}", json={"status": "sleeping"}).status_code == 422
    assert api.patch(f"{P}/runs/{r}", json={"end_time": "2000-01-01T00:00:00+00:00"}).status_code == 400
    ended = api.patch(f"{P}/runs/{r}", json={"status": "failed", "end_time": "2100-01-01T00:00:00+00:00"}).json
    assert ended["status"] == "failed" and ended["end_time"].startswith("2100-01-01")


def test_delete_and_restore_run(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    assert api.delete(f"{P}/runs/{r}", token="dev").status_code == 204
    assert api.delete(f"{P}/runs/{r}", token="dev").status_code == 204
    assert api.get(f"{P}/runs/{r}").json["lifecycle_stage"] == "deleted"
    assert log(api, r, tags={"a": "b"}).status_code == 409
    assert api.patch(f"{P}/runs/{r}", json={"name": "x"}).status_code == 409
    restored = api.post(f"{P}/runs/{r}/restore", token="dev").json
    assert restored["lifecycle_stage"] == "active" and restored["deleted_at"] is None
    with api.platform.db.read() as session:
        actions = list(
            session.scalars(select(AuditEvent.action).where(AuditEvent.resource_id == r).order_by(AuditEvent.id))
        )
    assert actions == ["run.create", "run.delete", "run.restore"]


def test_logging_is_not_audited_but_run_changes_are(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    log(api, r, params={"a": "1"}, tags={"t": "v"}, metrics=[{"key": "m", "value": 1}])
    api.patch(f"{P}/runs/{r}", json={"status": "killed"})
    with api.platform.db.read() as session:
        actions = list(
            session.scalars(select(AuditEvent.action).where(AuditEvent.resource_id == r).order_by(AuditEvent.id))
        )
    assert actions == ["run.create", "run.update"]


def test_params_are_write_once(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    assert log(api, r, params={"lr": "0.01", "bs": "32"}).status_code == 200
    assert log(api, r, params={"lr": "0.01"}).status_code == 200  # same value again is fine
    conflict = log(api, r, params={"bs": "32", "lr": "0.1", "new": "x"}, metrics=[{"key": "m", "value": 1}])
    assert conflict.status_code == 409
    assert "'lr'" in conflict.json["message"] and conflict.json["errors"] == {
        "params": {"lr": ["already logged with a different value"]}
    }
    assert count(api, Param, r) == 2 and count(api, Metric, r) == 0  # the whole batch was refused


def test_tags_last_write_wins(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api), tags={"stage": "a"})["id"]
    log(api, r, tags={"stage": "b", "other": "x"})
    log(api, r, tags={"stage": "c"})
    assert api.get(f"{P}/runs/{r}").json["tags"] == {"stage": "c", "other": "x"}
    assert count(api, RunTag, r) == 2


def test_a_bad_metric_writes_nothing(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    good = [{"key": "m", "value": float(i), "step": i} for i in range(10)]
    for bad, field in (
        ({"key": "m", "value": "NaNa"}, "value"),
        ({"key": "m", "value": None}, "value"),
        ({"key": "m", "value": 1, "step": 1.5}, "step"),
        ({"key": "m", "value": 1, "timestamp": "now"}, "timestamp"),
        ({"key": "", "value": 1}, "key"),
        ({"value": 1}, "key"),
        ({"key": "m", "value": True}, "value"),
    ):
        response = log(api, r, params={"p": "1"}, tags={"t": "1"}, metrics=[*good, bad])
        assert response.status_code == 400, (bad, response.json)
        assert "metrics[10]" in response.json["message"], response.json
        assert field in str(response.json["errors"]) or field in response.json["message"]
    assert (count(api, Metric, r), count(api, LatestMetric, r), count(api, Param, r), count(api, RunTag, r)) == (
        0,
        0,
        0,
        0,
    )
    assert log(api, r, metrics=good).status_code == 200
    assert count(api, Metric, r) == 10


def test_limits_are_400_naming_the_limit(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    cases = {
        "max_metrics_per_batch": {"metrics": [{"key": "m", "value": 1, "step": i} for i in range(1001)]},
        "max_params_per_batch": {"params": {f"p{i}": "v" for i in range(101)}},
        "max_tags_per_batch": {"tags": {f"t{i}": "v" for i in range(101)}},
        "max_key_length": {"metrics": [{"key": "k" * 251, "value": 1}]},
        "max_param_value_length": {"params": {"p": "v" * 6001}},
        "max_tag_value_length": {"tags": {"t": "v" * 8001}},
    }
    for limit, body in cases.items():
        response = log(api, r, **body)
        assert response.status_code == 400, limit
        assert limit in response.json["message"] and response.json["errors"]["limit"] == [limit]
    at_limits = {
        "metrics": [{"key": "k" * 250, "value": 1, "step": i} for i in range(1000)],
        "params": {f"p{i}": "v" * 6000 for i in range(100)},
        "tags": {f"t{i}": "v" * 8000 for i in range(100)},
    }
    assert log(api, r, **at_limits).json == {"run_id": r, "metrics": 1000, "params": 100, "tags": 100}


def test_limits_come_from_config(make_api) -> None:  # type: ignore[no-untyped-def]
    api = make_api({"tracking": {"limits": {"max_metrics_per_batch": 2000}}})
    api.post("/api/v1/projects", json={"name": "p1"})
    r = run(api, experiment(api))["id"]
    assert log(api, r, metrics=[{"key": "m", "value": 1, "step": i} for i in range(1500)]).status_code == 200


def test_nan_and_infinity_round_trip(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    values = ["NaN", "Infinity", "-Infinity", 1.5, 0, -2]
    assert log(api, r, metrics=[{"key": "m", "value": v, "step": i} for i, v in enumerate(values)]).status_code == 200
    assert log(api, r, metrics=[{"key": f"last_{i}", "value": v} for i, v in enumerate(values[:3])]).status_code == 200
    history = api.get(f"{P}/runs/{r}/metrics/m").json["items"]
    assert [p["value"] for p in history] == ["NaN", "Infinity", "-Infinity", 1.5, 0.0, -2.0]
    latest = api.get(f"{P}/runs/{r}").json["metrics"]
    assert [latest[f"last_{i}"]["value"] for i in range(3)] == ["NaN", "Infinity", "-Infinity"]
    assert b"NaN," not in api.get(f"{P}/runs/{r}/metrics/m").data.replace(b'"NaN"', b"")  # always valid JSON


def test_latest_metric_is_max_step_then_latest_timestamp(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    log(
        api,
        r,
        metrics=[
            {"key": "m", "value": 5, "step": 5, "timestamp": 100},
            {"key": "m", "value": 3, "step": 3, "timestamp": 900},
        ],
    )
    log(api, r, metrics=[{"key": "m", "value": 4, "step": 4, "timestamp": 1000}])  # older step: ignored
    assert api.get(f"{P}/runs/{r}").json["metrics"]["m"] == {"value": 5.0, "step": 5, "timestamp": 100}
    log(api, r, metrics=[{"key": "m", "value": 6, "step": 5, "timestamp": 200}])  # same step, later
    assert api.get(f"{P}/runs/{r}").json["metrics"]["m"]["value"] == 6.0
    log(api, r, metrics=[{"key": "m", "value": 7, "step": 5, "timestamp": 150}])  # same step, earlier
    assert api.get(f"{P}/runs/{r}").json["metrics"]["m"]["value"] == 6.0
    assert count(api, Metric, r) == 5 and count(api, LatestMetric, r) == 1


def test_idempotency_key_replay(tracked: Api) -> None:
    api = tracked
    r = run(api, experiment(api))["id"]
    batch = {"metrics": [{"key": "m", "value": i, "step": i} for i in range(5)], "params": {"a": "1"}}
    first = log(api, r, headers={"Idempotency-Key": "batch-1"}, **batch)
    again = log(api, r, headers={"Idempotency-Key": "batch-1"}, **batch)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(api, Metric, r) == 5
    reused = log(api, r, headers={"Idempotency-Key": "batch-1"}, metrics=[{"key": "m", "value": 9}])
    assert reused.status_code == 409 and "Idempotency-Key" in reused.json["message"]
    assert log(api, r, headers={"Idempotency-Key": "batch-2"}, **batch).status_code == 200
    assert count(api, Metric, r) == 10
    failed = log(api, r, headers={"Idempotency-Key": "batch-3"}, params={"a": "2"})
    assert failed.status_code == 409  # a refused batch does not keep its key
    assert log(api, r, headers={"Idempotency-Key": "batch-3"}, params={"a": "1"}).status_code == 200


def test_a_refused_run_writes_nothing(tracked: Api) -> None:
    """The checks of a new run (experiment active and in the project, parent in the project)
    and its writes are one statement on PostgreSQL: a refusal must leave no row behind."""
    api = tracked
    eid = experiment(api)
    parent = run(api, eid)["id"]
    assert api.post("/api/v1/projects", json={"name": "p2"}).status_code == 201
    elsewhere = api.post("/api/v1/projects/p2/experiments", json={"name": "x"}).json["id"]
    stranger = api.post(f"/api/v1/projects/p2/experiments/{elsewhere}/runs", json={}).json["id"]
    batch = {"params": {"a": "1"}, "tags": {"t": "v"}, "metrics": [{"key": "m", "value": 1.0}]}
    missing_parent = api.post(f"{P}/experiments/{eid}/runs", json={**batch, "parent_run_id": "f" * 32})
    assert missing_parent.status_code == 404 and "f" * 32 in missing_parent.json["message"]
    foreign_parent = api.post(f"{P}/experiments/{eid}/runs", json={**batch, "parent_run_id": stranger})
    assert foreign_parent.status_code == 404 and "'p1'" in foreign_parent.json["message"]
    foreign_experiment = api.post(f"{P}/experiments/{elsewhere}/runs", json=batch)
    assert foreign_experiment.status_code == 404 and f"experiment {elsewhere}" in foreign_experiment.json["message"]
    api.patch(f"{P}/experiments/{eid}", json={"archived": True})
    archived = api.post(f"{P}/experiments/{eid}/runs", json={**batch, "parent_run_id": parent})
    assert archived.status_code == 409 and "archived" in archived.json["message"]
    with api.platform.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 2  # parent and stranger
        for model in (Param, RunTag, Metric, LatestMetric):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
        created = session.scalars(select(AuditEvent.resource_id).where(AuditEvent.action == "run.create")).all()
    assert sorted(created) == sorted([parent, stranger])


def test_a_new_run_answers_as_it_reads(tracked: Api) -> None:
    """The creation response is built from what was written; a later read must match it,
    start_time included (given in another zone, it comes back in UTC)."""
    api = tracked
    eid = experiment(api)
    created = run(
        api,
        eid,
        start_time="2026-03-04T05:06:07.123456+02:00",
        params={"p": 1},
        tags={"t": "x"},
        metrics=[{"key": "m", "value": "Infinity", "step": 2}, {"key": "n", "value": "NaN"}],
    )
    assert created["start_time"] == "2026-03-04T03:06:07.123456+00:00"
    assert created["artifact_prefix"].endswith(f"/runs/{created['id']}")
    assert api.get(f"{P}/runs/{created['id']}").json == created


def test_log_takes_python_json_and_refuses_broken_json(tracked: Api) -> None:
    """The log route parses with orjson and falls back to Flask's parser, so the NaN and
    Infinity literals Python's json writes still work; malformed JSON is still a 400."""
    api = tracked
    r = run(api, experiment(api))["id"]
    headers = {"Content-Type": "application/json"}
    body = b'{"metrics": [{"key": "m", "value": NaN, "step": 0}, {"key": "m", "value": -Infinity, "step": 1}]}'
    assert api.post(f"{P}/runs/{r}/log", data=body, headers=headers).status_code == 200
    assert [p["value"] for p in api.get(f"{P}/runs/{r}/metrics/m").json["items"]] == ["NaN", "-Infinity"]
    assert api.post(f"{P}/runs/{r}/log", data=b'{"metrics": [', headers=headers).status_code == 400
