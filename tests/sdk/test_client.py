"""The SDK against a real HTTP server (werkzeug in a thread on a free port)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from api.app import create_app
from mlplatform.client import ApiError, Client
from mlplatform.core.services.bootstrap import bootstrap_admin
from tests.servers import serve_app


class LoseFirstResponse:
    """WSGI middleware: the first POST to a ``/log`` route reaches the app, but the client
    sees a 503, as when a proxy drops the response. The SDK must retry without duplicating."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.armed = False
        self.dropped = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.armed and environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/log"):
            self.armed = False
            self.dropped += 1
            list(self.app(environ, lambda *a, **k: None))
            start_response("503 Service Unavailable", [("Content-Type", "application/json"), ("Retry-After", "0")])
            return [b'{"code": 503, "status": "Service Unavailable", "message": "dropped", "errors": {}}']
        return self.app(environ, start_response)


@pytest.fixture
def server(make_platform) -> Iterator[tuple[str, str, LoseFirstResponse]]:
    platform = make_platform()
    _path, token = bootstrap_admin(platform)
    app = create_app(platform)
    wrapper = LoseFirstResponse(app.wsgi_app)
    app.wsgi_app = wrapper  # type: ignore[method-assign]
    with serve_app(app) as url:
        yield url, token, wrapper


@pytest.fixture
def client(server) -> Iterator[Client]:
    url, token, _ = server
    with Client(url, token, project="churn") as client:
        client.create_project("churn")
        yield client


def test_run_context_logs_in_batches_and_finishes(client: Client) -> None:
    with client.start_run(experiment="baseline", params={"lr": 0.01, "depth": 3}, tags={"team": "ml"}) as run:
        for step in range(2500):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metric("weird", math.nan, step=0)
        run.log_metric("weird", math.inf, step=1)
        run.set_tag("stage", "trained")
    finished = client.get_run(run.id)
    assert finished.status == "finished" and finished.end_time is not None
    assert finished.params == {"lr": "0.01", "depth": "3"}
    assert finished.tags["stage"] == "trained" and finished.tags["team"] == "ml"
    assert finished.metrics["loss"].step == 2499
    history = client.metric_history(run.id, "loss")
    assert [p.step for p in history] == list(range(2500))
    weird = client.metric_history(run.id, "weird")
    assert math.isnan(weird[0].value) and weird[1].value == math.inf


def test_a_failing_block_marks_the_run_failed(client: Client) -> None:
    with pytest.raises(RuntimeError):
        with client.start_run(experiment="baseline") as run:
            run.log_metric("loss", 1.0)
            raise RuntimeError("training blew up")
    failed = client.get_run(run.id)
    assert failed.status == "failed"
    assert failed.metrics["loss"].value == 1.0


def test_a_lost_response_is_retried_without_duplicates(client: Client, server) -> None:
    _url, _token, wrapper = server
    run = client.start_run(experiment="baseline")
    wrapper.armed = True
    for step in range(10):
        run.log_metric("acc", step / 10, step=step)
    run.flush()
    run.end()
    assert wrapper.dropped == 1
    assert [p.step for p in client.metric_history(run.id, "acc")] == list(range(10))


def test_param_conflicts_surface_at_once(client: Client) -> None:
    with client.start_run(experiment="baseline", params={"lr": 0.1}) as run:
        with pytest.raises(ApiError) as caught:
            run.log_param("lr", 0.2)
        assert caught.value.status == 409 and "lr" in caught.value.message


def test_search_and_artifacts(client: Client, tmp_path) -> None:
    for lr in (0.1, 0.01):
        with client.start_run(experiment="sweep", params={"lr": lr}) as run:
            run.log_metric("acc", 0.9 if lr == 0.01 else 0.8)
    found = client.search_runs("metrics.acc > 0.85", order_by=["metrics.acc DESC"])
    assert [r.params["lr"] for r in found] == ["0.01"]
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00" * 300_000)
    seen: list[int] = []
    uploaded = client.upload_artifact(found[0].id, model, "model/model.bin", progress=seen.append)
    assert uploaded.size == 300_000 and sum(seen) == 300_000
    assert [a.path for a in client.list_artifacts(found[0].id, "model/")] == ["model/model.bin"]
    out = client.download_artifact(found[0].id, "model/model.bin", tmp_path / "back.bin")
    assert out.read_bytes() == model.read_bytes()


def test_errors_are_typed(client: Client) -> None:
    with pytest.raises(ApiError) as caught:
        client.get_run("0" * 32)
    assert caught.value.status == 404
    with pytest.raises(ValueError, match="MLPLATFORM_URL"):
        Client(None, None)


def test_cli_client_commands(client: Client, server, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from mlplatform.cli import main

    url, token, _ = server
    monkeypatch.setenv("MLPLATFORM_URL", url)
    monkeypatch.setenv("MLPLATFORM_TOKEN", token)
    monkeypatch.setenv("MLPLATFORM_PROJECT", "churn")
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(main, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    assert "created experiment" in ok("experiments", "create", "cli-exp", "--description", "from the CLI")
    assert "cli-exp" in ok("experiments", "list")
    with client.start_run(experiment="cli-exp", params={"lr": 0.5}) as run:
        run.log_metric("acc", 0.75)
    assert run.id in ok("runs", "search", "--filter", "params.lr = '0.5'", "--order-by", "metrics.acc DESC")
    assert '"lr": "0.5"' in ok("runs", "show", run.id)
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    assert "uploaded data.csv (8 bytes)" in ok("artifacts", "upload", run.id, str(data))
    ok("artifacts", "download", run.id, "data.csv", str(tmp_path / "copy.csv"))
    assert (tmp_path / "copy.csv").read_text() == "a,b\n1,2\n"
    bad = runner.invoke(main, ["runs", "search", "--filter", "metrics.acc >"])
    assert bad.exit_code == 1 and "400" in bad.output
