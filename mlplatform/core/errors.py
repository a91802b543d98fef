"""One exception tree. Services and plugins raise these; the API maps ``status`` to HTTP."""

from __future__ import annotations

from typing import Any


class MLPlatformError(Exception):
    """Base of every error the platform raises on purpose. ``status`` is the HTTP mapping."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class ConfigError(MLPlatformError):
    """The configuration is invalid. ``path`` is the dotted key, e.g. ``artifact_store.options.bucket``."""

    code = "config_error"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class PluginError(MLPlatformError):
    """A plugin is broken or missing: a misspelled hook, a duplicate name, an incomplete class."""

    code = "plugin_error"


class InvalidInput(MLPlatformError):
    status = 400
    code = "invalid_input"


class Unprocessable(MLPlatformError):
    status = 422
    code = "unprocessable"


class AuthenticationError(MLPlatformError):
    """A credential was presented and recognised but is invalid, expired or revoked."""

    status = 401
    code = "unauthenticated"


class PermissionDenied(MLPlatformError):
    status = 403
    code = "forbidden"


class NotFound(MLPlatformError):
    status = 404
    code = "not_found"


class Conflict(MLPlatformError):
    status = 409
    code = "conflict"


class PreconditionFailed(MLPlatformError):
    """``If-Match`` named a revision (ETag) the resource no longer has."""

    status = 412
    code = "precondition_failed"


class PayloadTooLarge(MLPlatformError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(MLPlatformError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(MLPlatformError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendError(MLPlatformError):
    """An outside system (a store, a target, a vault) failed. Its message never carries a secret."""

    status = 502
    code = "backend_error"


class ServiceUnavailable(MLPlatformError):
    status = 503
    code = "unavailable"


class ArtifactNotFound(NotFound):
    code = "artifact_not_found"


class SecretNotFound(ConfigError):
    """A secret path or key does not exist in the secret backend."""

    code = "secret_not_found"


class SecretAccessDenied(ConfigError):
    """The secret backend refused the read (missing policy, bad credentials)."""

    code = "secret_access_denied"
