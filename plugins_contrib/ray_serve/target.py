"""``ray_serve``: each model version is one Ray Serve application, ``<project>-<model>-v<version>``.

``deploy`` fetches and verifies the artifact in the driver (the platform process) into
``<data_dir>/model-cache/<sha256>/`` and starts an application whose replicas load that
folder with the same ``model_loading`` code, re-verifying the digest first. It does not wait:
``status`` reports ``deploying`` until Serve says RUNNING (``healthy``) or DEPLOY_FAILED /
UNHEALTHY (``failed``: the message is the replica's exception line, e.g. the flavor's load
error; Serve's full text with the traceback is in ``details["serve_message"]``).
Predictions go through the application's ``DeploymentHandle``; with ``http: true`` the
application is also served at ``/<application name>`` by Serve's HTTP proxy.

The replicas read the cache folder by path. On a local cluster that is the same disk; on a
remote or multi-node cluster the platform's ``data_dir`` must be a shared filesystem mounted
at the same path on every node (and ``mlplatform`` installed there), otherwise replicas fail
with "not a file". Fetching from a shared artifact store inside the replica is not built yet.

Ray is imported when the target is instantiated; without it the platform fails at start-up
naming ``pip install 'mlplatform[ray]'``. The target never starts or stops a Ray cluster:
it connects to ``address`` (``auto``: the local node's cluster) unless Ray is already
initialised in the process, and starts Serve on it if needed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from mlplatform.core.backends import DeploymentSpec, DeploymentTarget, TargetStatus
from mlplatform.core.errors import BackendError, MLPlatformError, NotFound, ServiceUnavailable
from mlplatform.core.model_loading import (
    available_flavors,
    cache_root,
    fetch_artifact,
    flavor_options,
    folder_files,
    pick_flavor,
    read_descriptor,
)

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

INSTALL_HINT = "pip install 'mlplatform[ray]'"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STATES = {
    "RUNNING": "healthy",
    "DEPLOYING": "deploying",
    "NOT_STARTED": "deploying",
    "DEPLOY_FAILED": "failed",
    "UNHEALTHY": "failed",
    "DELETING": "absent",
}


def _text(value: Any) -> str:
    """Serve reports states as enums or plain strings depending on the version."""
    return str(getattr(value, "value", value))


class RayServeConfig(Schema):
    address = fields.String(
        load_default="auto", metadata={"description": "Ray cluster address; 'auto': this node's cluster"}
    )
    num_replicas = fields.Integer(
        load_default=1, validate=validate.Range(min=1), metadata={"description": "replicas per version"}
    )
    num_cpus = fields.Float(
        load_default=1.0, validate=validate.Range(min=0), metadata={"description": "CPUs per replica"}
    )
    http = fields.Boolean(load_default=False, metadata={"description": "also serve each version over HTTP at /<app>"})
    http_host = fields.String(
        load_default="127.0.0.1", metadata={"description": "if this target starts Serve with http"}
    )
    http_port = fields.Integer(load_default=8000, validate=validate.Range(min=1, max=65535))
    max_constructor_retries = fields.Integer(
        load_default=3,
        validate=validate.Range(min=1),
        metadata={"description": "failed replica starts before DEPLOY_FAILED"},
    )
    request_timeout_s = fields.Float(load_default=30.0, validate=validate.Range(min=0.1))


class RayServeTarget(DeploymentTarget):
    """One Serve application per model version; see the module docstring.

    ``spec.resources`` may override ``num_replicas`` and ``num_cpus`` for one version.
    """

    name = "ray_serve"
    Config = RayServeConfig
    install_hint = INSTALL_HINT

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Platform | None = None) -> None:
        super().__init__(options, platform)
        try:
            import ray
            from ray import serve
        except ImportError as exc:
            raise ImportError(f"the 'ray_serve' deployment target needs ray[serve]: {INSTALL_HINT}") from exc
        self._ray = ray
        self._serve = serve
        self.settings = RayServeConfig().load(self.options)
        self._connected = False
        self._connected_here = False
        self._lock = threading.Lock()

    @staticmethod
    def app_name(spec: DeploymentSpec) -> str:
        return _UNSAFE.sub("_", f"{spec.project}-{spec.model}-v{spec.version}")

    # --- the contract -------------------------------------------------------------------------

    def deploy(self, spec: DeploymentSpec) -> str:
        """Start (or keep) the application for ``spec`` and return its name; does not wait.

        Fetch, digest and flavor problems raise here (``BackendError``); replica load errors
        surface through ``status``. Re-deploying the same artifact that is not failed is a no-op.
        """
        if self.platform is None:
            raise BackendError("the ray_serve target needs a platform (its artifact store and data_dir)")
        name = self.app_name(spec)
        deployment_name = f"model-{spec.artifact_sha256.lower()[:16]}"
        try:
            folder = fetch_artifact(
                self.platform.artifact_store, spec.artifact_uri, spec.artifact_sha256, cache_root(self.platform)
            )
            flavor_name = spec.flavor or read_descriptor(folder).get("flavor")
            flavor = pick_flavor(available_flavors(self.platform), flavor_name, folder_files(folder))
        except MLPlatformError as exc:
            raise BackendError(f"cannot deploy {name}: {exc.message}") from exc
        self._connect()
        current = self._serve.status().applications.get(name)
        if (
            current is not None
            and deployment_name in current.deployments
            and _STATES.get(_text(current.status)) != "failed"
        ):
            return name
        from plugins_contrib.ray_serve.replica import ModelReplica

        resources = dict(spec.resources or {})
        deployment = self._serve.deployment(
            ModelReplica,
            name=deployment_name,
            num_replicas=int(resources.get("num_replicas", self.settings["num_replicas"])),
            ray_actor_options={"num_cpus": float(resources.get("num_cpus", self.settings["num_cpus"]))},
            max_constructor_retry_count=self.settings["max_constructor_retries"],
        )
        app = deployment.bind(str(folder), spec.artifact_sha256.lower(), flavor, flavor_options(self.platform, flavor))
        try:
            # serve._run(_blocking=False) returns once the controller has the config; serve.run
            # would block until RUNNING (minutes for a big model) and raise on failure.
            self._serve._run(
                app, _blocking=False, name=name, route_prefix=f"/{name}" if self.settings["http"] else None
            )
        except Exception as exc:
            raise BackendError(f"Ray Serve refused {name}: {type(exc).__name__}: {exc}") from exc
        return name

    def status(self, ref: str) -> TargetStatus:
        self._connect()
        app = self._serve.status().applications.get(ref)
        if app is None:
            return TargetStatus("absent")
        raw = _text(app.status)
        state = _STATES.get(raw, "deploying")
        details = {
            "serve_status": raw,
            "deployments": {
                name: {"status": _text(d.status), "replicas": {_text(k): v for k, v in d.replica_states.items()}}
                for name, d in app.deployments.items()
            },
        }
        message = _ANSI.sub("", app.message or "")
        if state == "failed":
            reasons = [_ANSI.sub("", d.message) for d in app.deployments.values() if d.message]
            full = "\n".join(dict.fromkeys(m for m in [message, *reasons] if m))
            details["serve_message"] = full  # with the replica's traceback, for operators
            # Serve's message ends with the replica's exception line: the reason a user can act on.
            lines = [line.strip() for line in full.splitlines() if line.strip()]
            message = lines[-1] if lines else "Ray Serve reports the application failed"
        return TargetStatus(state, message, details)

    def undeploy(self, ref: str) -> None:
        """Delete the application and wait until it is gone; an unknown name is a no-op."""
        self._connect()
        if ref not in self._serve.status().applications:
            return
        try:
            self._serve.delete(ref, _blocking=True)
        except Exception as exc:
            raise BackendError(f"Ray Serve could not delete {ref}: {type(exc).__name__}: {exc}") from exc

    def predict(self, ref: str, batch: Any) -> list[Any]:
        """Predict through the application's handle. ``NotFound`` if it does not exist;
        the model's own ``InvalidInput`` / ``Unprocessable`` pass through unchanged."""
        self._connect()
        from ray.exceptions import GetTimeoutError, RayTaskError
        from ray.serve.exceptions import RayServeException

        records = batch.to_dict(orient="records") if hasattr(batch, "to_dict") else list(batch)
        try:
            handle = self._serve.get_app_handle(ref)
        except RayServeException:
            raise NotFound(f"model {ref!r} is not deployed on Ray Serve") from None
        try:
            return list(handle.predict.remote(records).result(timeout_s=self.settings["request_timeout_s"]))
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, MLPlatformError):
                raise cause from None
            raise BackendError(f"{ref} failed: {type(cause or exc).__name__}: {cause or exc}") from None
        except (GetTimeoutError, TimeoutError):
            raise ServiceUnavailable(f"{ref} did not answer within {self.settings['request_timeout_s']}s") from None

    def close(self) -> None:
        """Disconnect from Ray if this target connected; never stops the cluster or Serve."""
        if self._connected_here and self._ray.is_initialized():
            self._ray.shutdown()
        self._connected = self._connected_here = False

    # --- connection ----------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._connected:
            return
        with self._lock:
            if self._connected:
                return
            try:
                if not self._ray.is_initialized():
                    self._ray.init(address=self.settings["address"], log_to_driver=False)
                    self._connected_here = True
                if self.settings["http"]:
                    http = {"host": self.settings["http_host"], "port": self.settings["http_port"]}
                    self._serve.start(http_options=http)
                else:
                    self._serve.start(proxy_location="Disabled")
            except Exception as exc:
                raise BackendError(
                    f"cannot reach Ray at address {self.settings['address']!r}: {type(exc).__name__}: {exc}; "
                    "start a cluster (ray start --head) or set deployment_targets[].options.address"
                ) from exc
            self._connected = True
