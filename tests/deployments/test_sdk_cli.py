"""The SDK and CLI deployment commands against a real HTTP server (werkzeug in a thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mlplatform.cli import main
from mlplatform.client import ApiError, Client, DeploymentFailed
from tests.api_client import Api
from tests.deployments.conftest import add_version
from tests.servers import serve_app


@pytest.fixture
def served(api: Api) -> Iterator[tuple[str, Api]]:
    with serve_app(api.app) as url:
        yield url, api


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_sdk_deploy_predict_undeploy(served: tuple[str, Api], tmp_path: Path) -> None:
    url, api = served
    add_version(api.platform, tmp_path, 1)
    add_version(api.platform, tmp_path, 2, broken=True)
    with Client(url, api.admin_token, project="acme", retries=0) as client:
        pending = client.deploy("churn", "staging", 1)
        assert pending.status == "pending" and pending.etag == f'"{pending.revision}"'
        deployment = client.wait_for_deployment("churn", "staging", timeout=30)
        assert deployment.status == "healthy" and [(t.version, t.weight) for t in deployment.traffic] == [(1, 100)]

        frame = pd.DataFrame({"x1": [0.0, 1.1], "x2": [1.0, 0.1]})
        prediction = client.predict("churn", "staging", frame)
        assert (prediction.predictions, prediction.version) == ([0, 1], 1) and prediction.request_id
        assert client.predict("churn", "staging", [{"x1": 1.1, "x2": 0.1}], version=1).predictions == [1]

        with pytest.raises(DeploymentFailed, match="cannot load"):
            client.deploy("churn", "staging", "v2", wait=True, timeout=30)
        assert client.predict("churn", "staging", frame).version == 1  # the previous version still serves
        current = client.get_deployment("churn", "staging")
        with pytest.raises(ApiError) as stale:
            client.undeploy("churn", "staging", if_match='"1"')
        assert stale.value.status == 412
        client.undeploy("churn", "staging", if_match=current.etag)
        assert client.wait_for_deployment("churn", "staging", timeout=30).status == "retired"
        assert [d.status for d in client.list_deployments()] == ["retired"]
        assert client.list_deployments(status="healthy") == []
        assert [d.environment for d in client.list_deployments(model="churn", environment="staging")] == ["staging"]


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_cli_commands(served: tuple[str, Api], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, api = served
    add_version(api.platform, tmp_path, 1)
    monkeypatch.setenv("MLPLATFORM_URL", url)
    monkeypatch.setenv("MLPLATFORM_TOKEN", api.admin_token)
    runner = CliRunner()
    result = runner.invoke(main, ["deploy", "-p", "acme", "churn", "staging", "1", "--timeout", "30"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "churn\tstaging\thealthy\tv1:100%"
    result = runner.invoke(main, ["deployments", "list", "-p", "acme"])
    assert result.output.strip() == "churn\tstaging\thealthy\tv1:100%"
    result = runner.invoke(main, ["deployments", "list", "-p", "acme", "--status", "failed"])
    assert result.exit_code == 0 and result.output == ""
    result = runner.invoke(main, ["deploy", "-p", "acme", "churn", "production", "1"])
    assert result.exit_code == 1 and "409" in result.output and "promotions" in result.output
    result = runner.invoke(main, ["undeploy", "-p", "acme", "churn", "staging", "--timeout", "30"])
    assert result.exit_code == 0 and "retired" in result.output
