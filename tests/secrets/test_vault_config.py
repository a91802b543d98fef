"""The vault backend as the platform sees it: options, registration, ``$secret`` at start-up,
and the promise that a secret's value never shows in errors, logs, the config dump or the database."""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields
from sqlalchemy import column, create_engine, inspect, select, table

from mlplatform import hookimpl
from mlplatform.core.backends import Alert, AlertChannel
from mlplatform.core.config import SecretStr, load_config, masked
from mlplatform.core.errors import ConfigError, SecretAccessDenied, SecretNotFound
from mlplatform.core.plugins import describe_schema
from plugins_contrib.vault.backend import VaultSecrets
from tests.secrets.conftest import BaoServer, absent_builtins, plugin_manager


class PasswordChannel(AlertChannel):
    """A channel with a plain (unmarked) string option, to hold a ``$secret`` in tests."""

    name = "test_password_channel"

    class Config(Schema):
        password = fields.String(required=True)

    def send(self, alert: Alert) -> None:
        pass


class ChannelPlugin:
    @hookimpl
    def register_alert_channels(self) -> list[type[AlertChannel]]:
        return [PasswordChannel]


def raw_config(bao: BaoServer, tmp_path: Path, **vault_options: Any) -> dict[str, Any]:
    return {
        "data_dir": str(tmp_path / "data"),
        "secrets": {
            "backend": "vault",
            "options": {"url": bao.url, "token": {"$env": "TEST_BAO_TOKEN"}, **vault_options},
        },
        "alert_channels": [
            {
                "name": "db",
                "backend": "test_password_channel",
                "options": {"password": {"$secret": "mlplatform/db#password"}},
            }
        ],
    }


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"url": "http://127.0.0.1:8200"}, "token"),
        ({"url": "http://127.0.0.1:8200", "auth_method": "approle", "role_id": "r"}, "secret_id"),
        ({"url": "http://127.0.0.1:8200", "auth_method": "approle", "secret_id": "s"}, "role_id"),
        ({"url": "http://127.0.0.1:8200", "auth_method": "kerberos", "token": "t"}, "auth_method"),
        ({"token": "t"}, "url"),
        ({"url": "ftp://vault", "token": "t"}, "url"),
        ({"url": "http://127.0.0.1:8200", "token": "t", "cache_ttl": -1}, "cache_ttl"),
    ],
)
def test_invalid_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        VaultSecrets.Config().load(options)
    assert field in caught.value.messages


def test_defaults_and_secret_fields() -> None:
    options = VaultSecrets.Config().load({"url": "https://vault.example.com:8200", "token": "t"})
    assert options["mount"] == "secret" and options["auth_method"] == "token"
    assert options["cache_ttl"] == 60 and options["verify"] is True and options["namespace"] is None
    described = describe_schema(VaultSecrets.Config)
    assert {name for name, item in described.items() if item.get("secret")} == {"token", "role_id", "secret_id"}


def test_load_config_reports_a_missing_token_at_its_dotted_path(tmp_path: Path) -> None:
    raw = {"secrets": {"backend": "vault", "options": {"url": "http://127.0.0.1:8200"}}}
    with pytest.raises(ConfigError) as caught:
        load_config(raw, plugin_manager().backends)
    assert caught.value.path == "secrets.options.token"


def test_missing_hvac_points_at_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)
    with pytest.raises(ImportError, match=r"pip install 'mlplatform\[vault\]'"):
        VaultSecrets({"url": "http://127.0.0.1:8200", "token": "t"})
    assert VaultSecrets.install_hint == "pip install 'mlplatform[vault]'"


def test_registered_by_the_vault_entry_point() -> None:
    entry = plugin_manager().backends.entries("secret_backend")["vault"]
    assert entry.cls is VaultSecrets and entry.plugin == "vault"


# --- start-up, end to end ---------------------------------------------------------------------


def test_load_config_resolves_a_secret_from_vault(
    bao: BaoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = f"db-{secrets.token_hex(8)}"
    bao.admin.secrets.kv.v2.create_or_update_secret(
        path="mlplatform/db", secret={"password": value}, mount_point="secret"
    )
    monkeypatch.setenv("TEST_BAO_TOKEN", bao.root_token)
    config = load_config(raw_config(bao, tmp_path), plugin_manager(extra_plugins=[ChannelPlugin()]).backends)
    try:
        assert config["alert_channels"][0]["options"]["password"] == value
        assert isinstance(config["secrets"]["options"]["token"], SecretStr)
        dump = masked(config)
        assert dump["secrets"]["options"]["token"] == "***"
        assert bao.root_token not in str(dump) and bao.root_token not in repr(config)
    finally:
        config["_secret_backend"].close()


def test_a_resolved_secret_stays_masked_in_the_config_dump(
    bao: BaoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = f"db-{secrets.token_hex(8)}"
    bao.admin.secrets.kv.v2.create_or_update_secret(
        path="mlplatform/db", secret={"password": value}, mount_point="secret"
    )
    monkeypatch.setenv("TEST_BAO_TOKEN", bao.root_token)
    config = load_config(raw_config(bao, tmp_path), plugin_manager(extra_plugins=[ChannelPlugin()]).backends)
    try:
        password = config["alert_channels"][0]["options"]["password"]
        assert password == value and repr(password) == repr("***")
        assert masked(config)["alert_channels"][0]["options"]["password"] == "***"
        assert value not in str(masked(config))
    finally:
        config["_secret_backend"].close()


def test_load_config_names_the_reference_of_a_missing_secret(
    bao: BaoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_BAO_TOKEN", bao.root_token)
    raw = raw_config(bao, tmp_path, mount="no-such-mount-either")
    raw["alert_channels"][0]["options"]["password"] = {"$secret": f"tests/{secrets.token_hex(4)}#password"}
    with pytest.raises(ConfigError) as caught:
        load_config(raw, plugin_manager(extra_plugins=[ChannelPlugin()]).backends)
    assert caught.value.path == "alert_channels.0.options.password"
    assert bao.root_token not in str(caught.value)


def test_a_value_never_reaches_errors_or_logs(
    bao: BaoServer,
    make_backend: Callable[..., Any],
    policy_token: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    value = f"leak-{secrets.token_hex(8)}"
    path, hidden = f"tests/{secrets.token_hex(4)}", f"tests/{secrets.token_hex(4)}"
    for p in (path, hidden):
        bao.admin.secrets.kv.v2.create_or_update_secret(path=p, secret={"password": value}, mount_point="secret")
    token = policy_token(path, ttl="60s")
    backend = make_backend(token=token, cache_ttl=60)
    messages = []
    assert backend.get(path, "password") == value
    assert backend.get(path, "password") == value  # from the cache
    for call in ((path, "user"), (hidden, "password"), (f"tests/{secrets.token_hex(4)}", "password")):
        with pytest.raises((SecretNotFound, SecretAccessDenied)) as caught:
            backend.get(*call)
        messages.append(str(caught.value))
    assert caplog.records, "expected DEBUG records from the backend and its HTTP stack"
    for text in (caplog.text, *messages, repr(backend)):
        assert value not in text and token not in text


def test_a_value_never_reaches_the_database(
    bao: BaoServer, make_platform: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    value = f"db-{secrets.token_hex(8)}"
    bao.admin.secrets.kv.v2.create_or_update_secret(
        path="mlplatform/db", secret={"password": value}, mount_point="secret"
    )
    monkeypatch.setenv("TEST_BAO_TOKEN", bao.root_token)
    raw = raw_config(bao, tmp_path)
    del raw["data_dir"]
    raw["plugins"] = {"block": absent_builtins()}
    platform = make_platform(raw, db="sqlite", extra_plugins=[ChannelPlugin()])
    assert platform.config["alert_channels"][0]["options"]["password"] == value
    engine = create_engine(platform.database_url)
    try:
        with engine.connect() as conn:
            for name in inspect(conn).get_table_names():
                columns = [c["name"] for c in inspect(conn).get_columns(name)]
                rows = conn.execute(select(*(column(c) for c in columns)).select_from(table(name))).all()
                assert value not in repr(rows) and bao.root_token not in repr(rows), f"found in table {name}"
    finally:
        engine.dispose()
