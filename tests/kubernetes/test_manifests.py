"""Rendering, names, labels and options of the ``kubernetes`` target; no API calls.

Every rendered manifest is validated against the Kubernetes OpenAPI schemas shipped by
``kubernetes-validate`` in strict mode (unknown fields are errors).
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
from marshmallow import ValidationError

from mlplatform.core.backends import DeploymentSpec
from mlplatform.core.errors import InvalidInput
from plugins_contrib.kubernetes.config import KubernetesConfig
from plugins_contrib.kubernetes.manifests import Manifests, render
from plugins_contrib.kubernetes.names import label_value, parse_reference, reference, resource_name

# The newest release the installed kubernetes-validate has schemas for (1.37 when written).
K8S_VERSION = kubernetes_validate.latest_version()
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SHA = "AB" * 32

FULL_OPTIONS: dict[str, Any] = {
    "namespace": "ml-prod",
    "image": "registry.example.com/ml/mlplatform:1.4.2",
    "image_pull_policy": "Always",
    "image_pull_secrets": ["registry-creds"],
    "replicas": 2,
    "min_replicas": 2,
    "max_replicas": 10,
    "target_cpu_utilization": 65,
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    "port": 9000,
    "service_type": "LoadBalancer",
    "service_url_template": "https://models.example.com/{namespace}/{name}",
    "kubeconfig": "/etc/mlplatform/kubeconfig",
    "context": "prod",
    "field_manager": "mlplatform-prod",
    "service_account": "model-server",
    "config_secret": "mlplatform-model-server",
    "config_secret_key": "platform.yaml",
    "env": {"OMP_NUM_THREADS": "2", "MLPLATFORM_CONFIG": "ignored: the option wins"},
    "labels": {"team": "fraud", "app.kubernetes.io/managed-by": "someone-else"},
    "annotations": {"owner": "fraud-team@example.com"},
    "readiness_timeout_s": 900,
    "request_timeout_s": 10,
}


def spec(project: str = "churn", model: str = "iris", version: int = 3, **kwargs: Any) -> DeploymentSpec:
    return DeploymentSpec(project, model, version, "sklearn", f"models/{model}/{version}", SHA, **kwargs)


def rendered(options: dict[str, Any] | None = None, the_spec: DeploymentSpec | None = None) -> Manifests:
    settings = KubernetesConfig().load(options or {"namespace": "models", "image": "registry.example/mlplatform:1.0"})
    return render(the_spec or spec(), settings)


def validate_strict(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def container(manifests: Manifests) -> dict[str, Any]:
    return manifests.deployment["spec"]["template"]["spec"]["containers"][0]


# --- schema validation ------------------------------------------------------------------------


def test_the_schemas_are_recent_and_strict() -> None:
    """Guards the checks below: a recent Kubernetes, and strict mode rejects unknown fields."""
    assert tuple(int(p) for p in K8S_VERSION.split(".")[:2]) >= (1, 30)
    manifest = rendered().deployment
    manifest["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strict(manifest)


def test_default_manifests_are_valid() -> None:
    manifests = rendered()
    assert [m["kind"] for m in manifests.all()] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for manifest in manifests.all():
        validate_strict(manifest)


def test_full_option_manifests_are_valid() -> None:
    overrides = spec(resources={"requests": {"memory": "3Gi"}, "limits": {"memory": "4Gi"}, "max_replicas": 20})
    for manifest in rendered(FULL_OPTIONS, overrides).all():
        validate_strict(manifest)


@pytest.mark.parametrize(
    ("project", "model", "version"),
    [("Fraud_Team", "XGB.Model v2", 7), ("a-b" * 20, "m" * 80, 123456), ("p", "model-with-dashes", 1)],
)
def test_awkward_names_render_valid_manifests(project: str, model: str, version: int) -> None:
    for manifest in rendered(the_spec=spec(project, model, version)).all():
        validate_strict(manifest)


# --- names and references ------------------------------------------------------------------------


def test_plain_names_read_as_the_version() -> None:
    assert resource_name("churn", "iris", 3) == "mlp-churn-iris-v3"
    assert resource_name("churn", "gradient-boost", 12) == "mlp-churn-gradient-boost-v12"


@pytest.mark.parametrize(
    ("project", "model", "version"),
    [("Churn", "Iris_Model", 1), ("team-a", "x", 1), ("p" * 40, "m" * 40, 99), ("é", "ü", 2), ("-", "-", 1)],
)
def test_lossy_or_ambiguous_names_are_safe_and_hashed(project: str, model: str, version: int) -> None:
    name = resource_name(project, model, version)
    assert len(name) <= 63 and DNS_1035.match(name), name
    assert re.search(r"-[0-9a-f]{8}$", name)
    assert name == resource_name(project, model, version)


def test_names_that_would_read_alike_differ() -> None:
    assert resource_name("a-b", "c", 1) != resource_name("a", "b-c", 1)
    assert resource_name("churn", "Iris", 1) != resource_name("churn", "iris", 1)
    assert resource_name("p" * 70, "m", 1) != resource_name("p" * 70, "m", 2)


def test_references_round_trip() -> None:
    assert parse_reference(reference("models", "mlp-a-b-v1")) == ("models", "mlp-a-b-v1")
    for bad in ("", "models", "/x", "models/", "a/b/c"):
        assert parse_reference(bad) is None


# --- labels, command, probes ---------------------------------------------------------------------


def test_labels_name_project_model_and_version() -> None:
    manifests = rendered()
    expected = {
        "app.kubernetes.io/name": "mlplatform-model-server",
        "app.kubernetes.io/instance": "mlp-churn-iris-v3",
        "app.kubernetes.io/managed-by": "mlplatform",
        "mlplatform.io/project": "churn",
        "mlplatform.io/model": "iris",
        "mlplatform.io/version": "3",
    }
    for manifest in manifests.all():
        assert expected.items() <= manifest["metadata"]["labels"].items()
        assert manifest["metadata"]["namespace"] == "models"
        assert manifest["metadata"]["name"] == "mlp-churn-iris-v3"
    template_labels = manifests.deployment["spec"]["template"]["metadata"]["labels"]
    assert expected.items() <= template_labels.items()
    selector = manifests.deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template_labels.items()
    assert manifests.service["spec"]["selector"] == selector


def test_odd_identities_become_valid_labels_and_exact_annotations() -> None:
    manifests = rendered(the_spec=spec("Fraud Team", "x" * 70, 4))
    labels = manifests.deployment["metadata"]["labels"]
    assert all(len(v) <= 63 and LABEL_VALUE.match(v) for v in labels.values())
    assert manifests.deployment["metadata"]["annotations"]["mlplatform.io/model"] == "x" * 70
    assert manifests.deployment["metadata"]["annotations"]["mlplatform.io/project"] == "Fraud Team"
    assert label_value("ok.value_1") == "ok.value_1"


def test_operator_labels_are_added_but_never_override_the_platforms() -> None:
    labels = rendered(FULL_OPTIONS).deployment["metadata"]["labels"]
    assert labels["team"] == "fraud"
    assert labels["app.kubernetes.io/managed-by"] == "mlplatform"


def test_container_runs_the_model_server_with_probes() -> None:
    c = container(rendered())
    assert c["image"] == "registry.example/mlplatform:1.0"
    assert c["command"] + c["args"] == [
        "mlplatform",
        "model-server",
        "--project",
        "churn",
        "--model",
        "iris",
        "--version",
        "3",
        "--port",
        "8080",
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
    assert c["env"] == []


def test_full_options_reach_the_manifests() -> None:
    manifests = rendered(FULL_OPTIONS, spec(resources={"limits": {"memory": "4Gi"}}))
    c = container(manifests)
    pod = manifests.deployment["spec"]["template"]["spec"]
    assert c["imagePullPolicy"] == "Always" and pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["serviceAccountName"] == "model-server"
    assert c["args"][-1] == "9000" and c["ports"][0]["containerPort"] == 9000
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert c["env"] == [
        {"name": "MLPLATFORM_CONFIG", "value": "/etc/mlplatform/platform.yaml"},
        {"name": "OMP_NUM_THREADS", "value": "2"},
    ]
    assert c["volumeMounts"] == [{"name": "mlplatform-config", "mountPath": "/etc/mlplatform", "readOnly": True}]
    assert pod["volumes"] == [{"name": "mlplatform-config", "secret": {"secretName": "mlplatform-model-server"}}]
    assert manifests.service["spec"]["type"] == "LoadBalancer"
    assert manifests.service["spec"]["ports"][0]["port"] == 9000
    assert manifests.deployment["spec"]["progressDeadlineSeconds"] == 900
    assert manifests.deployment["metadata"]["annotations"]["owner"] == "fraud-team@example.com"


def test_replicas_pinned_without_autoscaling_and_left_to_the_hpa_with_it() -> None:
    fixed = rendered({"namespace": "models", "image": "i:1", "replicas": 3})
    assert fixed.deployment["spec"]["replicas"] == 3
    assert (fixed.autoscaler["spec"]["minReplicas"], fixed.autoscaler["spec"]["maxReplicas"]) == (3, 3)
    scaling = rendered(FULL_OPTIONS)
    assert "replicas" not in scaling.deployment["spec"]
    hpa = scaling.autoscaler["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": scaling.name}
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 65}


def test_the_manifests_do_not_share_mutable_parts() -> None:
    manifests = rendered()
    manifests.service["metadata"]["labels"]["x"] = "y"
    assert "x" not in manifests.deployment["metadata"]["labels"]


def test_bad_version_resources_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="resources"):
        rendered(the_spec=spec(resources={"requests": {"cpu": "lots"}}))
    with pytest.raises(InvalidInput, match=">= 1"):
        rendered(the_spec=spec(resources={"replicas": 0}))
    with pytest.raises(InvalidInput, match="CPU request"):
        rendered(
            {"namespace": "models", "image": "i:1", "max_replicas": 4, "resources": {"requests": {"memory": "1Gi"}}}
        )


# --- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"image": "i:1"}, "namespace"),
        ({"namespace": "models"}, "image"),
        ({"namespace": "Models", "image": "i:1"}, "namespace"),
        ({"namespace": "models", "image": "i:1", "replicaz": 2}, "replicaz"),
        ({"namespace": "models", "image": "i:1", "min_replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({"namespace": "models", "image": "i:1", "resources": {"requests": {"cpu": "1 core"}}}, "resources"),
        ({"namespace": "models", "image": "i:1", "service_type": "ExternalName"}, "service_type"),
        ({"namespace": "models", "image": "i:1", "in_cluster": True, "kubeconfig": "/k"}, "in_cluster"),
        ({"namespace": "models", "image": "i:1", "service_url_template": "http://{host}"}, "service_url_template"),
    ],
)
def test_bad_options_are_rejected_by_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        KubernetesConfig().load(options)
    assert field in info.value.messages


def test_defaults() -> None:
    settings = KubernetesConfig().load({"namespace": "models", "image": "i:1"})
    assert settings["replicas"] == 1 and settings["port"] == 8080 and settings["service_type"] == "ClusterIP"
    assert settings["field_manager"] == "mlplatform" and settings["in_cluster"] is False


def test_loaded_options_load_again_unchanged() -> None:
    """Core validates the options, then the target loads them once more."""
    for options in ({"namespace": "models", "image": "i:1"}, FULL_OPTIONS):
        settings = KubernetesConfig().load(options)
        assert KubernetesConfig().load(settings) == settings
