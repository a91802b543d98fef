"""Stream adapters that remote artifact stores share (S3, Azure Blob, ...)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any

from mlplatform.core.errors import MLPlatformError

READ_BUFFER = 1024 * 1024


class BodyReader(io.RawIOBase):
    """A raw binary stream over an SDK download (``read(n)``, maybe ``close()``), its errors converted."""

    def __init__(
        self, body: Any, convert: Callable[[Exception], MLPlatformError], errors: tuple[type[Exception], ...]
    ) -> None:
        self._body = body
        self._convert = convert
        self._errors = errors

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except self._errors as exc:
            raise self._convert(exc) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed and hasattr(self._body, "close"):  # an Azure downloader has nothing to close
            self._body.close()
        super().close()


class FullReads(io.RawIOBase):
    """``read(n)`` that returns ``n`` bytes unless the stream ends.

    A request body read from a socket may return fewer; the SDK would take a short read for the
    end of a part (or, before the first part, of the file, and then read the rest whole).
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_BUFFER), b""))
        parts, remaining = [], size
        while remaining > 0:
            data = self._stream.read(remaining)
            if not data:
                break
            parts.append(data)
            remaining -= len(data)
        return b"".join(parts)
