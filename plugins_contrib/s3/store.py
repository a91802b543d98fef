"""``s3``: artifacts in an Amazon S3 (or S3-compatible: MinIO, Ceph, moto) bucket, through boto3.

An artifact ``runs/12/model.pkl`` is the object ``<prefix>/runs/12/model.pkl``. Uploads go
through boto3's managed transfer: objects above ``chunk_size`` are sent as a multipart upload,
at most ``max_concurrency`` parts in memory at once, so no file is ever held whole. ``open``
returns the object's body as a buffered, readable binary stream that is fetched as it is read.

Credentials come from the options (usually ``{$secret: ...}`` references) or, when they are
not set, from boto3's usual chain (environment, profile, instance role). Errors are
``ArtifactNotFound`` for a missing object and ``BackendError`` for anything else; messages
name the bucket and the path, never a credential.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mlplatform.core.backends import ArtifactInfo, ArtifactStore
from mlplatform.core.errors import ArtifactNotFound, BackendError, MLPlatformError
from mlplatform.core.streams import READ_BUFFER, BodyReader, FullReads

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

INSTALL_HINT = "pip install 'mlplatform[s3]'"
MiB = 1024 * 1024
NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "403"}


class S3Config(Schema):
    bucket = fields.String(required=True, validate=validate.Length(min=3, max=63))
    prefix = fields.String(load_default="", metadata={"description": "key prefix for every artifact, e.g. mlplatform/"})
    endpoint_url = fields.Url(
        load_default=None,
        require_tld=False,
        schemes={"http", "https"},
        metadata={"description": "for S3-compatible stores (MinIO, Ceph); default: AWS"},
    )
    region = fields.String(load_default=None, metadata={"description": "e.g. eu-west-1; default: boto3's"})
    access_key_id = fields.String(
        load_default=None, metadata={"secret": True, "description": "default: boto3's credential chain"}
    )
    secret_access_key = fields.String(load_default=None, metadata={"secret": True})
    session_token = fields.String(
        load_default=None, metadata={"secret": True, "description": "for temporary credentials"}
    )
    addressing_style = fields.String(load_default="auto", validate=validate.OneOf(["auto", "path", "virtual"]))
    create_bucket = fields.Boolean(
        load_default=False, metadata={"description": "create the bucket at start-up if missing"}
    )
    chunk_size = fields.Integer(
        load_default=8 * MiB,
        validate=validate.Range(min=5 * MiB, max=5 * 1024 * MiB),
        metadata={"description": "bytes per multipart part (S3's minimum is 5 MiB)"},
    )
    max_concurrency = fields.Integer(
        load_default=4, validate=validate.Range(min=1, max=64), metadata={"description": "parts in flight"}
    )
    max_attempts = fields.Integer(
        load_default=5, validate=validate.Range(min=1, max=20), metadata={"description": "tries per request"}
    )
    verify = fields.Boolean(load_default=True, metadata={"description": "verify the endpoint's TLS certificate"})
    ca_bundle = fields.String(load_default=None, metadata={"description": "CA bundle file to verify against"})

    @validates_schema
    def _credentials(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("access_key_id")) != bool(data.get("secret_access_key")):
            missing = "secret_access_key" if data.get("access_key_id") else "access_key_id"
            raise ValidationError("access_key_id and secret_access_key go together", field_name=missing)
        if data.get("session_token") and not data.get("access_key_id"):
            raise ValidationError("needs access_key_id and secret_access_key", field_name="session_token")


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects in one bucket under an optional prefix; see the module docstring."""

    name = "s3"
    Config = S3Config
    install_hint = INSTALL_HINT

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Platform | None = None) -> None:
        super().__init__(options, platform)
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
            from boto3.s3.transfer import TransferConfig
        except ImportError as exc:
            raise ImportError(f"the 's3' artifact store needs boto3: {INSTALL_HINT}") from exc
        settings = S3Config().load(self.options)
        self.bucket: str = settings["bucket"]
        prefix = settings["prefix"].strip("/")
        self._root = f"{prefix}/" if prefix else ""
        self._secrets = [settings[k] for k in ("access_key_id", "secret_access_key", "session_token") if settings[k]]
        self._client_error = botocore.exceptions.ClientError
        self._botocore_error = botocore.exceptions.BotoCoreError
        session = boto3.session.Session(
            aws_access_key_id=settings["access_key_id"],
            aws_secret_access_key=settings["secret_access_key"],
            aws_session_token=settings["session_token"],
            region_name=settings["region"],
        )
        self._client = session.client(
            "s3",
            endpoint_url=settings["endpoint_url"],
            verify=settings["ca_bundle"] or settings["verify"],
            config=botocore.config.Config(
                s3={"addressing_style": settings["addressing_style"]},
                retries={"mode": "standard", "max_attempts": settings["max_attempts"]},
                max_pool_connections=max(10, settings["max_concurrency"] * 2),
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=settings["chunk_size"],
            multipart_chunksize=settings["chunk_size"],
            max_concurrency=settings["max_concurrency"],
            preferred_transfer_client="classic",
        )
        # boto3 reads up to 10 parts of a non-seekable stream ahead; keep it to the parts in flight.
        self._transfer.max_in_memory_upload_chunks = settings["max_concurrency"]
        if settings["create_bucket"]:
            self._ensure_bucket(settings["region"])

    def __repr__(self) -> str:
        return f"<S3ArtifactStore s3://{self.bucket}/{self._root}>"

    # --- the contract -------------------------------------------------------------------------

    def put(self, path: str, stream: IO[bytes], size: int | None = None) -> ArtifactInfo:
        key = self._root + path
        with self._errors("write", path):
            self._client.upload_fileobj(FullReads(stream), self.bucket, key, Config=self._transfer)
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        return ArtifactInfo(path, head["ContentLength"], head.get("LastModified"))

    def open(self, path: str) -> IO[bytes]:
        with self._errors("read", path):
            body = self._client.get_object(Bucket=self.bucket, Key=self._root + path)["Body"]
        raw = BodyReader(body, lambda exc: self._error(exc, "read", path), (self._client_error, self._botocore_error))
        return io.BufferedReader(raw, READ_BUFFER)

    def list(self, prefix: str = "") -> Iterator[ArtifactInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors("list", prefix):
            # S3 lists keys in UTF-8 byte order, which is code-point order: the path order.
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root + prefix):
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/"):
                        continue  # a "folder" marker some consoles create, not a file
                    yield ArtifactInfo(item["Key"][len(self._root) :], item["Size"], item.get("LastModified"))

    def delete(self, path: str) -> None:
        path = path.rstrip("/")
        with self._errors("delete", path):
            if path:
                self._client.delete_object(Bucket=self.bucket, Key=self._root + path)
            folder = self._root + path + "/" if path else self._root
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                result = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                failed = result.get("Errors", [])
                if failed:
                    first = failed[0]
                    raise BackendError(
                        f"S3 could not delete {len(failed)} object(s) under {path!r} in bucket {self.bucket!r}, "
                        f"e.g. {first.get('Key')!r}: {first.get('Code')}"
                    )

    def close(self) -> None:
        self._client.close()

    # --- helpers --------------------------------------------------------------------------------

    def _ensure_bucket(self, region: str | None) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except self._client_error as exc:
            if _code(exc) not in NOT_FOUND_CODES | {"NoSuchBucket"}:
                raise self._error(exc, "check", "") from None
        except self._botocore_error as exc:
            raise self._error(exc, "check", "") from None
        location = region or self._client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if location and location != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": location}
        try:
            self._client.create_bucket(**kwargs)
        except self._client_error as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou"}:
                raise self._error(exc, "create", "") from None
        except self._botocore_error as exc:
            raise self._error(exc, "create", "") from None

    @contextlib.contextmanager
    def _errors(self, action: str, path: str) -> Iterator[None]:
        # "from None": the SDK's chained traceback may show request details.
        try:
            yield
        except (self._client_error, self._botocore_error) as exc:
            raise self._error(exc, action, path) from None

    def _error(self, exc: Exception, action: str, path: str) -> MLPlatformError:
        """The platform error for a botocore exception raised while doing ``action`` on ``path``."""
        where = f"{path!r} in bucket {self.bucket!r}" if path else f"bucket {self.bucket!r}"
        if isinstance(exc, self._client_error):
            code = _code(exc)
            if code in NOT_FOUND_CODES and path:
                return ArtifactNotFound(f"artifact {path!r} does not exist")
            if code == "NoSuchBucket":
                return BackendError(f"S3 bucket {self.bucket!r} does not exist; create it or set create_bucket: true")
            if code in DENIED_CODES:
                return BackendError(
                    f"S3 refused to {action} {where}: {code}; check the credentials and the bucket policy"
                )
            message = exc.response.get("Error", {}).get("Message", "")
            return BackendError(self._scrub(f"S3 could not {action} {where}: {code} {message}".rstrip()))
        name = type(exc).__name__
        if name in {"NoCredentialsError", "PartialCredentialsError"}:
            return BackendError(
                "no S3 credentials: set access_key_id and secret_access_key, or give the process AWS credentials"
            )
        return BackendError(self._scrub(f"S3 could not {action} {where}: {name}: {exc}"))

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


def _code(exc: Any) -> str:
    return str(
        exc.response.get("Error", {}).get("Code", exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    )
