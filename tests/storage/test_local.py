"""The built-in ``local`` store against the contract, plus what only a filesystem can get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform.core.errors import Conflict
from mlplatform.plugins.local_storage import LocalArtifactStore
from tests.storage.contract import ArtifactStoreContract, listed, put_bytes


class TestLocalStore(ArtifactStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalArtifactStore:
        return LocalArtifactStore({"root": str(tmp_path / "artifacts")})


def test_files_land_under_the_root_and_temporary_files_are_not_listed(tmp_path: Path) -> None:
    store = LocalArtifactStore({"root": str(tmp_path)})
    put_bytes(store, "runs/1/model.pkl", b"m")
    assert (tmp_path / "runs" / "1" / "model.pkl").read_bytes() == b"m"
    (tmp_path / "runs" / "1" / ".upload-abc123").write_bytes(b"half a file")
    assert listed(store) == [("runs/1/model.pkl", 1)]


def test_a_file_and_a_folder_cannot_share_a_path(tmp_path: Path) -> None:
    store = LocalArtifactStore({"root": str(tmp_path)})
    put_bytes(store, "a/b", b"file")
    with pytest.raises(Conflict):
        put_bytes(store, "a/b/c", b"under a file")
    with pytest.raises(Conflict):
        put_bytes(store, "a", b"over a folder")
    assert listed(store) == [("a/b", 4)]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".upload-")]


def test_delete_everything_keeps_the_root(tmp_path: Path) -> None:
    store = LocalArtifactStore({"root": str(tmp_path / "root")})
    put_bytes(store, "x/y", b"1")
    store.delete("")
    assert (tmp_path / "root").is_dir()
    assert listed(store) == []
