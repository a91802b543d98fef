"""Built-in secret backends: ``env`` (environment variables) and ``file`` (a folder of files)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields

from mlplatform import hookimpl
from mlplatform.core.backends import SecretBackend
from mlplatform.core.errors import SecretAccessDenied, SecretNotFound


class EnvSecrets(SecretBackend):
    """``path#key`` reads the variable ``PREFIX + PATH_KEY`` upper-cased, non-alphanumerics as ``_``:
    ``mlplatform/slack#url`` is ``MLPLATFORM_SLACK_URL`` with the default empty prefix."""

    name = "env"

    class Config(Schema):
        prefix = fields.String(load_default="")

    def variable(self, path: str, key: str) -> str:
        return re.sub(r"[^A-Za-z0-9]", "_", f"{self.options.get('prefix', '')}{path}_{key}").upper()

    def get(self, path: str, key: str) -> str:
        name = self.variable(path, key)
        if name not in os.environ:
            raise SecretNotFound("", f"secret {path}#{key} not found: environment variable {name} is not set")
        return os.environ[name]


class FileSecrets(SecretBackend):
    """``path#key`` reads ``ROOT/path`` as a JSON object and returns its ``key`` (or, if the file is
    ``ROOT/path/key``, its stripped contents: the layout of Docker and Kubernetes secret mounts)."""

    name = "file"

    class Config(Schema):
        root = fields.String(required=True)

    def get(self, path: str, key: str) -> str:
        root = Path(self.options["root"]).expanduser().resolve()
        base = (root / path).resolve()
        if root not in base.parents and base != root:
            raise SecretNotFound("", f"secret path {path!r} is outside the secrets folder")
        try:
            if base.is_dir():
                return (base / key).read_text().strip()
            data: Any = json.loads(base.read_text())
        except FileNotFoundError:
            raise SecretNotFound("", f"secret {path}#{key} not found under {root}") from None
        except PermissionError:
            raise SecretAccessDenied("", f"secret {path}#{key}: permission denied reading it") from None
        except (ValueError, IsADirectoryError):
            raise SecretNotFound("", f"secret {path} is not a JSON object file or a folder of key files") from None
        if not isinstance(data, dict) or key not in data:
            raise SecretNotFound("", f"secret {path} has no key {key!r}")
        return str(data[key])


@hookimpl
def register_secret_backends() -> list[type[SecretBackend]]:
    return [EnvSecrets, FileSecrets]
