"""Render the Deployment, Service and HorizontalPodAutoscaler for one model version.

Pure functions from a ``DeploymentSpec`` and the target's loaded options to plain dicts,
ready for server-side apply. Nothing here talks to a cluster.

The pods run ``mlplatform model-server --project P --model M --version V --port PORT``,
which starts from the platform config in the Secret ``config_secret`` (mounted read-only at
``/etc/mlplatform`` and named by ``MLPLATFORM_CONFIG``), reads the version's record and files
with the same verified loading code as the platform, answers ``/health`` (liveness),
``/ready`` (readiness: the model is loaded) and ``POST /predict``.

Replicas: ``min_replicas`` defaults to ``replicas`` and ``max_replicas`` to ``min_replicas``.
When the two differ the HPA owns the replica count and the Deployment leaves
``spec.replicas`` out (so a re-apply never fights the autoscaler); when they are equal the
Deployment pins it. ``spec.resources`` of one version may override ``requests``,
``limits`` (``{"cpu": ..., "memory": ...}``), ``replicas``, ``min_replicas`` and
``max_replicas``; other keys are ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from mlplatform.core.backends import DeploymentSpec
from mlplatform.core.errors import InvalidInput
from plugins_contrib.kubernetes.config import QuantitiesSchema
from plugins_contrib.kubernetes.names import label_value, resource_name

APP_NAME = "mlplatform-model-server"
CONTAINER = "model-server"
MANAGED_BY = "mlplatform"


@dataclass(frozen=True)
class Manifests:
    """The three objects of one version, in apply order."""

    name: str
    namespace: str
    deployment: dict[str, Any]
    service: dict[str, Any]
    autoscaler: dict[str, Any]

    def all(self) -> list[dict[str, Any]]:
        return [self.deployment, self.service, self.autoscaler]


def selector_labels(name: str) -> dict[str, str]:
    """The labels the Service and the Deployment select pods by (immutable per Deployment)."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": name}


def object_labels(spec: DeploymentSpec, name: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Operator's extra labels, then the platform's (which win on a clash)."""
    return {
        **extra,
        **selector_labels(name),
        "app.kubernetes.io/component": CONTAINER,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "mlplatform.io/project": label_value(spec.project),
        "mlplatform.io/model": label_value(spec.model),
        "mlplatform.io/version": label_value(str(spec.version)),
    }


def object_annotations(spec: DeploymentSpec, extra: Mapping[str, str]) -> dict[str, str]:
    """The exact identity of the version (labels may be sanitised), after the operator's extras."""
    return {
        **extra,
        "mlplatform.io/project": spec.project,
        "mlplatform.io/model": spec.model,
        "mlplatform.io/version": str(spec.version),
    }


def render(spec: DeploymentSpec, settings: Mapping[str, Any]) -> Manifests:
    """All three manifests for ``spec``; ``settings`` is ``KubernetesConfig().load(options)``.
    Raises ``InvalidInput`` if ``spec.resources`` is malformed."""
    name = resource_name(spec.project, spec.model, spec.version)
    namespace = settings["namespace"]
    labels = object_labels(spec, name, settings["labels"])
    annotations = object_annotations(spec, settings["annotations"])
    metadata = {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}
    resources, low, high = _sizing(spec, settings)
    deployment = _deployment(spec, settings, metadata, resources, None if high > low else low)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": settings["service_type"],
            "selector": selector_labels(name),
            "ports": [{"name": "http", "port": settings["port"], "targetPort": "http", "protocol": "TCP"}],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": settings["target_cpu_utilization"]},
                    },
                }
            ],
        },
    }
    # One deepcopy each (not of the list, which would keep them sharing): callers may change one.
    return Manifests(name, namespace, *(copy.deepcopy(m) for m in (deployment, service, autoscaler)))


def _sizing(spec: DeploymentSpec, settings: Mapping[str, Any]) -> tuple[dict[str, dict[str, str]], int, int]:
    """Container resources and the (min, max) replica range, with the version's overrides."""
    override = dict(spec.resources or {})
    resources = {kind: dict(settings["resources"].get(kind) or {}) for kind in ("requests", "limits")}
    try:
        for kind in ("requests", "limits"):
            if override.get(kind):
                resources[kind].update(QuantitiesSchema().load(override[kind]))
        counts = {
            key: int(override[key])
            for key in ("replicas", "min_replicas", "max_replicas")
            if override.get(key) is not None
        }
    except (ValidationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"bad resources for the kubernetes target: {exc}") from None
    if any(value < 1 for value in counts.values()):
        raise InvalidInput("bad resources for the kubernetes target: replica counts must be >= 1")
    low = counts.get("min_replicas") or settings["min_replicas"] or counts.get("replicas") or settings["replicas"]
    high = max(counts.get("max_replicas") or settings["max_replicas"] or low, low)
    if high > low and not resources["requests"].get("cpu"):
        raise InvalidInput("autoscaling on CPU needs a CPU request: set resources.requests.cpu")
    return {kind: quantities for kind, quantities in resources.items() if quantities}, low, high


def _deployment(
    spec: DeploymentSpec,
    settings: Mapping[str, Any],
    metadata: dict[str, Any],
    resources: dict[str, dict[str, str]],
    replicas: int | None,
) -> dict[str, Any]:
    name = metadata["name"]
    port = settings["port"]
    pod_annotations = {
        **metadata["annotations"],
        # A new artifact under the same version must roll the pods.
        "mlplatform.io/artifact-sha256": spec.artifact_sha256.lower(),
        "mlplatform.io/flavor": spec.flavor,
    }
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings["image"],
        "imagePullPolicy": settings["image_pull_policy"],
        "command": ["mlplatform", "model-server"],
        "args": ["--project", spec.project, "--model", spec.model, "--version", str(spec.version), "--port", str(port)],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": _env(settings),
        "startupProbe": _probe("/health", period=5, failures=60),
        "livenessProbe": _probe("/health", period=10, failures=3),
        "readinessProbe": _probe("/ready", period=5, failures=3),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {"containers": [container]}
    if settings["config_secret"]:
        container["volumeMounts"] = [{"name": "mlplatform-config", "mountPath": CONFIG_MOUNT, "readOnly": True}]
        pod_spec["volumes"] = [{"name": "mlplatform-config", "secret": {"secretName": settings["config_secret"]}}]
    if settings["service_account"]:
        pod_spec["serviceAccountName"] = settings["service_account"]
    if settings["image_pull_secrets"]:
        pod_spec["imagePullSecrets"] = [{"name": secret} for secret in settings["image_pull_secrets"]]
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(name)},
        "progressDeadlineSeconds": settings["readiness_timeout_s"],
        "revisionHistoryLimit": 2,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": metadata["labels"], "annotations": pod_annotations}, "spec": pod_spec},
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": deployment_spec}


CONFIG_MOUNT = "/etc/mlplatform"


def _env(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if settings["config_secret"]:
        env.append({"name": "MLPLATFORM_CONFIG", "value": f"{CONFIG_MOUNT}/{settings['config_secret_key']}"})
    reserved = {item["name"] for item in env}
    env.extend({"name": key, "value": value} for key, value in sorted(settings["env"].items()) if key not in reserved)
    return env


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }
