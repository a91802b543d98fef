"""The registry through the SDK and the CLI against a live server (werkzeug in a thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from api.app import create_app
from mlplatform.cli import main
from mlplatform.client import ApiError, Client, ModelVersion, ModelVersionFailed
from mlplatform.core.services.bootstrap import bootstrap_admin
from tests.registry.conftest import EXAMPLE
from tests.servers import serve_app


@pytest.fixture
def server(make_platform, db_kind: str) -> Iterator[tuple[str, str]]:
    platform = make_platform(db=db_kind)
    _path, token = bootstrap_admin(platform)
    with serve_app(create_app(platform)) as url:
        yield url, token


@pytest.fixture
def client(server: tuple[str, str]) -> Iterator[Client]:
    url, token = server
    with Client(url, token, project="shop", retries=0) as client:
        client.create_project("shop")
        yield client


def test_register_wait_alias_and_cli(
    client: Client, server: tuple[str, str], sklearn_model_dir: Path, tmp_path: Path
) -> None:
    with client.start_run(experiment="churn", params={"C": 1.0}) as run:
        run.log_metric("auc", 0.9)
        client.upload_artifact(run.id, sklearn_model_dir, "model")

    version = client.register_model(run.id, "model", name="churn", input_example=pd.DataFrame(EXAMPLE))
    assert isinstance(version, ModelVersion) and version.version == 1 and version.model == "churn"
    ready = client.wait_for_version("churn", version.version, timeout=20)
    assert ready.status == "ready" and ready.flavor == "sklearn" and ready.run_id == run.id
    assert [c["name"] for c in ready.signature["inputs"]] == ["age", "income", "city"]

    second = client.register_model(run.id, name="churn")
    assert second.version == 2 and client.wait_for_version("churn", 2, timeout=20).status == "ready"
    assert client.set_alias("churn", "champion", 1).version == 1
    assert client.get_model_version("churn@champion").version == 1
    assert client.get_model_version("churn").version == 2  # latest
    assert client.get_model("churn").aliases == {"champion": 1}
    lineage = client.model_version_lineage("churn", "champion")
    assert lineage["run"]["params"] == {"C": "1.0"} and lineage["run"]["metrics"] == {"auc": 0.9}

    # the upload flow, and a broken model that fails
    (tmp_path / "model.joblib").write_bytes(b"not a pickle")
    broken = client.register_model_files(tmp_path, name="churn")
    assert broken.version == 3 and broken.artifact_sha256
    with pytest.raises(ModelVersionFailed, match="cannot load sklearn model"):
        client.wait_for_version("churn", 3, timeout=20)
    with pytest.raises(ApiError) as caught:
        client.set_alias("churn", "latest", 1)
    assert caught.value.status == 422

    url, token = server
    env = {"MLPLATFORM_URL": url, "MLPLATFORM_TOKEN": token, "MLPLATFORM_PROJECT": "shop"}
    runner = CliRunner()
    listed = runner.invoke(main, ["models", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == ["churn\tv2\tchampion=v1\t"]
    moved = runner.invoke(main, ["models", "set-alias", "churn", "champion", "2"], env=env)
    assert moved.exit_code == 0 and moved.output.strip() == "churn@champion -> v2"
    versions = runner.invoke(main, ["models", "versions", "churn"], env=env)
    lines = versions.output.splitlines()
    assert versions.exit_code == 0 and [line.split("\t")[:2] for line in lines] == [
        ["v1", "ready"],
        ["v2", "ready"],
        ["v3", "failed"],
    ]
    assert "champion" in lines[1]
    shown = runner.invoke(main, ["models", "show", "churn@champion"], env=env)
    assert shown.exit_code == 0 and '"version": 2' in shown.output
    missing = runner.invoke(main, ["models", "show", "nope"], env=env)
    assert missing.exit_code == 1 and "404" in missing.output

    # deleting: the failed v3 from the CLI, v1 from the SDK
    deleted = runner.invoke(main, ["models", "delete-version", "churn", "3", "--yes"], env=env)
    assert deleted.exit_code == 0 and deleted.output.strip() == "deleted churn v3", deleted.output
    client.delete_model_version("churn", 1)
    assert [v.version for v in client.list_model_versions("churn")] == [2]
    with pytest.raises(ApiError) as caught:
        client.delete_model_version("churn", 1)
    assert caught.value.status == 404


def test_cli_says_plainly_when_the_server_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: requests' ConnectionError traceback."""
    import socket

    from mlplatform import client as client_module

    monkeypatch.setattr(client_module.Transport, "_delay", lambda self, attempt, retry_after: 0.0)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"MLPLATFORM_URL": f"http://127.0.0.1:{port}", "MLPLATFORM_TOKEN": "x"}
    result = CliRunner().invoke(main, ["models", "list", "-p", "p1"], env=env)
    assert result.exit_code == 1
    assert f"cannot reach mlplatform at http://127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
