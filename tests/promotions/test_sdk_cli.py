"""The SDK's and the CLI's promotion commands against a real HTTP server (werkzeug in a thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlplatform.cli import main
from mlplatform.client import ApiError, Client
from tests.api_client import Api
from tests.promotions.conftest import add_version
from tests.servers import serve_app


@pytest.fixture
def served(papi: Callable[..., Api]) -> Iterator[tuple[str, Api]]:
    api = papi(
        {
            "environments": [
                {"name": "staging", "target": "local"},
                {
                    "name": "production",
                    "target": "local",
                    "approvals": 1,
                    "policies": {"min_metrics": {"accuracy": 0.9}},
                },
            ]
        }
    )
    with serve_app(api.app) as url:
        yield url, api


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_sdk_promote_approve_rollback(served: tuple[str, Api], tmp_path: Path) -> None:
    url, api = served
    api.user("mia", role="maintainer", project="acme")
    add_version(api.platform, tmp_path, 1, metrics={"accuracy": 0.95})
    add_version(api.platform, tmp_path, 2, metrics={"accuracy": 0.5})
    add_version(api.platform, tmp_path, 3, metrics={"accuracy": 0.97})
    with (
        Client(url, api.admin_token, project="acme", retries=0) as admin,
        Client(url, api.tokens["mia"], project="acme", retries=0) as mia,
    ):
        pending = admin.promote("churn", 1, strategy="direct")
        assert (pending.state, pending.requested_by) == ("pending_approval", "admin")
        approved = mia.approve(pending.id, "ok")
        assert approved.state == "approved" and approved.approvals[0]["username"] == "mia"
        done = admin.wait_for_promotion(pending.id, timeout=60, poll=0.2)
        assert done.state == "completed" and [s["kind"] for s in done.rollout] == [
            "prepare"
        ]  # nothing served: all traffic at once

        with pytest.raises(ApiError) as refused:
            admin.promote("churn", 2)
        assert refused.value.status == 422 and refused.value.errors["checks"][0]["policy"] == "metric_gate"

        second = admin.promote("churn", "v3", strategy="canary", steps=[50, 100], bake_seconds=0.2)
        assert mia.reject(second.id, "not today").state == "rejected"
        third = admin.promote("churn", 3, strategy="canary", steps=[50, 100], bake_seconds=0.2)
        mia.approve(third.id)
        assert admin.wait_for_promotion(third.id, timeout=60, poll=0.2).state == "completed"
        assert admin.get_deployment("churn", "production").traffic[-1].weight == 100
        rolled = admin.rollback(third.id, "back to v1")
        assert rolled.state == "rolled_back" and "back to v1" in rolled.reason
        assert [(t.version, t.weight) for t in admin.get_deployment("churn", "production").traffic] == [
            (1, 100),
            (3, 0),
        ]
        assert [p.state for p in admin.list_promotions("churn")] == ["completed", "rejected", "rolled_back"]
        assert admin.get_promotion(third.id).rollout[-1]["kind"] == "rollback"


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_cli_promotion_commands(served: tuple[str, Api], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, api = served
    mia = api.user("mia", role="maintainer", project="acme")
    add_version(api.platform, tmp_path, 1, metrics={"accuracy": 0.95})
    add_version(api.platform, tmp_path, 2, metrics={"accuracy": 0.5})
    monkeypatch.setenv("MLPLATFORM_URL", url)
    monkeypatch.setenv("MLPLATFORM_TOKEN", api.admin_token)
    runner = CliRunner()

    result = runner.invoke(main, ["promote", "-p", "acme", "churn", "2"])
    assert result.exit_code == 1 and "422" in result.output and "metric_gate" in result.output
    result = runner.invoke(
        main,
        ["promote", "-p", "acme", "churn", "1", "--strategy", "canary", "--steps", "50,100", "--bake-seconds", "0.2"],
    )
    assert result.exit_code == 0, result.output
    pid = result.output.split("\t")[0]
    assert result.output.strip() == f"{pid}\tchurn\tv1\tproduction\tcanary\tpending_approval\twaiting for 1 approval(s)"

    result = runner.invoke(main, ["promotions", "approve", "-p", "acme", pid], env={"MLPLATFORM_TOKEN": mia})
    assert result.exit_code == 0 and "\tapproved\t" in result.output, result.output
    assert api.platform.jobs.wait_idle(60)
    result = runner.invoke(main, ["promotions", "show", "-p", "acme", pid])
    assert (
        result.exit_code == 0
        and "\tcompleted\t" in result.output
        and "check[request] ok   metric_gate" in result.output
    )
    assert "approve by mia" in result.output and "step 0 prepare 0% passed" in result.output
    result = runner.invoke(main, ["promotions", "rollback", "-p", "acme", pid, "--reason", "drill"])
    assert result.exit_code == 0 and "\trolled_back\trolled back by admin: drill" in result.output
    result = runner.invoke(main, ["promotions", "reject", "-p", "acme", pid, "--reason", "late"])
    assert result.exit_code == 1 and "409" in result.output
