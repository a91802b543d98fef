"""The abstract classes plugins implement, and the value objects they exchange with core.

Every backend kind is a real ``abc.ABC``: a plugin class that forgets a method fails when the
platform instantiates it at start-up, not on the first request. Each class carries:

- ``name``: the unique name an operator selects in config (``artifact_store.backend: s3``);
- ``Config``: a marshmallow schema for its ``options``; unknown keys are rejected;
- ``install_hint`` (optional): what to install when it is missing, for error messages.

Core instantiates a backend as ``cls(options, platform)`` with options already validated by
``Config``. Backends raise the platform's own exceptions (``mlplatform.core.errors``), never
their SDK's, and never put a secret in a message.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, ClassVar

from marshmallow import Schema

if TYPE_CHECKING:
    import numpy as np
    from flask import Request

    from mlplatform.core.platform import Platform


class EmptyConfig(Schema):
    """Options schema for a backend that takes none."""


class Backend(abc.ABC):
    """Common base: a named, configured backend. Subclasses set ``name`` and ``Config``."""

    kind: ClassVar[str] = "backend"
    name: ClassVar[str]
    Config: ClassVar[type[Schema]] = EmptyConfig
    install_hint: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Platform | None = None) -> None:
        self.options = dict(options or {})
        self.platform = platform

    def close(self) -> None:  # noqa: B027 (optional: most backends hold no connection)
        """Release connections. Called once when the platform shuts down."""


# --- artifact storage -------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    size: int
    modified: dt.datetime | None = None


class ArtifactStore(Backend):
    """Stores opaque files under normalised relative paths (``runs/12/model/model.pkl``).

    Paths given to these methods are already validated by core: relative, ``/``-separated,
    no ``..``. Data is streamed: ``put`` reads its stream in chunks and ``open`` returns a
    readable binary stream, so no whole file is ever held in memory.
    """

    kind = "artifact_store"

    @abc.abstractmethod
    def put(self, path: str, stream: IO[bytes], size: int | None = None) -> ArtifactInfo:
        """Write ``stream`` to ``path``, replacing any existing file. Returns its info."""

    @abc.abstractmethod
    def open(self, path: str) -> IO[bytes]:
        """Open ``path`` for reading. Raises ``ArtifactNotFound`` if it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ArtifactInfo]:
        """Yield every file whose path starts with ``prefix``, in path order."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Delete ``path``, or every file under it if it names a folder. Idempotent."""

    def copy(self, source: str, destination: str) -> str:
        """Copy file ``source`` to ``destination`` in this store; returns the hex SHA-256 of its bytes.

        The copy must not change when ``source`` is later replaced or deleted. This default
        streams the bytes through ``open`` and ``put``; a store with a cheaper way to copy
        (a hard link, a server-side copy) may override it. Raises ``ArtifactNotFound`` if
        ``source`` does not exist.
        """
        with self.open(source) as stream:
            reader = _HashingReader(stream)
            self.put(destination, reader)  # type: ignore[arg-type]
        return reader.digest.hexdigest()


class _HashingReader:
    """Reads through to ``stream`` and digests what passes."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size if size is not None and size >= 0 else 1024 * 1024)
        self.digest.update(chunk)
        return chunk


# --- deployment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentSpec:
    """What a target needs to run one model version."""

    project: str
    model: str
    version: int
    flavor: str
    artifact_uri: str
    artifact_sha256: str
    signature: Mapping[str, Any] | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetStatus:
    state: str  # "deploying" | "healthy" | "failed" | "absent"
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


class DeploymentTarget(Backend):
    """Runs one model version and answers predictions for it. Traffic splitting between
    versions is the platform gateway's job, so a target never sees more than one version
    per reference.
    """

    kind = "deployment_target"

    @abc.abstractmethod
    def deploy(self, spec: DeploymentSpec) -> str:
        """Start serving ``spec``; return an opaque reference. Idempotent for the same spec.
        Raises ``BackendError`` with the target's reason on failure."""

    @abc.abstractmethod
    def status(self, ref: str) -> TargetStatus:
        """Report the state of a deployed reference; ``absent`` if unknown."""

    @abc.abstractmethod
    def undeploy(self, ref: str) -> None:
        """Stop serving ``ref``. Idempotent: an unknown reference is not an error."""

    @abc.abstractmethod
    def predict(self, ref: str, batch: Any) -> list[Any]:
        """Return one prediction per input row of ``batch`` (a pandas DataFrame)."""


# --- monitoring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftResult:
    score: float
    drifted: bool
    details: Mapping[str, Any] = field(default_factory=dict)


class DriftMetric(Backend):
    """A pure function over numpy arrays comparing a current sample with a reference."""

    kind = "drift_metric"
    feature_kind: ClassVar[str] = "numerical"  # "numerical" | "categorical" | "both"
    default_threshold: ClassVar[float]
    higher_is_drift: ClassVar[bool] = True  # False for p-values: drift when score <= threshold

    @abc.abstractmethod
    def compute(self, reference: np.ndarray, current: np.ndarray, threshold: float | None = None) -> DriftResult:
        """Compare ``current`` with ``reference`` (1-d arrays, missing values removed).
        ``threshold`` overrides ``default_threshold``. Raises ``InvalidInput`` on empty input."""


@dataclass(frozen=True)
class Alert:
    """A notification for a channel: one rule firing or resolving, or a platform incident."""

    title: str
    severity: str  # "info" | "warning" | "critical"
    state: str  # "firing" | "resolved"
    project: str
    message: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)
    alert_id: int | None = None
    occurred_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "title": self.title,
            "severity": self.severity,
            "state": self.state,
            "project": self.project,
            "message": self.message,
            "labels": dict(self.labels),
            "values": dict(self.values),
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
        }


class AlertChannel(Backend):
    """Delivers alerts somewhere people look."""

    kind = "alert_channel"

    @abc.abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver ``alert``. Raises ``BackendError`` if delivery failed after the channel's
        own retries; the platform records the failure."""


# --- identity and secrets -----------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who is calling. ``username`` maps to a platform user; ``token_id`` is set for API tokens."""

    username: str
    backend: str
    user_id: int | None = None
    is_admin: bool = False
    token_id: int | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)


class AuthBackend(Backend):
    """Says who the caller is. Role checks stay in core."""

    kind = "auth_backend"

    @abc.abstractmethod
    def identity_from_request(self, request: Request) -> Identity | None:
        """Return the caller's Identity, or None if this backend does not recognise the
        credential at all, so other backends can try it. Raise ``AuthenticationError`` if the
        credential is recognised but invalid, expired or revoked."""


class SecretBackend(Backend):
    """Reads secrets. Values are never logged, cached on disk or put in messages."""

    kind = "secret_backend"

    @abc.abstractmethod
    def get(self, path: str, key: str) -> str:
        """Return the value of ``key`` in the secret at ``path``. Raises ``SecretNotFound``
        when the path or key does not exist and ``SecretAccessDenied`` when the read is refused."""


# --- models -------------------------------------------------------------------------------


class Predictor(abc.ABC):
    @abc.abstractmethod
    def predict(self, frame: Any) -> Iterable[Any]:
        """Predict for a pandas DataFrame; one output per row."""


class ModelFlavor(Backend):
    """Knows how to load one kind of model artifact folder."""

    kind = "model_flavor"

    @abc.abstractmethod
    def detect(self, files: list[str]) -> bool:
        """True if an artifact folder with these relative file names is of this flavor."""

    @abc.abstractmethod
    def load(self, path: str) -> Predictor:
        """Load the model in local folder ``path``. Raises ``InvalidInput`` if it cannot."""


# --- promotion policies -------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyResult:
    """One policy's verdict on a promotion. ``passed=False`` blocks it."""

    policy: str
    passed: bool
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlatformEvent:
    """An audited change, delivered to ``platform_event`` after its transaction commits."""

    id: int
    occurred_at: dt.datetime
    actor: str
    project: str | None
    action: str
    resource_type: str
    resource_id: str
    summary: Mapping[str, Any]


BACKEND_KINDS: dict[str, type[Backend]] = {
    "artifact_store": ArtifactStore,
    "deployment_target": DeploymentTarget,
    "drift_metric": DriftMetric,
    "alert_channel": AlertChannel,
    "auth_backend": AuthBackend,
    "secret_backend": SecretBackend,
    "model_flavor": ModelFlavor,
}
