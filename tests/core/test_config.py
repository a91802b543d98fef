"""Config: references, validation with dotted paths, env overrides, masked dumps, shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mlplatform.cli import main
from mlplatform.core import config as cfg
from mlplatform.core.errors import ConfigError
from mlplatform.core.plugins import build_plugin_manager

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry():
    return build_plugin_manager().backends


def load(raw, registry):
    return cfg.load_config(raw, registry)


def test_default_config_validates(registry) -> None:
    config = load(cfg.read_config_file(ROOT / "config" / "default.yaml"), registry)
    assert config["artifact_store"]["backend"] == "local"
    assert config["jobs"]["backend"] == "inline"
    assert [e["name"] for e in config["environments"]] == ["staging", "production"]


def test_production_example_validates(registry, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MLPLATFORM_DATABASE_URL", "postgresql://mlp:pw@db/mlp")
    raw = cfg.read_config_file(ROOT / "config" / "production.example.yaml")
    # The example reads Vault; here every secret reference resolves from the env backend instead.
    raw["secrets"] = {"backend": "env"}
    for name in ("MLPLATFORM_S3_ACCESS_KEY_ID", "MLPLATFORM_S3_SECRET_ACCESS_KEY", "MLPLATFORM_WEBHOOK_HMAC"):
        monkeypatch.setenv(name, "value-of-" + name)
    monkeypatch.setenv("MLPLATFORM_SLACK_URL", "https://hooks.slack.com/services/value-of-slack")
    config = load(raw, registry)
    assert config["database"]["url"] == "postgresql://mlp:pw@db/mlp"
    assert [t["backend"] for t in config["deployment_targets"]] == ["ray_serve", "kubernetes"]
    dumped = str(cfg.masked(config))
    assert "value-of-" not in dumped and "mlp:***@db" in dumped
    assert config["alert_channels"][0]["backend"] == "slack"


@pytest.mark.parametrize(
    "raw, path, message",
    [
        (
            {"artifact_store": {"backend": "local", "options": {"rot": "x"}}},
            "artifact_store.options.rot",
            "unknown key",
        ),
        ({"artifact_store": {"backend": "s4"}}, "artifact_store.backend", "'s4' is not installed"),
        ({"databse": {}}, "databse", "unknown key"),
        ({"server": {"port": "many"}}, "server.port", "Not a valid integer"),
        ({"environments": [{"name": "staging"}]}, "environments.0.target", "missing required field"),
        ({"environments": [{"name": "staging", "target": "k8s"}]}, "environments.0.target", "unknown target 'k8s'"),
        ({"secrets": {"backend": "file", "options": {}}}, "secrets.options.root", "missing required field"),
        ({"monitoring": {"drift_metrics": ["psi", "nope"]}}, "monitoring.drift_metrics.1", "'nope' is not installed"),
        (
            {"alert_channels": [{"name": "x", "backend": "webhook", "options": {}}]},
            "alert_channels.0.options.url",
            "missing required field",
        ),
    ],
)
def test_errors_carry_their_dotted_path(registry, raw, path, message) -> None:
    with pytest.raises(ConfigError) as caught:
        load(raw, registry)
    assert caught.value.path == path
    assert message in str(caught.value)


def test_references_resolve_or_fail(registry, monkeypatch, tmp_path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("MLP_TEST_URL", "sqlite:///x.db")
    monkeypatch.setenv("MLPLATFORM_HOOK_SECRET", "from-the-env-backend")
    config = load(
        {
            "database": {"url": {"$env": "MLP_TEST_URL"}},
            "alert_channels": [
                {
                    "name": "a",
                    "backend": "webhook",
                    "options": {"url": "http://x", "secret": {"$file": str(secret_file)}},
                },
                {
                    "name": "b",
                    "backend": "webhook",
                    "options": {"url": "http://x", "secret": {"$secret": "mlplatform/hook#secret"}},
                },
            ],
        },
        registry,
    )
    assert config["database"]["url"] == "sqlite:///x.db"
    assert [c["options"]["secret"] for c in config["alert_channels"]] == ["from-a-file", "from-the-env-backend"]
    assert "from-" not in str(cfg.masked(config)) and "from-" not in repr(config["alert_channels"])
    with pytest.raises(ConfigError, match="database.url: environment variable 'MLP_NOT_SET' is not set"):
        load({"database": {"url": {"$env": "MLP_NOT_SET"}}}, registry)
    with pytest.raises(ConfigError, match="database.url: cannot read file"):
        load({"database": {"url": {"$file": str(tmp_path / "missing")}}}, registry)
    with pytest.raises(ConfigError, match=r"alert_channels.0.options.secret: secret mlplatform/nope#k not found"):
        load(
            {
                "alert_channels": [
                    {
                        "name": "a",
                        "backend": "webhook",
                        "options": {"url": "u", "secret": {"$secret": "mlplatform/nope#k"}},
                    }
                ]
            },
            registry,
        )
    with pytest.raises(ConfigError, match="must look like 'path#key'"):
        load({"database": {"url": {"$secret": "no-key"}}}, registry)


def test_env_overrides(monkeypatch) -> None:
    monkeypatch.setenv("MLPLATFORM_DATABASE_URL", "postgresql://h/db")
    monkeypatch.setenv("MLPLATFORM_REDIS_URL", "redis://r:6379/1")
    monkeypatch.setenv("MLPLATFORM__SERVER__PORT", "8080")
    raw = cfg.apply_env_overrides({"server": {"host": "0.0.0.0"}}, __import__("os").environ)
    assert raw["database"]["url"] == "postgresql://h/db"
    assert raw["jobs"]["options"]["url"] == "redis://r:6379/1"
    assert raw["server"] == {"host": "0.0.0.0", "port": 8080}


def test_invalid_files(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cfg.read_config_file(bad)
    with pytest.raises(ConfigError, match="does not exist; set MLPLATFORM_CONFIG"):
        cfg.read_config_file(tmp_path / "missing.yaml")


def test_config_check_prints_masked(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLPLATFORM_HOOK_SECRET", "very-secret-value")
    path = tmp_path / "c.yaml"
    path.write_text(
        "alert_channels:\n  - {name: a, backend: webhook, options: {url: 'http://x', secret: {$secret: 'mlplatform/hook#secret'}}}\n"
    )
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "very-secret-value" not in result.output and "secret: '***'" in result.output
    path.write_text("artifact_store: {backend: s4}\n")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1 and "artifact_store.backend: 's4' is not installed" in result.output
