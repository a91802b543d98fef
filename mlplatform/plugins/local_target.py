"""Built-in ``local`` deployment target: models loaded into the platform's own process.

``deploy`` fetches, verifies and loads the version (so the first prediction is warm) and
returns the reference ``<project>/<model>/<version>@<sha256>``. Loaded predictors live in an
LRU of ``max_models`` entries; a deployed version evicted from it is reloaded (from the
verified cache folder) on its next prediction. State is per process: a process that did not
call ``deploy`` reports ``absent`` for the reference, so the platform re-deploys its local
deployments when a serving process starts (``deploy`` is idempotent and cheap when cached).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from mlplatform import hookimpl
from mlplatform.core.backends import DeploymentSpec, DeploymentTarget, Predictor, TargetStatus
from mlplatform.core.errors import BackendError, MLPlatformError, NotFound
from mlplatform.core.model_loading import load_model

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform


class LocalTarget(DeploymentTarget):
    """In-process serving; see the module docstring. Thread-safe."""

    name = "local"

    class Config(Schema):
        max_models = fields.Integer(
            load_default=8,
            validate=validate.Range(min=1),
            metadata={"description": "loaded versions kept in memory (LRU)"},
        )

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Platform | None = None) -> None:
        super().__init__(options, platform)
        self.max_models: int = int(self.options.get("max_models", 8))
        self._specs: dict[str, DeploymentSpec] = {}
        self._failures: dict[str, str] = {}
        self._loaded: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}

    @staticmethod
    def reference(spec: DeploymentSpec) -> str:
        return f"{spec.project}/{spec.model}/{spec.version}@{spec.artifact_sha256.lower()}"

    def deploy(self, spec: DeploymentSpec) -> str:
        """Load ``spec`` now. On failure the reference reports ``failed`` and ``BackendError`` is raised."""
        if self.platform is None:
            raise BackendError("the local target needs a platform (its artifact store and data_dir)")
        ref = self.reference(spec)
        with self._lock:
            self._specs[ref] = spec
            self._failures.pop(ref, None)
        self._predictor(ref)
        return ref

    def status(self, ref: str) -> TargetStatus:
        with self._lock:
            if ref not in self._specs:
                return TargetStatus("absent")
            if ref in self._failures:
                return TargetStatus("failed", self._failures[ref])
            return TargetStatus("healthy", details={"loaded": ref in self._loaded})

    def undeploy(self, ref: str) -> None:
        with self._lock:
            self._specs.pop(ref, None)
            self._failures.pop(ref, None)
            self._loaded.pop(ref, None)
            self._load_locks.pop(ref, None)

    def predict(self, ref: str, batch: Any) -> list[Any]:
        """Predict with a deployed reference. ``NotFound`` if it is not deployed here."""
        return list(self._predictor(ref).predict(batch))

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()

    def _predictor(self, ref: str) -> Predictor:
        with self._lock:
            if ref in self._loaded:
                self._loaded.move_to_end(ref)
                return self._loaded[ref]
            spec = self._specs.get(ref)
            if spec is None:
                raise NotFound(f"model {ref!r} is not deployed on the local target")
            load_lock = self._load_locks.setdefault(ref, threading.Lock())
        with load_lock:  # one load per reference at a time; other references are not blocked
            with self._lock:
                if ref in self._loaded:
                    return self._loaded[ref]
            try:
                predictor = load_model(self.platform, spec)  # type: ignore[arg-type]
            except Exception as exc:
                reason = exc.message if isinstance(exc, MLPlatformError) else f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if ref in self._specs:
                        self._failures[ref] = reason
                raise BackendError(f"cannot load {ref}: {reason}") from exc
            with self._lock:
                if ref not in self._specs:  # undeployed while loading
                    raise NotFound(f"model {ref!r} is not deployed on the local target")
                self._failures.pop(ref, None)
                self._loaded[ref] = predictor
                while len(self._loaded) > self.max_models:
                    self._loaded.popitem(last=False)
            return predictor


@hookimpl
def register_deployment_targets() -> list[type[DeploymentTarget]]:
    return [LocalTarget]
