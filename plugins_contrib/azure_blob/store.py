"""``azure_blob``: artifacts as block blobs in one Azure Storage container, through azure-storage-blob.

An artifact ``runs/12/model.pkl`` is the blob ``<prefix>/runs/12/model.pkl``. The client is
built from a ``connection_string``, or from an ``account_url`` with a ``credential`` (an
account key or a SAS token); both are usually ``{$secret: ...}`` references. Uploads are
staged as blocks of ``chunk_size`` bytes (a single request below that size) and downloads are
fetched a chunk at a time as the returned stream is read, so no file is ever held whole.
``api_version`` pins the service version the client speaks, e.g. for an emulator that lags
behind the SDK.

Errors are ``ArtifactNotFound`` for a missing blob and ``BackendError`` for anything else;
messages name the container and the path, never a key, a SAS token or a connection string.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mlplatform.core.backends import ArtifactInfo, ArtifactStore
from mlplatform.core.errors import ArtifactNotFound, BackendError, MLPlatformError
from mlplatform.core.streams import READ_BUFFER, BodyReader, FullReads

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

INSTALL_HINT = "pip install 'mlplatform[azure]'"
MiB = 1024 * 1024
DELETE_BATCH = 256  # the Blob Batch API's limit per request
DENIED_CODES = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "InsufficientAccountPermissions",
}
_SAS_SIGNATURE = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)


class AzureBlobConfig(Schema):
    container = fields.String(required=True, validate=validate.Length(min=3, max=63))
    prefix = fields.String(
        load_default="", metadata={"description": "blob name prefix for every artifact, e.g. mlplatform/"}
    )
    connection_string = fields.String(
        load_default=None, metadata={"secret": True, "description": "or account_url and credential"}
    )
    account_url = fields.Url(
        load_default=None,
        require_tld=False,
        schemes={"http", "https"},
        metadata={"description": "e.g. https://<account>.blob.core.windows.net"},
    )
    credential = fields.String(
        load_default=None, metadata={"secret": True, "description": "account key or SAS token, with account_url"}
    )
    create_container = fields.Boolean(
        load_default=False, metadata={"description": "create the container at start-up if missing"}
    )
    api_version = fields.String(
        load_default=None, metadata={"description": "pin the storage service version, e.g. 2021-12-02"}
    )
    chunk_size = fields.Integer(
        load_default=8 * MiB,
        validate=validate.Range(min=1 * MiB, max=4000 * MiB),
        metadata={"description": "bytes per staged block and per download request"},
    )
    max_concurrency = fields.Integer(
        load_default=4, validate=validate.Range(min=1, max=64), metadata={"description": "blocks in flight"}
    )
    max_attempts = fields.Integer(
        load_default=4, validate=validate.Range(min=1, max=20), metadata={"description": "tries per request"}
    )

    @validates_schema
    def _client_source(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("connection_string") and data.get("account_url"):
            raise ValidationError("give connection_string or account_url, not both", field_name="account_url")
        if not data.get("connection_string") and not data.get("account_url"):
            raise ValidationError("required unless account_url is set", field_name="connection_string")
        if data.get("credential") and not data.get("account_url"):
            raise ValidationError(
                "only used with account_url; a connection string carries its own", field_name="credential"
            )


class AzureBlobArtifactStore(ArtifactStore):
    """Artifacts as block blobs in one container under an optional prefix; see the module docstring."""

    name = "azure_blob"
    Config = AzureBlobConfig
    install_hint = INSTALL_HINT

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Platform | None = None) -> None:
        super().__init__(options, platform)
        try:
            from azure.core import exceptions
            from azure.storage.blob import BlobServiceClient
        except ImportError as exc:
            raise ImportError(f"the 'azure_blob' artifact store needs azure-storage-blob: {INSTALL_HINT}") from exc
        settings = AzureBlobConfig().load(self.options)
        self.container: str = settings["container"]
        prefix = settings["prefix"].strip("/")
        self._root = f"{prefix}/" if prefix else ""
        self._secrets = [settings[k] for k in ("connection_string", "credential") if settings[k]]
        self._azure_error = exceptions.AzureError
        self._not_found = exceptions.ResourceNotFoundError
        self._max_concurrency: int = settings["max_concurrency"]
        chunk = settings["chunk_size"]
        client_options: dict[str, Any] = {
            # Single requests up to one chunk, blocks and ranged reads of one chunk beyond it.
            "max_single_put_size": chunk,
            "max_block_size": chunk,
            "max_single_get_size": chunk,
            "max_chunk_get_size": chunk,
            "retry_total": settings["max_attempts"] - 1,
        }
        if settings["api_version"]:
            client_options["api_version"] = settings["api_version"]
        try:
            if settings["connection_string"]:
                service = BlobServiceClient.from_connection_string(settings["connection_string"], **client_options)
            else:
                service = BlobServiceClient(
                    settings["account_url"], credential=settings["credential"], **client_options
                )
        except ValueError as exc:
            # The SDK's message can quote the connection string; say what is wrong without it.
            raise BackendError(self._scrub(f"invalid Azure Blob client settings: {_first_line(exc)}")) from None
        self._service = service
        self._container = service.get_container_client(self.container)
        if settings["create_container"]:
            self._ensure_container()

    def __repr__(self) -> str:
        return f"<AzureBlobArtifactStore {self.container}/{self._root}>"

    # --- the contract -------------------------------------------------------------------------

    def put(self, path: str, stream: IO[bytes], size: int | None = None) -> ArtifactInfo:
        blob = self._container.get_blob_client(self._root + path)
        with self._errors("write", path):
            blob.upload_blob(FullReads(stream), length=size, overwrite=True, max_concurrency=self._max_concurrency)
            props = blob.get_blob_properties()
        return ArtifactInfo(path, props.size, props.last_modified)

    def open(self, path: str) -> IO[bytes]:
        with self._errors("read", path):
            downloader = self._container.download_blob(self._root + path, max_concurrency=1)
        raw = BodyReader(downloader, lambda exc: self._error(exc, "read", path), (self._azure_error,))
        return io.BufferedReader(raw, READ_BUFFER)

    def list(self, prefix: str = "") -> Iterator[ArtifactInfo]:
        with self._errors("list", prefix):
            # The service lists blob names in lexical order: the path order.
            for blob in self._container.list_blobs(name_starts_with=self._root + prefix):
                yield ArtifactInfo(blob.name[len(self._root) :], blob.size, blob.last_modified)

    def delete(self, path: str) -> None:
        path = path.rstrip("/")
        with self._errors("delete", path):
            if path:
                with contextlib.suppress(self._not_found):
                    self._container.delete_blob(self._root + path)
            folder = self._root + path + "/" if path else self._root
            names = (blob.name for blob in self._container.list_blobs(name_starts_with=folder))
            for batch in _batches(names, DELETE_BATCH):
                self._delete_batch(path, batch)

    def close(self) -> None:
        self._service.close()

    # --- helpers --------------------------------------------------------------------------------

    def _delete_batch(self, path: str, names: Sequence[str]) -> None:
        responses = self._container.delete_blobs(*names, raise_on_any_failure=False)
        failed = [r for r in responses if r.status_code not in (200, 202, 404)]
        if failed:
            raise BackendError(
                f"Azure Blob could not delete {len(failed)} blob(s) under {path!r} in container "
                f"{self.container!r} (HTTP {failed[0].status_code})"
            )

    def _ensure_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with self._errors("create", ""), contextlib.suppress(ResourceExistsError):
            self._container.create_container()

    @contextlib.contextmanager
    def _errors(self, action: str, path: str) -> Iterator[None]:
        # "from None": the SDK's chained traceback may show request URLs with a SAS token.
        try:
            yield
        except self._azure_error as exc:
            raise self._error(exc, action, path) from None

    def _error(self, exc: Exception, action: str, path: str) -> MLPlatformError:
        """The platform error for an Azure SDK exception raised while doing ``action`` on ``path``."""
        where = f"{path!r} in container {self.container!r}" if path else f"container {self.container!r}"
        code = str(getattr(exc, "error_code", None) or "")
        status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status_code", None)
        if code == "ContainerNotFound":
            return BackendError(
                f"Azure Blob container {self.container!r} does not exist; create it or set create_container: true"
            )
        if isinstance(exc, self._not_found) and path:
            return ArtifactNotFound(f"artifact {path!r} does not exist")
        if code in DENIED_CODES or status in (401, 403):
            return BackendError(
                f"Azure Blob refused to {action} {where}: {code or status}; check the credential and its permissions"
            )
        if status is not None:
            return BackendError(
                self._scrub(f"Azure Blob could not {action} {where}: {code or 'error'} (HTTP {status})")
            )
        return BackendError(
            self._scrub(f"Azure Blob could not {action} {where}: {type(exc).__name__}: {_first_line(exc)}")
        )

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return _SAS_SIGNATURE.sub(r"\1***", message)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
