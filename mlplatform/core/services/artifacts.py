"""Run artifacts: confined paths, streamed uploads with a size limit, streamed downloads.

Paths are relative to the run's ``artifact_prefix`` in the platform's artifact store. The
registry and monitoring store their files through the same functions.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from mlplatform.core.backends import ArtifactInfo
from mlplatform.core.errors import ArtifactNotFound, InvalidInput, PayloadTooLarge

if TYPE_CHECKING:
    from mlplatform.core.backends import ArtifactStore

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH = 1000
#: One file or folder name: file systems stop at 255 bytes.
MAX_NAME_BYTES = 255


def normalise_path(path: str, *, allow_empty: bool = False) -> str:
    """A clean relative ``a/b/c`` path, or ``InvalidInput`` naming what is wrong with it."""

    def bad(reason: str) -> InvalidInput:
        return InvalidInput(f"artifact path {path!r} {reason}", errors={"path": [reason]})

    if "\\" in path:
        raise bad("contains a backslash; use '/'")
    if path.startswith("/"):
        raise bad("is absolute; give a path relative to the run")
    if _CONTROL.search(path):
        raise bad("contains control characters")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise bad("contains '..'")
    clean = "/".join(parts)
    if not clean and not allow_empty:
        raise bad("is empty")
    if len(clean) > MAX_PATH:
        raise bad(f"is longer than {MAX_PATH} characters")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
        raise bad(f"has a file or folder name longer than {MAX_NAME_BYTES} bytes")
    return clean


class LimitedStream:
    """Reads through to ``stream`` and raises ``PayloadTooLarge`` past ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size if size is not None and size >= 0 else self.limit + 1 - self.read_bytes)
        self.read_bytes += len(chunk)
        if self.read_bytes > self.limit:
            raise PayloadTooLarge(
                f"artifact is larger than the limit of {self.limit} bytes (tracking.limits.max_artifact_bytes)"
            )
        return chunk


@dataclass(frozen=True)
class Download:
    stream: IO[bytes]
    size: int
    content_type: str


def upload(
    store: ArtifactStore, prefix: str, path: str, stream: IO[bytes], *, size: int | None, limit: int
) -> ArtifactInfo:
    path = normalise_path(path)
    if size is not None and size > limit:
        raise PayloadTooLarge(
            f"artifact is larger than the limit of {limit} bytes (tracking.limits.max_artifact_bytes)"
        )
    info = store.put(f"{prefix}{path}", LimitedStream(stream, limit), size)  # type: ignore[arg-type]
    return ArtifactInfo(path, info.size, info.modified)


def download(store: ArtifactStore, prefix: str, path: str) -> Download:
    path = normalise_path(path)
    full = f"{prefix}{path}"
    info = next((item for item in store.list(full) if item.path == full), None)
    if info is None:
        raise ArtifactNotFound(f"artifact {path!r} does not exist")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return Download(store.open(full), info.size, content_type)


def listing(store: ArtifactStore, prefix: str, path_prefix: str = "") -> Iterator[ArtifactInfo]:
    """Files under ``path_prefix`` (relative to the run), with paths relative to the run."""
    path_prefix = normalise_path(path_prefix, allow_empty=True) if path_prefix else ""
    for item in store.list(f"{prefix}{path_prefix}"):
        yield ArtifactInfo(item.path[len(prefix) :], item.size, item.modified)
