"""The stores are found through the plugin manager, and their options are validated strictly."""

from __future__ import annotations

from typing import Any

import pytest

from mlplatform.core.config import SecretStr, validate_backend_options
from mlplatform.core.errors import ConfigError
from mlplatform.core.plugins import BUILTIN_PLUGINS, BackendRegistry, build_plugin_manager, describe_schema


@pytest.fixture(scope="module")
def registry() -> BackendRegistry:
    # Only the storage plugins matter here: the other built-ins are blocked so that these
    # tests depend on nothing but the stores (and the contrib entry points).
    others = [name for name in BUILTIN_PLUGINS if name != "mlplatform.plugins.local_storage"]
    return build_plugin_manager(block=others).backends


def test_the_stores_are_discovered_through_the_plugin_manager(registry: BackendRegistry) -> None:
    assert {"local", "s3", "azure_blob"} <= set(registry.names("artifact_store"))
    entries = registry.entries("artifact_store")
    assert entries["s3"].plugin == "s3"
    assert entries["azure_blob"].plugin == "azure_blob"


@pytest.mark.parametrize(
    ("name", "options", "path", "message"),
    [
        ("s3", {"bucket": "bkt", "colour": "blue"}, "artifact_store.options.colour", "unknown key"),
        ("s3", {}, "artifact_store.options.bucket", "missing required field"),
        (
            "s3",
            {"bucket": "bkt", "addressing_style": "sideways"},
            "artifact_store.options.addressing_style",
            "Must be one of",
        ),
        ("s3", {"bucket": "bkt", "chunk_size": 1024}, "artifact_store.options.chunk_size", "greater than or equal"),
        ("s3", {"bucket": "bkt", "access_key_id": "AKIA"}, "artifact_store.options.secret_access_key", "go together"),
        (
            "s3",
            {"bucket": "bkt", "endpoint_url": "not a url"},
            "artifact_store.options.endpoint_url",
            "Not a valid URL",
        ),
        ("azure_blob", {"container": "ctr"}, "artifact_store.options.connection_string", "required unless account_url"),
        (
            "azure_blob",
            {"container": "ctr", "connection_string": "x", "account_url": "http://127.0.0.1:1/a"},
            "artifact_store.options.account_url",
            "not both",
        ),
        (
            "azure_blob",
            {"container": "ctr", "connection_string": "x", "credential": "k"},
            "artifact_store.options.credential",
            "only used",
        ),
        ("azure_blob", {"connection_string": "x"}, "artifact_store.options.container", "missing required field"),
        ("local", {"root": "/tmp/x", "bucket": "b"}, "artifact_store.options.bucket", "unknown key"),
    ],
)
def test_a_bad_option_is_a_config_error_at_its_dotted_path(
    registry: BackendRegistry, name: str, options: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_backend_options(registry, "artifact_store", name, options, "artifact_store")
    assert caught.value.path == path
    assert message in caught.value.message


def test_secret_options_are_marked_and_masked(registry: BackendRegistry) -> None:
    s3 = validate_backend_options(
        registry,
        "artifact_store",
        "s3",
        {"bucket": "bkt", "access_key_id": "AKIA-ID", "secret_access_key": "s3cr3t", "session_token": "tok"},
        "artifact_store",
    )
    for key in ("access_key_id", "secret_access_key", "session_token"):
        assert isinstance(s3[key], SecretStr)
    assert "s3cr3t" not in repr(s3)
    assert s3["create_bucket"] is False and s3["prefix"] == ""
    azure = validate_backend_options(
        registry,
        "artifact_store",
        "azure_blob",
        {"container": "ctr", "connection_string": "AccountKey=k"},
        "artifact_store",
    )
    assert isinstance(azure["connection_string"], SecretStr) and "AccountKey" not in repr(azure)
    described = {
        name: describe_schema(registry.get("artifact_store", name, "").Config) for name in ("s3", "azure_blob")
    }
    assert {k for k, v in described["s3"].items() if v.get("secret")} == {
        "access_key_id",
        "secret_access_key",
        "session_token",
    }
    assert {k for k, v in described["azure_blob"].items() if v.get("secret")} == {"connection_string", "credential"}
    assert described["s3"]["bucket"]["required"] and described["azure_blob"]["container"]["required"]
