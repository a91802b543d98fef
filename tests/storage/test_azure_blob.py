"""The ``azure_blob`` store against the contract on Azurite, plus Azure-specific behaviour."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import Any

import pytest

from mlplatform.core.errors import ArtifactNotFound, BackendError
from tests.storage.conftest import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, unique_name
from tests.storage.contract import ArtifactStoreContract, listed, put_bytes, read_all


class TestAzureBlobStore(ArtifactStoreContract):
    @pytest.fixture
    def store(self, make_azure_store: Callable[..., Any]) -> Any:
        # A small block size so the large object really goes up as staged blocks.
        return make_azure_store(
            container=unique_name("az"), prefix="mlplatform/", create_container=True, chunk_size=4 * 1024 * 1024
        )


def test_account_url_with_an_account_key(make_azure_store: Callable[..., Any], azurite: AzuriteServer) -> None:
    container = unique_name("az")
    store = make_azure_store(
        account_url=azurite.blob_url, credential=AZURITE_KEY, container=container, create_container=True
    )
    put_bytes(store, "runs/1/model.pkl", b"model")
    assert read_all(store, "runs/1/model.pkl") == b"model"
    assert listed(store) == [("runs/1/model.pkl", 5)]


def test_pinned_api_version(make_azure_store: Callable[..., Any]) -> None:
    store = make_azure_store(container=unique_name("az"), create_container=True, api_version="2021-12-02")
    put_bytes(store, "v.txt", b"pinned")
    assert read_all(store, "v.txt") == b"pinned"


def test_blobs_are_named_under_the_prefix_and_prefixes_are_isolated(
    make_azure_store: Callable[..., Any], azurite: AzuriteServer
) -> None:
    from azure.storage.blob import ContainerClient

    container = unique_name("az")
    team_a = make_azure_store(container=container, prefix="team-a", create_container=True)
    team_b = make_azure_store(container=container, prefix="/team-b/", create_container=True)  # exists: fine
    put_bytes(team_a, "runs/1/model.pkl", b"a")
    put_bytes(team_b, "runs/1/model.pkl", b"bb")
    with ContainerClient.from_connection_string(azurite.connection_string, container) as client:
        assert [blob.name for blob in client.list_blobs()] == ["team-a/runs/1/model.pkl", "team-b/runs/1/model.pkl"]
    team_a.delete("")
    assert listed(team_a) == []
    assert read_all(team_b, "runs/1/model.pkl") == b"bb"


def test_a_missing_container_is_a_backend_error_that_says_what_to_do(make_azure_store: Callable[..., Any]) -> None:
    container = unique_name("nope")
    store = make_azure_store(container=container)
    with pytest.raises(BackendError) as caught:
        put_bytes(store, "x", b"1")
    assert not isinstance(caught.value, ArtifactNotFound)
    assert container in caught.value.message and "create_container" in caught.value.message
    with pytest.raises(BackendError, match="does not exist"):
        store.open("x")


def test_a_wrong_account_key_is_refused_without_showing_it(
    make_azure_store: Callable[..., Any], azurite: AzuriteServer
) -> None:
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
    store = make_azure_store(account_url=azurite.blob_url, credential=wrong_key, container=unique_name("az"))
    with pytest.raises(BackendError) as caught:
        put_bytes(store, "x", b"1")
    assert "refused" in caught.value.message
    assert wrong_key not in caught.value.message and AZURITE_KEY not in caught.value.message


def test_a_sas_token_credential_and_a_refusal_that_does_not_show_it(
    make_azure_store: Callable[..., Any], azurite: AzuriteServer
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = unique_name("az")
    make_azure_store(container=container, create_container=True)
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)

    def sas(permission: ContainerSasPermissions) -> str:
        return generate_container_sas(
            AZURITE_ACCOUNT, container, account_key=AZURITE_KEY, permission=permission, expiry=expiry
        )

    writer = make_azure_store(
        account_url=azurite.blob_url,
        container=container,
        credential=sas(ContainerSasPermissions(read=True, write=True, list=True, delete=True)),
    )
    put_bytes(writer, "runs/1/m", b"sas")
    put_bytes(writer, "runs/2/m", b"sas")
    assert listed(writer) == [("runs/1/m", 3), ("runs/2/m", 3)]
    writer.delete("runs/2")  # a batch delete, on the SAS token
    assert listed(writer) == [("runs/1/m", 3)]

    read_only_sas = sas(ContainerSasPermissions(read=True, list=True))
    reader = make_azure_store(account_url=azurite.blob_url, container=container, credential=read_only_sas)
    assert read_all(reader, "runs/1/m") == b"sas"
    with pytest.raises(BackendError) as caught:
        put_bytes(reader, "runs/2/m", b"no")
    signature = dict(part.split("=", 1) for part in read_only_sas.split("&"))["sig"]
    assert "refused" in caught.value.message
    assert signature not in caught.value.message and read_only_sas not in caught.value.message


def test_a_malformed_connection_string_does_not_show_it(make_azure_store: Callable[..., Any]) -> None:
    secret = "AccountKey=c2VjcmV0;Nonsense"
    with pytest.raises(BackendError) as caught:
        make_azure_store(connection_string=secret, container="c-x-y")
    assert "c2VjcmV0" not in caught.value.message


def test_without_the_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins_contrib.azure_blob.store import AzureBlobArtifactStore

    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)
    with pytest.raises(ImportError, match=r"pip install 'mlplatform\[azure\]'"):
        AzureBlobArtifactStore({"container": "ctr", "connection_string": "x"})
    assert "mlplatform[azure]" in AzureBlobArtifactStore.install_hint
