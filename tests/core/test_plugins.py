"""The plugin manager: loading policy and start-up failures that name the plugin and the fix."""

from __future__ import annotations

import logging
import types

import pytest
from marshmallow import Schema, fields

from mlplatform import hookimpl
from mlplatform.core.backends import ArtifactStore, SecretBackend
from mlplatform.core.errors import ConfigError, PluginError
from mlplatform.core.plugins import BUILTIN_PLUGINS, build_plugin_manager
from mlplatform.plugins.local_storage import LocalArtifactStore


def plugin(**hooks) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


class MemorySecrets(SecretBackend):
    name = "memory"

    class Config(Schema):
        values = fields.Dict(load_default=dict)

    def get(self, path: str, key: str) -> str:
        return self.options["values"][f"{path}#{key}"]


def test_builtins_and_entry_points_load() -> None:
    pm = build_plugin_manager()
    loaded = {name for name, p in pm.list_name_plugin() if p is not None}
    assert set(BUILTIN_PLUGINS) <= loaded
    assert "local" in pm.backends.names("artifact_store")
    assert {"env", "file"} <= set(pm.backends.names("secret_backend"))
    assert "token" in pm.backends.names("auth_backend")


def test_a_misspelled_hookimpl_fails_with_a_suggestion() -> None:
    with pytest.raises(PluginError, match="register_artifact_store'.*rename it to 'register_artifact_stores'"):
        build_plugin_manager(extra_plugins=[plugin(register_artifact_store=lambda: [])])


def test_two_backends_with_one_name_fail() -> None:
    class Other(LocalArtifactStore):
        pass

    with pytest.raises(PluginError, match="two artifact_store backends are named 'local'.*plugins.block"):
        build_plugin_manager(extra_plugins=[plugin(register_artifact_stores=lambda: [Other])])


def test_a_backend_missing_abstract_methods_fails() -> None:
    class Half(ArtifactStore):
        name = "half"

        def put(self, path, stream, size=None):  # type: ignore[override]
            raise NotImplementedError

    with pytest.raises(PluginError, match="'half'.*does not implement delete, list, open"):
        build_plugin_manager(extra_plugins=[plugin(register_artifact_stores=lambda: [Half])])


def test_not_a_backend_class_fails() -> None:
    with pytest.raises(PluginError, match="not a subclass of mlplatform.core.backends.ArtifactStore"):
        build_plugin_manager(extra_plugins=[plugin(register_artifact_stores=lambda: [dict])])


def test_unknown_backend_lists_what_is_available_and_what_to_install() -> None:
    pm = build_plugin_manager()
    with pytest.raises(ConfigError) as caught:
        pm.backends.get("artifact_store", "s4", "artifact_store.backend")
    message = str(caught.value)
    assert message.startswith("artifact_store.backend: 's4' is not installed; available: ")
    assert "local" in message and "pip install 'mlplatform[s3]'" in message


def test_block_and_require() -> None:
    pm = build_plugin_manager(block=["mlplatform.plugins.secrets"])
    assert "env" not in pm.backends.names("secret_backend")
    with pytest.raises(PluginError, match="plugins.require lists no-such-plugin, which is not loaded"):
        build_plugin_manager(require=["no-such-plugin"])
    build_plugin_manager(require=["mlplatform.plugins.token_auth"])


def test_an_extra_plugin_backend_is_selectable(make_platform) -> None:
    platform = make_platform(
        {
            "secrets": {"backend": "memory", "options": {"values": {"db#password": "s3cret"}}},
            "alert_channels": [
                {
                    "name": "hook",
                    "backend": "webhook",
                    "options": {"url": "http://127.0.0.1:1/x", "secret": {"$secret": "db#password"}},
                }
            ],
        },
        extra_plugins=[plugin(register_secret_backends=lambda: [MemorySecrets])],
    )
    assert platform.secrets.name == "memory"
    assert platform.config["alert_channels"][0]["options"]["secret"] == "s3cret"


def test_trace_logs_hook_calls(monkeypatch, caplog) -> None:
    monkeypatch.setenv("MLPLATFORM_TRACE_PLUGINS", "1")
    pm = build_plugin_manager()
    with caplog.at_level(logging.INFO, logger="mlplatform.plugins"):
        pm.hook.register_drift_metrics()
    assert any("hook register_drift_metrics" in r.getMessage() for r in caplog.records)
