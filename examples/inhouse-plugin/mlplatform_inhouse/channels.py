"""``jsonl_file``: appends each alert as one JSON line to a file, for audit trails and tailing."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields

from mlplatform.core.backends import Alert, AlertChannel
from mlplatform.core.errors import BackendError


class JsonlFileChannel(AlertChannel):
    """Appends ``alert.to_dict()`` as one JSON line to ``path`` (relative paths are under the
    platform's ``data_dir``); missing folders are created.

    Each line goes out in a single ``O_APPEND`` write, so several workers can share the file
    without interleaving lines. A write failure raises ``BackendError``.
    """

    name = "jsonl_file"

    class Config(Schema):
        path = fields.String(required=True, metadata={"description": "file to append to"})

    def __init__(self, options: Any = None, platform: Any = None) -> None:
        super().__init__(options, platform)
        path = Path(self.options["path"]).expanduser()
        if not path.is_absolute() and platform is not None:
            path = Path(platform.data_dir) / path
        self.path = path
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        line = (json.dumps(alert.to_dict(), sort_keys=True, default=str) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise BackendError(f"jsonl_file channel cannot write {self.path}: {exc.strerror}") from None
