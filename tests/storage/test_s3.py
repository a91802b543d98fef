"""The ``s3`` store against the contract on moto's S3 server, plus S3-specific behaviour."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from mlplatform.core.errors import ArtifactNotFound, BackendError
from tests.conftest import free_port
from tests.storage.conftest import S3_KEYS, MotoServer, unique_name
from tests.storage.contract import ArtifactStoreContract, listed, put_bytes, read_all


class TestS3Store(ArtifactStoreContract):
    @pytest.fixture
    def store(self, make_s3_store: Callable[..., Any]) -> Any:
        # A small part size so the large object really goes up as a multipart upload.
        return make_s3_store(
            bucket=unique_name("s3"), prefix="/mlplatform/", create_bucket=True, chunk_size=8 * 1024 * 1024
        )


def test_objects_are_keyed_under_the_prefix_and_prefixes_are_isolated(
    make_s3_store: Callable[..., Any], moto_server: MotoServer
) -> None:
    bucket = unique_name("s3")
    team_a = make_s3_store(bucket=bucket, prefix="team-a", create_bucket=True)
    team_b = make_s3_store(bucket=bucket, prefix="team-b/", create_bucket=True)  # the bucket exists: fine
    put_bytes(team_a, "runs/1/model.pkl", b"a")
    put_bytes(team_b, "runs/1/model.pkl", b"bb")
    keys = [item["Key"] for item in moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["team-a/runs/1/model.pkl", "team-b/runs/1/model.pkl"]
    assert listed(team_a) == [("runs/1/model.pkl", 1)]
    team_a.delete("")
    assert listed(team_a) == []
    assert read_all(team_b, "runs/1/model.pkl") == b"bb"


def test_a_store_without_a_prefix_uses_the_whole_bucket(
    make_s3_store: Callable[..., Any], moto_server: MotoServer
) -> None:
    bucket = unique_name("s3")
    store = make_s3_store(bucket=bucket, create_bucket=True)
    put_bytes(store, "top.txt", b"t")
    assert [item["Key"] for item in moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]] == ["top.txt"]
    assert listed(store) == [("top.txt", 1)]


def test_folder_markers_are_not_listed_but_are_deleted(
    make_s3_store: Callable[..., Any], moto_server: MotoServer
) -> None:
    bucket = unique_name("s3")
    store = make_s3_store(bucket=bucket, prefix="p", create_bucket=True)
    moto_server.client().put_object(Bucket=bucket, Key="p/runs/1/", Body=b"")
    put_bytes(store, "runs/1/a", b"a")
    assert listed(store) == [("runs/1/a", 1)]
    store.delete("runs/1")
    assert "Contents" not in moto_server.client().list_objects_v2(Bucket=bucket)


def test_a_missing_bucket_is_a_backend_error_that_says_what_to_do(make_s3_store: Callable[..., Any]) -> None:
    bucket = unique_name("nope")
    store = make_s3_store(bucket=bucket)
    with pytest.raises(BackendError) as caught:
        put_bytes(store, "x", b"1")
    assert not isinstance(caught.value, ArtifactNotFound)
    assert bucket in caught.value.message and "create_bucket" in caught.value.message
    with pytest.raises(BackendError, match="does not exist"):
        list(store.list())


def test_an_unreachable_endpoint_is_a_backend_error_without_credentials() -> None:
    from plugins_contrib.s3.store import S3ArtifactStore

    store = S3ArtifactStore(
        S3ArtifactStore.Config().load(
            {
                "bucket": "unreachable",
                "endpoint_url": f"http://127.0.0.1:{free_port()}",
                "region": "us-east-1",
                "max_attempts": 1,
                **S3_KEYS,
            }
        )
    )
    try:
        with pytest.raises(BackendError) as caught:
            store.open("x")
    finally:
        store.close()
    message = caught.value.message
    assert "unreachable" in message
    assert S3_KEYS["secret_access_key"] not in message and S3_KEYS["access_key_id"] not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_without_boto3_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins_contrib.s3.store import S3ArtifactStore

    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ImportError, match=r"pip install 'mlplatform\[s3\]'"):
        S3ArtifactStore({"bucket": "bkt"})
    assert "mlplatform[s3]" in S3ArtifactStore.install_hint
