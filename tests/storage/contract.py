"""The artifact store contract: one class of tests that every ``ArtifactStore`` passes.

Subclass ``ArtifactStoreContract`` as ``Test<Store>`` and give it a ``store`` fixture that
returns a fresh, empty store; every test below then runs against that store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
from collections.abc import Iterator

import pytest

from mlplatform.core.backends import ArtifactInfo, ArtifactStore
from mlplatform.core.errors import ArtifactNotFound

MiB = 1024 * 1024
LARGE_SIZE = 64 * MiB
READ_CHUNK = 1 * MiB
# A store may read ahead a part or a block at a time; it must never ask for anything near the whole file.
MAX_READ_REQUEST = 16 * MiB


class GeneratedStream(io.RawIOBase):
    """A non-seekable stream of ``size`` pseudo-random bytes, made as they are read.

    Like a request body read from a socket, a read returns at most ``burst`` bytes, however many
    were asked for. It hashes what it hands out (``sha256``) and records the largest read
    requested (``max_request``; a read of everything counts as ``size``), so a test can check that
    a store streamed the data instead of reading it whole.
    """

    def __init__(self, size: int, seed: int = 0, burst: int = 256 * 1024) -> None:
        self.remaining = size
        self.size = size
        self.burst = burst
        self.sha256 = hashlib.sha256()
        self.max_request = 0
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self.size  # "everything" is the worst case we are checking for
        self.max_request = max(self.max_request, size)
        count = min(size, self.remaining, self.burst)
        if count <= 0:
            return b""
        data = self._rng.randbytes(count)
        self.sha256.update(data)
        self.remaining -= count
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def put_bytes(store: ArtifactStore, path: str, data: bytes, with_size: bool = True) -> ArtifactInfo:
    return store.put(path, io.BytesIO(data), len(data) if with_size else None)


def read_all(store: ArtifactStore, path: str) -> bytes:
    with store.open(path) as stream:
        return stream.read()


def listed(store: ArtifactStore, prefix: str = "") -> list[tuple[str, int]]:
    return [(info.path, info.size) for info in store.list(prefix)]


TREE = {
    "other/z.txt": b"z",
    "runs/1-z": b"dash sorts before slash",
    "runs/1/a.txt": b"alpha",
    "runs/1/b/c.txt": b"charlie!",
    "runs/10/x.bin": b"\x00\x01\x02",
    "runs/2/y": b"",
}


class ArtifactStoreContract:
    """put, open, list by prefix, idempotent delete, not-found errors and a large streamed object."""

    @pytest.fixture
    def store(self) -> ArtifactStore:
        raise NotImplementedError("a subclass gives a fresh, empty store")

    @pytest.fixture
    def tree(self, store: ArtifactStore) -> dict[str, bytes]:
        for path, data in sorted(TREE.items(), key=lambda item: item[0][::-1]):  # not in path order
            put_bytes(store, path, data)
        return TREE

    def test_put_then_open_returns_the_bytes(self, store: ArtifactStore) -> None:
        info = put_bytes(store, "runs/1/model.pkl", b"model bytes")
        assert info.path == "runs/1/model.pkl"
        assert info.size == len(b"model bytes")
        assert info.modified is None or (isinstance(info.modified, dt.datetime) and info.modified.tzinfo is not None)
        assert read_all(store, "runs/1/model.pkl") == b"model bytes"

    def test_put_without_a_size_hint(self, store: ArtifactStore) -> None:
        info = put_bytes(store, "no-size.txt", b"0123456789", with_size=False)
        assert info.size == 10
        assert read_all(store, "no-size.txt") == b"0123456789"

    def test_empty_file(self, store: ArtifactStore) -> None:
        assert put_bytes(store, "empty", b"").size == 0
        assert read_all(store, "empty") == b""
        assert listed(store) == [("empty", 0)]

    def test_open_returns_a_readable_binary_stream(self, store: ArtifactStore) -> None:
        put_bytes(store, "f.txt", b"hello world")
        stream = store.open("f.txt")
        try:
            assert stream.readable()
            assert stream.read(5) == b"hello"
            assert stream.read() == b" world"
            assert stream.read(1) == b""
        finally:
            stream.close()
        assert stream.closed

    def test_put_overwrites(self, store: ArtifactStore) -> None:
        put_bytes(store, "a/file.txt", b"a much longer first version")
        info = put_bytes(store, "a/file.txt", b"second")
        assert info.size == 6
        assert read_all(store, "a/file.txt") == b"second"
        assert listed(store) == [("a/file.txt", 6)]

    def test_copy_returns_the_digest_and_keeps_its_bytes_when_the_source_changes(self, store: ArtifactStore) -> None:
        put_bytes(store, "runs/1/model/model.pkl", b"the first model")
        digest = store.copy("runs/1/model/model.pkl", "versions/abc/model.pkl")
        assert digest == hashlib.sha256(b"the first model").hexdigest()
        put_bytes(store, "runs/1/model/model.pkl", b"replaced later")
        assert read_all(store, "versions/abc/model.pkl") == b"the first model"
        store.delete("runs/1")
        assert read_all(store, "versions/abc/model.pkl") == b"the first model"
        assert listed(store) == [("versions/abc/model.pkl", len(b"the first model"))]

    def test_copy_over_an_existing_file_replaces_it(self, store: ArtifactStore) -> None:
        put_bytes(store, "src.bin", b"new")
        put_bytes(store, "dst.bin", b"old and longer")
        assert store.copy("src.bin", "dst.bin") == hashlib.sha256(b"new").hexdigest()
        assert read_all(store, "dst.bin") == b"new"

    def test_copy_of_a_missing_file_raises_artifact_not_found(self, store: ArtifactStore) -> None:
        with pytest.raises(ArtifactNotFound):
            store.copy("nothing/here", "copy")
        assert listed(store) == []

    def test_nested_and_unusual_paths(self, store: ArtifactStore) -> None:
        paths = ["a/b/c/d/e/f/g.txt", "with space/and-dash_underscore.v1.json", "unicode/modèle-ü.bin"]
        for index, path in enumerate(paths):
            put_bytes(store, path, str(index).encode())
        for index, path in enumerate(paths):
            assert read_all(store, path) == str(index).encode()
        assert [path for path, _ in listed(store)] == sorted(paths)

    def test_list_everything_in_path_order_with_sizes(self, store: ArtifactStore, tree: dict[str, bytes]) -> None:
        result = store.list()
        assert isinstance(result, Iterator)
        assert [(info.path, info.size) for info in result] == sorted((p, len(d)) for p, d in tree.items())

    def test_list_by_folder_prefix(self, store: ArtifactStore, tree: dict[str, bytes]) -> None:
        assert listed(store, "runs/1/") == [("runs/1/a.txt", 5), ("runs/1/b/c.txt", 8)]
        assert listed(store, "runs/1/b/") == [("runs/1/b/c.txt", 8)]

    def test_list_prefix_is_a_string_prefix_not_a_folder(self, store: ArtifactStore, tree: dict[str, bytes]) -> None:
        assert [path for path, _ in listed(store, "runs/1")] == [
            "runs/1-z",
            "runs/1/a.txt",
            "runs/1/b/c.txt",
            "runs/10/x.bin",
        ]
        assert [path for path, _ in listed(store, "runs/1/a")] == ["runs/1/a.txt"]

    def test_list_of_an_unknown_prefix_or_an_empty_store_is_empty(self, store: ArtifactStore) -> None:
        assert listed(store) == []
        put_bytes(store, "runs/1/a.txt", b"a")
        assert listed(store, "nothing/") == []
        assert listed(store, "runs/1/a.txt/") == []

    def test_open_missing_raises_artifact_not_found(self, store: ArtifactStore, tree: dict[str, bytes]) -> None:
        for path in ("missing.txt", "runs/1", "runs/1/a.txt/more"):
            with pytest.raises(ArtifactNotFound) as caught:
                store.open(path)
            assert caught.value.status == 404

    def test_delete_a_file_is_idempotent(self, store: ArtifactStore, tree: dict[str, bytes]) -> None:
        store.delete("runs/1/a.txt")
        with pytest.raises(ArtifactNotFound):
            store.open("runs/1/a.txt")
        store.delete("runs/1/a.txt")
        store.delete("never/existed.txt")
        assert "runs/1/a.txt" not in [path for path, _ in listed(store)]
        assert len(listed(store)) == len(tree) - 1

    def test_delete_a_folder_removes_only_what_is_under_it(self, store: ArtifactStore, tree: dict[str, bytes]) -> None:
        store.delete("runs/1")
        assert [path for path, _ in listed(store)] == ["other/z.txt", "runs/1-z", "runs/10/x.bin", "runs/2/y"]
        store.delete("runs/1")
        store.delete("runs")
        assert [path for path, _ in listed(store)] == ["other/z.txt"]

    def test_a_path_can_be_written_again_after_delete(self, store: ArtifactStore) -> None:
        put_bytes(store, "d/x", b"1")
        store.delete("d")
        put_bytes(store, "d/x", b"2")
        assert read_all(store, "d/x") == b"2"

    def test_a_body_that_returns_short_reads_is_stored_whole(self, store: ArtifactStore) -> None:
        # Below any part or block size: the single-request path must not take a short read for the end.
        for size in (3 * MiB, None):
            source = GeneratedStream(3 * MiB, seed=7, burst=64 * 1024)
            info = store.put("short-reads.bin", source, size)
            assert info.size == 3 * MiB
            with store.open("short-reads.bin") as stream:
                assert hashlib.sha256(stream.read()).hexdigest() == source.sha256.hexdigest()

    def test_large_object_is_streamed_both_ways(self, store: ArtifactStore) -> None:
        source = GeneratedStream(LARGE_SIZE, seed=42)
        info = store.put("big/blob.bin", source, LARGE_SIZE)
        assert info.size == LARGE_SIZE
        assert source.remaining == 0
        assert source.max_request <= MAX_READ_REQUEST, f"the store asked for {source.max_request} bytes at once"

        digest, total = hashlib.sha256(), 0
        with store.open("big/blob.bin") as stream:
            while chunk := stream.read(READ_CHUNK):
                assert len(chunk) <= READ_CHUNK
                digest.update(chunk)
                total += len(chunk)
        assert total == LARGE_SIZE
        assert digest.hexdigest() == source.sha256.hexdigest()
        assert listed(store, "big/") == [("big/blob.bin", LARGE_SIZE)]
        store.delete("big/blob.bin")  # frees the emulators' memory now rather than at the end
