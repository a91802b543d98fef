"""The built-in ``env`` and ``file`` secret backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlplatform.core.config import SecretStr, load_config, masked
from mlplatform.core.errors import SecretAccessDenied, SecretNotFound
from mlplatform.plugins.secrets import EnvSecrets, FileSecrets
from tests.secrets.conftest import plugin_manager


def test_both_are_registered_by_the_builtin_plugin() -> None:
    entries = plugin_manager().backends.entries("secret_backend")
    assert entries["env"].cls is EnvSecrets and entries["file"].cls is FileSecrets
    assert entries["env"].plugin == entries["file"].plugin == "mlplatform.plugins.secrets"


# --- env ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "path", "key", "variable"),
    [
        ("", "mlplatform/slack", "url", "MLPLATFORM_SLACK_URL"),
        ("APP_", "mlplatform/db", "password", "APP_MLPLATFORM_DB_PASSWORD"),
        ("", "team-a/db.main", "pass-word", "TEAM_A_DB_MAIN_PASS_WORD"),
    ],
)
def test_env_variable_naming(prefix: str, path: str, key: str, variable: str) -> None:
    assert EnvSecrets({"prefix": prefix}).variable(path, key) == variable


def test_env_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLATFORM_DB_PASSWORD", "from-env")
    assert EnvSecrets({}).get("mlplatform/db", "password") == "from-env"


def test_env_missing_variable_is_secret_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLPLATFORM_DB_NOPE", raising=False)
    with pytest.raises(SecretNotFound, match="mlplatform/db#nope.*MLPLATFORM_DB_NOPE"):
        EnvSecrets({}).get("mlplatform/db", "nope")


def test_env_secret_through_load_config_is_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLPLATFORM_DB_URL", "postgresql://u:p4ss@db/x")
    raw = {"data_dir": str(tmp_path), "database": {"url": {"$secret": "mlplatform/db#url"}}}
    config = load_config(raw, plugin_manager().backends)
    assert isinstance(config["database"]["url"], str) and config["database"]["url"].endswith("@db/x")
    assert "p4ss" not in str(masked(config))


# --- file ----------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "mlplatform").mkdir(parents=True)
    (root / "mlplatform" / "db").write_text(json.dumps({"password": "json-value", "port": 5432}))
    (root / "mlplatform" / "slack").mkdir()
    (root / "mlplatform" / "slack" / "url").write_text("https://hooks.example/x\n")
    (root / "mlplatform" / "broken").write_text("not json")
    return root


def test_file_reads_a_json_object_file(root: Path) -> None:
    backend = FileSecrets({"root": str(root)})
    assert backend.get("mlplatform/db", "password") == "json-value"
    assert backend.get("mlplatform/db", "port") == "5432"


def test_file_reads_a_folder_of_key_files_stripped(root: Path) -> None:
    assert FileSecrets({"root": str(root)}).get("mlplatform/slack", "url") == "https://hooks.example/x"


@pytest.mark.parametrize(
    ("path", "key"),
    [("mlplatform/db", "user"), ("mlplatform/slack", "token"), ("mlplatform/nope", "k"), ("mlplatform/broken", "k")],
)
def test_file_missing_path_or_key_is_secret_not_found(root: Path, path: str, key: str) -> None:
    with pytest.raises(SecretNotFound) as caught:
        FileSecrets({"root": str(root)}).get(path, key)
    assert "json-value" not in str(caught.value)


@pytest.mark.parametrize("path", ["../outside", "mlplatform/../../outside", "/etc"])
def test_file_refuses_a_path_outside_the_root(root: Path, path: str) -> None:
    (root.parent / "outside").write_text(json.dumps({"k": "outside-value"}))
    with pytest.raises(SecretNotFound, match="outside the secrets folder"):
        FileSecrets({"root": str(root)}).get(path, "k")


def test_file_refuses_a_symlink_out_of_the_root(root: Path) -> None:
    (root.parent / "elsewhere").mkdir()
    (root.parent / "elsewhere" / "k").write_text("elsewhere-value")
    (root / "link").symlink_to(root.parent / "elsewhere")
    with pytest.raises(SecretNotFound, match="outside the secrets folder"):
        FileSecrets({"root": str(root)}).get("link", "k")


def test_file_unreadable_is_access_denied(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Faked: chmod 000 does not stop root, and CI containers often run as root.
    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(SecretAccessDenied, match="mlplatform/db#password: permission denied"):
        FileSecrets({"root": str(root)}).get("mlplatform/db", "password")


def test_file_secret_through_load_config_is_a_secret_str(root: Path, tmp_path: Path) -> None:
    raw = {
        "data_dir": str(tmp_path),
        "secrets": {"backend": "file", "options": {"root": str(root)}},
        "environments": [
            {"name": "prod", "target": "local", "policies": {"gate": {"$secret": "mlplatform/db#password"}}}
        ],
    }
    config = load_config(raw, plugin_manager().backends)
    value = config["environments"][0]["policies"]["gate"]
    assert isinstance(value, SecretStr) and value == "json-value"
    assert "json-value" not in str(masked(config))
