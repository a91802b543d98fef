"""The installed package is discovered through its entry point and selectable by config,
with no change to mlplatform itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlplatform_inhouse import plugin
from mlplatform_inhouse.metrics import MeanShift

from mlplatform.core.config import load_config
from mlplatform.core.errors import ConfigError
from mlplatform.core.plugins import build_plugin_manager


def test_platform_discovers_the_installed_plugin() -> None:
    pm = build_plugin_manager()
    loaded = {name for name, module in pm.list_name_plugin() if module is not None}
    assert "inhouse" in loaded
    assert pm.get_plugin("inhouse") is plugin
    assert "mean_shift" in pm.backends.names("drift_metric")
    assert "jsonl_file" in pm.backends.names("alert_channel")
    assert pm.backends.entries("drift_metric")["mean_shift"].cls is MeanShift
    info = next(i for i in pm.plugin_infos() if i.name == "inhouse")
    assert info.version == "0.1.0"
    assert {b["name"] for b in info.backends} == {"mean_shift", "jsonl_file"}


def test_config_selects_the_plugin_backends(tmp_path: Path) -> None:
    pm = build_plugin_manager()
    path = str(tmp_path / "audit.jsonl")
    config = load_config(
        {
            "monitoring": {"drift_metrics": ["psi", "mean_shift"]},
            "alert_channels": [{"name": "audit-file", "backend": "jsonl_file", "options": {"path": path}}],
        },
        pm.backends,
    )
    assert config["monitoring"]["drift_metrics"] == ["psi", "mean_shift"]
    assert config["alert_channels"] == [{"name": "audit-file", "backend": "jsonl_file", "options": {"path": path}}]


def test_unknown_option_is_a_config_error_naming_the_dotted_path(tmp_path: Path) -> None:
    pm = build_plugin_manager()
    options = {"path": str(tmp_path / "audit.jsonl"), "colour": "red"}
    with pytest.raises(ConfigError) as info:
        load_config(
            {"alert_channels": [{"name": "audit-file", "backend": "jsonl_file", "options": options}]}, pm.backends
        )
    assert info.value.path == "alert_channels.0.options.colour"
    assert "unknown key" in str(info.value)


def test_missing_required_option_is_a_config_error() -> None:
    pm = build_plugin_manager()
    with pytest.raises(ConfigError, match=r"alert_channels\.0\.options\.path: missing required field"):
        load_config({"alert_channels": [{"name": "audit-file", "backend": "jsonl_file"}]}, pm.backends)


def test_blocking_the_plugin_removes_its_backends() -> None:
    pm = build_plugin_manager(block=["inhouse"])
    assert "mean_shift" not in pm.backends.names("drift_metric")
    with pytest.raises(ConfigError, match=r"monitoring\.drift_metrics\.0: 'mean_shift' is not installed"):
        load_config({"monitoring": {"drift_metrics": ["mean_shift"]}}, pm.backends)
