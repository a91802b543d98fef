"""Built-in ``local`` artifact store: files under a folder (default: ``<data_dir>/artifacts``).

An artifact ``runs/12/model.pkl`` is the file ``<root>/runs/12/model.pkl``. Writes go to a
temporary file beside the target and are renamed into place, so a reader never sees half a
file. ``copy`` is a hard link (``put`` always writes a new file and renames it over the old
one, so a replaced source never changes its copies), falling back to a byte copy across
file systems. Listing walks only the folder the prefix points into, one directory at a time, and
yields in path order without collecting the whole tree.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from marshmallow import Schema, fields

from mlplatform import hookimpl
from mlplatform.core.backends import ArtifactInfo, ArtifactStore
from mlplatform.core.errors import ArtifactNotFound, Conflict
from mlplatform.core.model_loading import file_sha256

CHUNK = 1024 * 1024
TEMP_PREFIX = ".upload-"


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files under ``root``; see the module docstring."""

    name = "local"

    class Config(Schema):
        root = fields.String(load_default="artifacts", metadata={"description": "folder; relative to data_dir"})

    def __init__(self, options: Any = None, platform: Any = None) -> None:
        super().__init__(options, platform)
        root = Path(self.options.get("root", "artifacts")).expanduser()
        if not root.is_absolute() and platform is not None:
            root = platform.data_dir / root
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"<LocalArtifactStore {self.root}>"

    def _file(self, path: str) -> Path:
        return self.root / path

    def put(self, path: str, stream: IO[bytes], size: int | None = None) -> ArtifactInfo:
        target = self._writable(path)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, CHUNK)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _move_into_place(Path(tmp), target, path)
        return self._info(path, target.stat())

    def copy(self, source: str, destination: str) -> str:
        src = self._file(source)
        if not src.is_file():
            raise ArtifactNotFound(f"artifact {source!r} does not exist")
        target = self._writable(destination)
        linked = target.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            os.link(src, linked)
        except OSError:  # another file system, or one without hard links
            return super().copy(source, destination)
        _move_into_place(linked, target, destination)
        return file_sha256(target)

    def _writable(self, path: str) -> Path:
        """The file for ``path``, its parent folders created; ``Conflict`` if one of them is a file."""
        target = self._file(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise Conflict(f"cannot write artifact {path!r}: a parent folder of it is a file") from None
        return target

    def open(self, path: str) -> IO[bytes]:
        try:
            return self._file(path).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(f"artifact {path!r} does not exist") from None

    def list(self, prefix: str = "") -> Iterator[ArtifactInfo]:
        folder = prefix.rpartition("/")[0]
        for rel, entry in _walk(self._file(folder), f"{folder}/" if folder else "", prefix):
            try:
                yield self._info(rel, entry.stat())
            except FileNotFoundError:  # deleted while we listed
                continue

    def delete(self, path: str) -> None:
        target = self._file(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
            self.root.mkdir(parents=True, exist_ok=True)  # delete("") empties the store, keeps its folder
        else:
            with contextlib.suppress(NotADirectoryError):  # a parent is a file: nothing is stored there
                target.unlink(missing_ok=True)

    @staticmethod
    def _info(path: str, stat: os.stat_result) -> ArtifactInfo:
        return ArtifactInfo(path, stat.st_size, dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC))


def _move_into_place(temp: Path, target: Path, path: str) -> None:
    """Rename ``temp`` over ``target`` (readers see the old file or the new one); removes ``temp`` on failure."""
    try:
        os.replace(temp, target)
    except IsADirectoryError:
        temp.unlink(missing_ok=True)
        raise Conflict(f"cannot write artifact {path!r}: it is a folder of other artifacts") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _walk(folder: Path, rel: str, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Regular files under ``folder`` whose path (``rel`` + name) starts with ``prefix``, in path order.

    Siblings are sorted by name, with ``/`` appended to folder names: every path under folder
    ``a`` starts with ``a/``, so this depth-first order is exactly the string order of full paths
    (``a-b`` before ``a/c``).
    """
    try:
        with os.scandir(folder) as it:
            entries = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in it]
    except (FileNotFoundError, NotADirectoryError):
        return
    for key, entry in sorted(entries, key=lambda item: item[0]):
        path = rel + key
        if key.endswith("/"):
            if path.startswith(prefix) or prefix.startswith(path):
                yield from _walk(Path(entry.path), path, prefix)
        elif (
            path.startswith(prefix) and not entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False)
        ):
            yield path, entry


@hookimpl
def register_artifact_stores() -> list[type[ArtifactStore]]:
    return [LocalArtifactStore]
