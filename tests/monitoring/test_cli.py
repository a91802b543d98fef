"""``mlplatform monitor close-windows``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import yaml
from click.testing import CliRunner
from sqlalchemy import update

from mlplatform.cli import main
from mlplatform.core.db.deployments import Deployment
from tests.api_client import Api
from tests.monitoring.conftest import WINDOW


def test_close_windows_command(make_api: Callable[..., Api], tmp_path: Path) -> None:
    from tests.monitoring.conftest import add_model

    api = make_api(db="sqlite")
    add_model(api)
    with api.platform.db.write() as session:
        session.execute(update(Deployment).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)))
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"data_dir": str(api.platform.data_dir), "database": {"url": api.platform.database_url}})
    )
    result = CliRunner().invoke(main, ["--config", str(config), "monitor", "close-windows", "--wait"])
    assert result.exit_code == 0, result.output
    assert "window(s) queued" in result.output and not result.output.startswith("0 ")
    again = CliRunner().invoke(main, ["--config", str(config), "monitor", "close-windows"])
    assert again.output.strip() == "0 window(s) queued"


def test_compact_command(make_api: Callable[..., Api], tmp_path: Path) -> None:
    from mlplatform.core.monitoring.records import MERGED_PREFIX, hour_prefix
    from tests.monitoring.conftest import add_model
    from tests.monitoring.test_compaction import send

    api = make_api(db="sqlite")
    monitored = add_model(api)
    send(monitored, range(0, 10))
    send(monitored, range(10, 20))
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"data_dir": str(api.platform.data_dir), "database": {"url": api.platform.database_url}})
    )
    result = CliRunner().invoke(main, ["--config", str(config), "monitor", "compact"])
    assert result.exit_code == 0, result.output
    assert f"deployment {monitored.deployment_id}: 2024-05-01 10:00 2 files -> {MERGED_PREFIX}" in result.output
    assert result.output.strip().endswith("1 hour(s) compacted")
    store = api.platform.artifact_store
    [merged] = list(store.list(hour_prefix("p1", "churn", "production", WINDOW)))
    assert merged.path.rsplit("/", 1)[-1].startswith(MERGED_PREFIX)
    again = CliRunner().invoke(main, ["--config", str(config), "monitor", "compact", "--deployment", "999"])
    assert again.output.strip() == "0 hour(s) compacted"
