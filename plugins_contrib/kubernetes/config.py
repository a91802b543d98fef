"""The ``kubernetes`` target's options: one strict marshmallow schema, unknown keys rejected.

Every field is documented through ``metadata["description"]`` so ``mlplatform plugins`` and
``GET /plugins`` show it. Quantities (``cpu: 500m``, ``memory: 1Gi``) are checked for shape
here; Kubernetes checks their meaning when the manifests are applied.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

# The Kubernetes quantity grammar, less the rarely used signed and exponent forms.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"memory": "1Gi"},
}


def _quantity(value: str) -> None:
    if not _QUANTITY.match(value):
        raise ValidationError(f"{value!r} is not a Kubernetes quantity, e.g. 500m, 2, 512Mi, 1Gi")


class QuantitiesSchema(Schema):
    cpu = fields.String(validate=_quantity, metadata={"description": "e.g. 250m or 2"})
    memory = fields.String(validate=_quantity, metadata={"description": "e.g. 512Mi or 2Gi"})


class ResourcesSchema(Schema):
    requests = fields.Nested(QuantitiesSchema, load_default=dict)
    limits = fields.Nested(QuantitiesSchema, load_default=dict)


_dns_label = validate.And(validate.Length(min=1, max=63), validate.Regexp(_DNS_LABEL, error="must be a DNS-1123 label"))
_dns_subdomain = validate.And(
    validate.Length(min=1, max=253), validate.Regexp(_DNS_SUBDOMAIN, error="must be a DNS-1123 subdomain")
)


class KubernetesConfig(Schema):
    """Options of the ``kubernetes`` deployment target (see the plugin's README)."""

    namespace = fields.String(required=True, validate=_dns_label, metadata={"description": "namespace of every object"})
    image = fields.String(
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "model-server image, e.g. registry/mlplatform:1.0"},
    )
    image_pull_policy = fields.String(
        load_default="IfNotPresent", validate=validate.OneOf(["Always", "IfNotPresent", "Never"])
    )
    image_pull_secrets = fields.List(
        fields.String(validate=_dns_subdomain),
        load_default=list,
        metadata={"description": "Secret names for a private registry"},
    )
    replicas = fields.Integer(
        load_default=1, validate=validate.Range(min=1), metadata={"description": "replicas when not autoscaling"}
    )
    min_replicas = fields.Integer(
        load_default=None, validate=validate.Range(min=1), metadata={"description": "HPA minimum; default: replicas"}
    )
    max_replicas = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "HPA maximum; default: min_replicas (no scaling)"},
    )
    target_cpu_utilization = fields.Integer(
        load_default=80,
        validate=validate.Range(min=1, max=1000),
        metadata={"description": "HPA target, % of the CPU request"},
    )
    resources = fields.Nested(
        ResourcesSchema,
        load_default=lambda: {k: dict(v) for k, v in DEFAULT_RESOURCES.items()},
        metadata={"description": "container requests/limits (cpu, memory); spec.resources overrides per version"},
    )
    port = fields.Integer(load_default=8080, validate=validate.Range(min=1, max=65535))
    service_type = fields.String(
        load_default="ClusterIP", validate=validate.OneOf(["ClusterIP", "NodePort", "LoadBalancer"])
    )
    service_url_template = fields.String(
        load_default="http://{name}.{namespace}.svc:{port}",
        metadata={"description": "base URL predict() posts to; placeholders {name}, {namespace}, {port}"},
    )
    kubeconfig = fields.String(
        load_default=None, metadata={"description": "kubeconfig file; default: ~/.kube/config or KUBECONFIG"}
    )
    context = fields.String(
        load_default=None, metadata={"description": "kubeconfig context; default: its current context"}
    )
    in_cluster = fields.Boolean(
        load_default=False, metadata={"description": "use the pod's service account instead of a kubeconfig"}
    )
    field_manager = fields.String(load_default="mlplatform", validate=validate.Length(min=1, max=128))
    service_account = fields.String(
        load_default=None, validate=_dns_subdomain, metadata={"description": "the pods' service account"}
    )
    config_secret = fields.String(
        load_default=None,
        validate=_dns_subdomain,
        metadata={
            "description": "a Secret holding the platform config the model server starts from (database and "
            "artifact store access); mounted read-only and named by MLPLATFORM_CONFIG"
        },
    )
    config_secret_key = fields.String(
        load_default="config.yaml", metadata={"description": "the file's key in config_secret"}
    )
    env = fields.Dict(
        keys=fields.String(), values=fields.String(), load_default=dict, metadata={"description": "extra env"}
    )
    labels = fields.Dict(
        keys=fields.String(), values=fields.String(), load_default=dict, metadata={"description": "extra labels"}
    )
    annotations = fields.Dict(
        keys=fields.String(), values=fields.String(), load_default=dict, metadata={"description": "extra annotations"}
    )
    readiness_timeout_s = fields.Integer(
        load_default=600,
        validate=validate.Range(min=10),
        metadata={"description": "Deployment progressDeadlineSeconds: not ready by then -> failed"},
    )
    request_timeout_s = fields.Float(
        load_default=30.0, validate=validate.Range(min=0.1), metadata={"description": "API and predict calls"}
    )

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        low = data.get("min_replicas") or data.get("replicas", 1)
        high = data.get("max_replicas")
        if high is not None and high < low:
            raise ValidationError(f"must be >= min_replicas ({low})", "max_replicas")
        if data.get("in_cluster") and (data.get("kubeconfig") or data.get("context")):
            raise ValidationError("in_cluster excludes kubeconfig and context", "in_cluster")
        template = data.get("service_url_template", "")
        try:
            template.format(name="n", namespace="ns", port=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValidationError(
                f"bad placeholder {exc}; use {{name}}, {{namespace}}, {{port}}", "service_url_template"
            ) from None
