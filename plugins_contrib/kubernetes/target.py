"""``kubernetes``: each model version is a Deployment, a Service and an HPA of one name.

``deploy`` renders the three objects (``manifests.render``) and applies them with
server-side apply (``PATCH``, ``Content-Type: application/apply-patch+yaml``,
``fieldManager=<field_manager>``, ``force=true``), so re-deploying the same spec is a no-op
for the cluster and a changed spec is an update. It does not wait; the reference is
``"<namespace>/<name>"``.

``status`` reads the Deployment only:

- 404: ``absent``;
- ``Progressing`` False with ``ProgressDeadlineExceeded`` (pods not ready within
  ``readiness_timeout_s``), or ``ReplicaFailure`` True (e.g. a quota refused the pods):
  ``failed`` with the condition's message;
- ``Available`` True, the controller has seen the latest spec, and every desired replica is
  updated and ready with no old ones left: ``healthy``;
- anything else: ``deploying``, with the replica counts in the message.

``undeploy`` deletes the HPA, the Service and the Deployment (pods go in the background);
objects already gone are fine, so it is idempotent. ``predict`` posts the batch to
``<service_url_template>/predict``: the default, ``http://{name}.{namespace}.svc:{port}``,
resolves only inside the cluster, so the platform must run in it, or the operator sets a
template that reaches the Services from where the platform runs (an ingress, a port-forward).

API errors become ``BackendError`` with Kubernetes' own message (``Status.message``), never
with the request's headers or credentials. ``kubernetes`` is imported when the target is
instantiated; without it the platform fails at start-up naming ``pip install 'mlplatform[kubernetes]'``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import requests

from mlplatform.core.backends import DeploymentSpec, DeploymentTarget, TargetStatus
from mlplatform.core.errors import BackendError, InvalidInput, NotFound, ServiceUnavailable, Unprocessable
from plugins_contrib.kubernetes.config import KubernetesConfig
from plugins_contrib.kubernetes.manifests import render
from plugins_contrib.kubernetes.names import parse_reference, reference

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

INSTALL_HINT = "pip install 'mlplatform[kubernetes]'"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

# kind -> (typed API class name in kubernetes.client, method suffix)
_APIS = {
    "Deployment": ("AppsV1Api", "namespaced_deployment"),
    "Service": ("CoreV1Api", "namespaced_service"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "namespaced_horizontal_pod_autoscaler"),
}
_DELETE_ORDER = ("HorizontalPodAutoscaler", "Service", "Deployment")


class KubernetesTarget(DeploymentTarget):
    """One Deployment + Service + HPA per model version; see the module docstring."""

    name = "kubernetes"
    Config = KubernetesConfig
    install_hint = INSTALL_HINT

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Platform | None = None) -> None:
        super().__init__(options, platform)
        try:
            import kubernetes.client
            import kubernetes.config
            import urllib3.exceptions
        except ImportError as exc:
            raise ImportError(
                f"the 'kubernetes' deployment target needs the kubernetes client: {INSTALL_HINT}"
            ) from exc
        self.settings = KubernetesConfig().load(self.options)
        self._client = kubernetes.client
        self._api_exception = kubernetes.client.ApiException
        self._transport_error = urllib3.exceptions.HTTPError
        configuration = kubernetes.client.Configuration()
        try:
            if self.settings["in_cluster"]:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            else:
                kubernetes.config.load_kube_config(
                    config_file=self.settings["kubeconfig"],
                    context=self.settings["context"],
                    client_configuration=configuration,
                    persist_config=False,  # never write refreshed tokens into the operator's file
                )
        except (kubernetes.config.ConfigException, OSError) as exc:
            where = "the pod's service account" if self.settings["in_cluster"] else "the kubeconfig"
            raise BackendError(f"cannot load the Kubernetes connection from {where}: {exc}") from None
        self.host: str = configuration.host
        self._api_client = kubernetes.client.ApiClient(configuration)
        self._apis = {kind: getattr(kubernetes.client, api)(self._api_client) for kind, (api, _) in _APIS.items()}
        self._http = requests.Session()

    def __repr__(self) -> str:
        return f"<KubernetesTarget {self.host} namespace={self.settings['namespace']}>"

    # --- the contract -------------------------------------------------------------------------

    def deploy(self, spec: DeploymentSpec) -> str:
        """Server-side apply the Deployment, the Service and the HPA; return ``"<namespace>/<name>"``.
        Does not wait for readiness. ``BackendError`` with the API's message if one is refused."""
        manifests = render(spec, self.settings)
        for manifest in manifests.all():
            self._apply(manifest)
        return reference(manifests.namespace, manifests.name)

    def status(self, ref: str) -> TargetStatus:
        parsed = parse_reference(ref)
        if parsed is None:
            return TargetStatus("absent", f"{ref!r} is not a kubernetes target reference (<namespace>/<name>)")
        namespace, name = parsed
        deployment = self._call("read", "Deployment", namespace, name, missing_ok=True)
        if deployment is None:
            return TargetStatus("absent")
        return deployment_status(deployment)

    def undeploy(self, ref: str) -> None:
        """Delete the HPA, the Service and the Deployment; already-deleted objects are skipped."""
        parsed = parse_reference(ref)
        if parsed is None:
            return
        namespace, name = parsed
        for kind in _DELETE_ORDER:
            self._call("delete", kind, namespace, name, missing_ok=True)

    def predict(self, ref: str, batch: Any) -> list[Any]:
        """POST ``{"records": [...]}`` to the version's model server and return its
        ``"predictions"``. 400/422 from the server become ``InvalidInput`` / ``Unprocessable``;
        a server the platform cannot reach is a ``BackendError`` that says why."""
        parsed = parse_reference(ref)
        if parsed is None:
            raise NotFound(f"{ref!r} is not a kubernetes target reference (<namespace>/<name>)")
        namespace, name = parsed
        url = self.service_url(namespace, name) + "/predict"
        body = (
            batch.to_json(orient="records", date_format="iso") if hasattr(batch, "to_json") else json.dumps(list(batch))
        )
        payload = '{"records": ' + body + "}"
        timeout = self.settings["request_timeout_s"]
        try:
            response = self._http.post(url, data=payload, headers={"Content-Type": "application/json"}, timeout=timeout)
        except requests.Timeout:
            raise ServiceUnavailable(f"{ref} did not answer within {timeout}s at {url}") from None
        except requests.ConnectionError as exc:
            raise BackendError(
                f"cannot reach the model server of {ref} at {url}: {type(exc).__name__}; the default URL resolves only "
                "inside the cluster: run the platform in the cluster or set the target's service_url_template"
            ) from None
        return _predictions(ref, response)

    def close(self) -> None:
        self._http.close()
        self._api_client.close()

    def service_url(self, namespace: str, name: str) -> str:
        """The base URL of a version's Service, from ``service_url_template``."""
        return (
            self.settings["service_url_template"]
            .format(name=name, namespace=namespace, port=self.settings["port"])
            .rstrip("/")
        )

    # --- API calls ------------------------------------------------------------------------------

    def _apply(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        kind = manifest["kind"]
        meta = manifest["metadata"]
        return self._call(
            "patch",
            kind,
            meta["namespace"],
            meta["name"],
            body=manifest,
            field_manager=self.settings["field_manager"],
            force=True,
            _content_type=APPLY_CONTENT_TYPE,
        )

    def _call(self, verb: str, kind: str, namespace: str, name: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Call ``<verb>_<kind's suffix>`` and return the decoded JSON body (None for a tolerated 404)."""
        api = self._apis[kind]
        method = getattr(api, f"{verb}_{_APIS[kind][1]}")
        if verb == "delete":
            kwargs.setdefault("propagation_policy", "Background")
        with self._errors(verb, kind, namespace, name):
            try:
                # Raw JSON, not the client's models: status() reads a few fields of it, and
                # a newer API server's fields cannot break deserialisation.
                response = method(
                    name,
                    namespace,
                    _preload_content=False,
                    _request_timeout=self.settings["request_timeout_s"],
                    **kwargs,
                )
            except self._api_exception as exc:
                if missing_ok and exc.status == 404:
                    return None
                raise
        data = response.data
        return json.loads(data) if data else None

    @contextlib.contextmanager
    def _errors(self, verb: str, kind: str, namespace: str, name: str) -> Iterator[None]:
        action = {"patch": "apply", "read": "read", "delete": "delete"}[verb]
        try:
            yield
        except self._api_exception as exc:
            raise BackendError(
                f"Kubernetes refused to {action} {kind} {namespace}/{name}: {_api_message(exc)}"
            ) from None
        except self._transport_error as exc:
            raise BackendError(
                f"cannot reach the Kubernetes API at {self.host} to {action} {kind} {namespace}/{name}: {type(exc).__name__}"
            ) from None


def _api_message(exc: Any) -> str:
    """``<code> <reason>: <Status.message>`` from an ApiException; never its headers."""
    status = f"{exc.status or ''} {exc.reason or ''}".strip()
    message = ""
    try:
        body = json.loads(exc.body) if exc.body else {}
        message = body.get("message", "") if isinstance(body, dict) else ""
    except (TypeError, ValueError):
        pass
    return f"{status}: {message}" if message else status or "no response"


def deployment_status(deployment: Mapping[str, Any]) -> TargetStatus:
    """Map a Deployment (decoded JSON) to a ``TargetStatus``; rules in the module docstring."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    counts = {
        "desired": desired,
        "current": int(status.get("replicas", 0)),
        "updated": int(status.get("updatedReplicas", 0)),
        "ready": int(status.get("readyReplicas", 0)),
        "available": int(status.get("availableReplicas", 0)),
    }
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    details = {"replicas": counts, "conditions": list(conditions.values())}
    progressing = conditions.get("Progressing") or {}
    if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        return TargetStatus(
            "failed", progressing.get("message") or "the rollout exceeded its progress deadline", details
        )
    replica_failure = conditions.get("ReplicaFailure") or {}
    if replica_failure.get("status") == "True":
        return TargetStatus(
            "failed", replica_failure.get("message") or "the Deployment could not create its pods", details
        )
    seen = int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
    available = (conditions.get("Available") or {}).get("status") == "True"
    if (
        seen
        and available
        and counts["updated"] == desired
        and counts["ready"] >= desired
        and counts["current"] == counts["updated"]
    ):
        return TargetStatus("healthy", f"{counts['ready']}/{desired} replicas ready", details)
    message = f"{counts['ready']}/{desired} replicas ready, {counts['updated']} updated"
    if not seen:
        message = "waiting for the Deployment controller to see the new spec"
    return TargetStatus("deploying", message, details)


def _predictions(ref: str, response: Any) -> list[Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and isinstance(body.get("predictions"), list):
        return body["predictions"]
    message = body.get("message", "") if isinstance(body, dict) else ""
    if response.status_code == 400:
        raise InvalidInput(message or f"{ref} rejected the batch")
    if response.status_code == 422:
        raise Unprocessable(message or f"{ref} could not predict for the batch")
    if response.status_code in (502, 503, 504):
        raise ServiceUnavailable(f"{ref} is not ready to serve: HTTP {response.status_code} {message}".rstrip())
    if response.status_code == 200:
        raise BackendError(f"{ref} answered without a 'predictions' list")
    raise BackendError(f"{ref} failed: HTTP {response.status_code} {message}".rstrip())
