"""Real object-store servers for the artifact store tests, each started once per session.

- S3: moto's ``ThreadedMotoServer`` (``pip install 'moto[server]'``) in this process, on a port
  the OS picks, stopped at the end of the session.
- Azure Blob: Azurite's blob service (``npm ci`` at the repository root installs it under
  ``node_modules/.bin``) as a subprocess on a free port, in memory, with
  ``--skipApiVersionCheck`` so the SDK may be newer than the emulator, its working folder a
  temporary one; stopped by its pid.

A missing package or binary skips the tests on a developer's machine and fails them under
``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import free_port, service_missing
from tests.servers import stop_process, wait_until_up

# The contract's asserts live outside test modules; have pytest explain their failures too.
pytest.register_assert_rewrite("tests.storage.contract")

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
S3_KEYS = {"access_key_id": "AKIAMLPLATFORMTEST", "secret_access_key": "moto-secret-key-for-tests"}
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def unique_name(kind: str) -> str:
    """A bucket or container name that no other test uses (lower case, 3-63 characters)."""
    return f"mlp-{kind}-{uuid.uuid4().hex[:12]}"


# --- S3 (moto) -----------------------------------------------------------------------------------


@dataclass
class MotoServer:
    endpoint_url: str

    def client(self) -> Any:
        """A plain boto3 client on the server, for arranging and inspecting tests."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["access_key_id"],
            aws_secret_access_key=S3_KEYS["secret_access_key"],
        )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    try:
        import boto3  # noqa: F401
    except ImportError:
        service_missing("boto3 is not installed: pip install 'mlplatform[s3]'")
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        service_missing("moto's server is not installed: pip install 'moto[server]'")
    # Port 0: the OS picks a free port at bind time, so there is no race with other processes.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def make_s3_store(moto_server: MotoServer) -> Iterator[Callable[..., Any]]:
    """Build an S3ArtifactStore on the moto server: ``make_s3_store(bucket=..., prefix=...)``.

    Options are validated by the store's schema as core does; every store built is emptied
    and closed after the test."""
    from plugins_contrib.s3.store import S3ArtifactStore

    built: list[S3ArtifactStore] = []

    def make(**options: Any) -> S3ArtifactStore:
        options = {"endpoint_url": moto_server.endpoint_url, "region": "us-east-1", **S3_KEYS, **options}
        store = S3ArtifactStore(S3ArtifactStore.Config().load(options))
        built.append(store)
        return store

    yield make
    for store in built:
        with contextlib.suppress(Exception):  # a test may have built a store on a bucket that does not exist
            store.delete("")
        store.close()


# --- Azure Blob (Azurite) --------------------------------------------------------------------------


@dataclass
class AzuriteServer:
    blob_url: str  # the account URL: http://127.0.0.1:<port>/devstoreaccount1
    pid: int
    log_file: Path

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_url};"
        )


def azurite_binary() -> str | None:
    """``node_modules/.bin/azurite-blob`` at the repository root, else one on PATH."""
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("azurite-blob")


def _start_azurite(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log_file = workdir / f"azurite-{port}.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
    return process, f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}", log_file


def _wait_listening(process: subprocess.Popen[bytes], blob_url: str) -> bool:
    # any answer (403: unsigned) means it is up
    return wait_until_up(process, lambda: requests.get(f"{blob_url}?comp=list", timeout=1) is not None, START_TIMEOUT)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    binary = azurite_binary()
    if binary is None:
        service_missing("azurite-blob is not installed: run `npm ci` at the repository root (see package.json)")
    try:
        import azure.storage.blob  # noqa: F401
    except ImportError:
        service_missing("azure-storage-blob is not installed: pip install 'mlplatform[azure]'")
    workdir = tmp_path_factory.mktemp("azurite")
    for _attempt in range(3):  # the free port may be taken between choosing and binding it
        process, blob_url, log_file = _start_azurite(binary, workdir)
        if _wait_listening(process, blob_url):
            break
        stop_process(process)
    else:
        pytest.fail(f"azurite-blob did not start; its log:\n{log_file.read_text()[-3000:]}")
    try:
        yield AzuriteServer(blob_url=blob_url, pid=process.pid, log_file=log_file)
    finally:
        stop_process(process)


@pytest.fixture
def make_azure_store(azurite: AzuriteServer) -> Iterator[Callable[..., Any]]:
    """Build an AzureBlobArtifactStore on Azurite: ``make_azure_store(container=..., prefix=...)``.

    Without ``account_url`` the store gets Azurite's connection string. Options are validated
    by the store's schema as core does; every store built is emptied and closed after the test."""
    from plugins_contrib.azure_blob.store import AzureBlobArtifactStore

    built: list[AzureBlobArtifactStore] = []

    def make(**options: Any) -> AzureBlobArtifactStore:
        if "account_url" not in options:
            options = {"connection_string": azurite.connection_string, **options}
        options = {"max_attempts": 1, **options}
        store = AzureBlobArtifactStore(AzureBlobArtifactStore.Config().load(options))
        built.append(store)
        return store

    yield make
    for store in built:
        with contextlib.suppress(Exception):  # a test may have built a store on a container that does not exist
            store.delete("")
        store.close()
