"""The vault backend against a real OpenBao dev server: reads, errors, auth, cache, renewal."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from mlplatform.core.errors import BackendError, ConfigError, SecretAccessDenied, SecretNotFound
from plugins_contrib.vault.backend import VaultUnavailable
from tests.conftest import free_port
from tests.secrets.conftest import BaoServer

Writer = Callable[[str, dict[str, Any]], None]


# --- reading with a token ----------------------------------------------------------------


def test_reads_a_secret_with_token_auth(
    make_backend: Callable[..., Any], write_secret: Writer, secret_path: str
) -> None:
    write_secret(secret_path, {"password": "hunter2", "user": "svc"})
    backend = make_backend()
    assert backend.get(secret_path, "password") == "hunter2"
    assert backend.get(f"/{secret_path}/", "user") == "svc"


def test_non_string_values_come_back_as_json(
    make_backend: Callable[..., Any], write_secret: Writer, secret_path: str
) -> None:
    write_secret(secret_path, {"port": 5432, "hosts": ["a", "b"]})
    backend = make_backend()
    assert backend.get(secret_path, "port") == "5432"
    assert backend.get(secret_path, "hosts") == '["a", "b"]'


def test_reads_the_latest_kv_version(make_backend: Callable[..., Any], write_secret: Writer, secret_path: str) -> None:
    backend = make_backend(cache_ttl=0)
    write_secret(secret_path, {"password": "v1"})
    assert backend.get(secret_path, "password") == "v1"
    write_secret(secret_path, {"password": "v2"})
    write_secret(secret_path, {"password": "v3"})
    assert backend.get(secret_path, "password") == "v3"


def test_missing_path_is_secret_not_found(make_backend: Callable[..., Any], secret_path: str) -> None:
    with pytest.raises(SecretNotFound, match=f"{secret_path}#password not found"):
        make_backend().get(secret_path, "password")


def test_deleted_latest_version_is_secret_not_found(
    bao: BaoServer, make_backend: Callable[..., Any], write_secret: Writer, secret_path: str
) -> None:
    write_secret(secret_path, {"password": "gone"})
    bao.admin.secrets.kv.v2.delete_latest_version_of_secret(path=secret_path, mount_point="secret")
    with pytest.raises(SecretNotFound, match="latest version is deleted") as caught:
        make_backend().get(secret_path, "password")
    assert "gone" not in str(caught.value)


def test_missing_key_is_secret_not_found(
    make_backend: Callable[..., Any], write_secret: Writer, secret_path: str
) -> None:
    write_secret(secret_path, {"user": "svc-user-value"})
    with pytest.raises(SecretNotFound) as caught:
        make_backend().get(secret_path, "password")
    message = str(caught.value)
    assert f"{secret_path}#password" in message and "no key 'password'" in message and "user" in message
    assert "svc-user-value" not in message


def test_unknown_mount_is_an_error(make_backend: Callable[..., Any], secret_path: str) -> None:
    with pytest.raises(ConfigError, match=f"{secret_path}#k"):
        make_backend(mount="no-such-mount").get(secret_path, "k")


# --- refusals and outages ----------------------------------------------------------------


def test_read_outside_the_tokens_policy_is_denied(
    make_backend: Callable[..., Any], write_secret: Writer, policy_token: Callable[..., str]
) -> None:
    allowed, forbidden = f"tests/ok-{secrets.token_hex(4)}", f"tests/no-{secrets.token_hex(4)}"
    write_secret(allowed, {"k": "allowed-value"})
    write_secret(forbidden, {"k": "forbidden-value"})
    backend = make_backend(token=policy_token(allowed))
    assert backend.get(allowed, "k") == "allowed-value"
    with pytest.raises(SecretAccessDenied, match=f"{forbidden}#k denied") as caught:
        backend.get(forbidden, "k")
    assert "forbidden-value" not in str(caught.value)


def test_invalid_token_is_denied(make_backend: Callable[..., Any], write_secret: Writer, secret_path: str) -> None:
    write_secret(secret_path, {"k": "v"})
    bogus = "s." + secrets.token_hex(12)
    with pytest.raises(SecretAccessDenied) as caught:
        make_backend(token=bogus).get(secret_path, "k")
    assert bogus not in str(caught.value)


def test_unreachable_server_is_a_backend_error() -> None:
    from plugins_contrib.vault.backend import VaultSecrets

    options = VaultSecrets.Config().load(
        {"url": f"http://127.0.0.1:{free_port()}", "token": "t0ken-value", "timeout": 2}
    )
    backend = VaultSecrets(options)
    try:
        with pytest.raises(VaultUnavailable, match="unreachable") as caught:
            backend.get("mlplatform/db", "password")
    finally:
        backend.close()
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, BackendError)
    assert caught.value.status == 502
    assert "mlplatform/db#password" in str(caught.value) and "t0ken-value" not in str(caught.value)


# --- AppRole -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def approle_enabled(bao: BaoServer) -> str:
    bao.admin.sys.enable_auth_method("approle")
    return "approle"


@pytest.fixture
def approle(bao: BaoServer, approle_enabled: str) -> Callable[..., dict[str, str]]:
    """Create a role whose tokens may read the given paths; returns role_id and secret_id."""

    def make(*paths: str, **role_options: Any) -> dict[str, str]:
        role = f"role-{secrets.token_hex(4)}"
        policy = "\n".join(f'path "secret/data/{p}" {{ capabilities = ["read"] }}' for p in paths)
        bao.admin.sys.create_or_update_policy(name=role, policy=policy)
        bao.admin.auth.approle.create_or_update_approle(role, token_policies=[role], **role_options)
        return {
            "role_id": bao.admin.auth.approle.read_role_id(role)["data"]["role_id"],
            "secret_id": bao.admin.auth.approle.generate_secret_id(role)["data"]["secret_id"],
        }

    return make


def test_approle_login_reads_a_secret(
    make_backend: Callable[..., Any], write_secret: Writer, secret_path: str, approle: Callable[..., dict[str, str]]
) -> None:
    write_secret(secret_path, {"password": "via-approle"})
    backend = make_backend(auth_method="approle", **approle(secret_path))
    assert backend.get(secret_path, "password") == "via-approle"


def test_approle_with_a_wrong_secret_id_is_denied(
    make_backend: Callable[..., Any], write_secret: Writer, secret_path: str, approle: Callable[..., dict[str, str]]
) -> None:
    write_secret(secret_path, {"password": "x"})
    credentials = {**approle(secret_path), "secret_id": "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(SecretAccessDenied, match=f"{secret_path}#password: AppRole login") as caught:
        make_backend(auth_method="approle", **credentials).get(secret_path, "password")
    assert credentials["role_id"] not in str(caught.value)


def test_approle_logs_in_again_when_its_token_expired(
    make_backend: Callable[..., Any], write_secret: Writer, secret_path: str, approle: Callable[..., dict[str, str]]
) -> None:
    write_secret(secret_path, {"password": "first"})
    backend = make_backend(
        auth_method="approle", cache_ttl=0, **approle(secret_path, token_ttl="2s", token_max_ttl="2s")
    )
    assert backend.get(secret_path, "password") == "first"
    time.sleep(2.5)
    write_secret(secret_path, {"password": "second"})
    assert backend.get(secret_path, "password") == "second"


def test_approle_logs_in_again_when_its_token_is_revoked(
    bao: BaoServer,
    make_backend: Callable[..., Any],
    write_secret: Writer,
    secret_path: str,
    approle: Callable[..., dict[str, str]],
) -> None:
    write_secret(secret_path, {"password": "p"})
    backend = make_backend(auth_method="approle", cache_ttl=0, **approle(secret_path))
    assert backend.get(secret_path, "password") == "p"
    bao.admin.auth.token.revoke(backend._client.token)
    assert backend.get(secret_path, "password") == "p"


# --- cache and renewal -----------------------------------------------------------------------


def test_cache_serves_within_ttl_and_refreshes_after(
    make_backend: Callable[..., Any], write_secret: Writer, secret_path: str
) -> None:
    backend = make_backend(cache_ttl=2)
    write_secret(secret_path, {"password": "old"})
    assert backend.get(secret_path, "password") == "old"
    write_secret(secret_path, {"password": "new"})
    assert backend.get(secret_path, "password") == "old"
    time.sleep(2.2)
    assert backend.get(secret_path, "password") == "new"


def test_a_short_lived_renewable_token_is_renewed(
    bao: BaoServer,
    make_backend: Callable[..., Any],
    write_secret: Writer,
    secret_path: str,
    policy_token: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mlplatform.secrets.vault")
    write_secret(secret_path, {"password": "renewed"})
    token = policy_token(secret_path, ttl="4s", explicit_max_ttl="60s", renewable=True)
    backend = make_backend(token=token, cache_ttl=0)
    assert backend.get(secret_path, "password") == "renewed"
    # Each read below falls in the second half of the lease, so it renews first; the last
    # one is past the token's original 4 s and only works because of the renewals.
    for _ in range(2):
        time.sleep(2.5)
        assert backend.get(secret_path, "password") == "renewed"
    assert "renewed the vault token" in caplog.text
    assert bao.admin.auth.token.lookup(token)["data"]["ttl"] > 0
