"""Load the YAML config, resolve references, validate every section with dotted-path errors.

References, resolved once at start-up (a missing one is an error, never None):

- ``{$env: NAME}``: an environment variable;
- ``{$file: path}``: a file's contents, stripped (for mounted secrets);
- ``{$secret: "path#key"}``: a value from the backend selected under ``secrets``.

Environment overrides: ``MLPLATFORM_DATABASE_URL``, ``MLPLATFORM_DATA_DIR``,
``MLPLATFORM_JOBS_BACKEND``, ``MLPLATFORM_REDIS_URL`` (jobs.options.url), and in general
``MLPLATFORM__SECTION__KEY=value`` (value parsed as YAML) for any key.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from mlplatform.core.errors import ConfigError

if TYPE_CHECKING:
    from mlplatform.core.backends import SecretBackend
    from mlplatform.core.plugins import BackendRegistry

ENV_SHORTCUTS = {
    "MLPLATFORM_DATABASE_URL": ("database", "url"),
    "MLPLATFORM_DATA_DIR": ("data_dir",),
    "MLPLATFORM_JOBS_BACKEND": ("jobs", "backend"),
    "MLPLATFORM_REDIS_URL": ("jobs", "options", "url"),
}
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "default.yaml"
MASK = "***"


class SecretStr(str):
    """A string resolved from ``$secret`` or ``$file``: usable as a str, masked when shown."""

    def __repr__(self) -> str:
        return repr(MASK)


# --- schemas ------------------------------------------------------------------------------


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class BackendRefSchema(_Strict):
    backend = fields.String(required=True)
    options = fields.Dict(keys=fields.String(), load_default=dict)


class NamedBackendSchema(BackendRefSchema):
    name = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_-]{0,62}$"))


class DatabaseSchema(_Strict):
    url = fields.String(load_default=None, metadata={"description": "SQLAlchemy URL; default: SQLite in data_dir"})
    echo = fields.Boolean(load_default=False)
    pool_size = fields.Integer(load_default=10, validate=validate.Range(min=1))


class JobsSchema(BackendRefSchema):
    backend = fields.String(load_default="inline", validate=validate.OneOf(["inline", "rq"]))


class AuthSchema(_Strict):
    backends = fields.List(fields.String(), load_default=lambda: ["token"], validate=validate.Length(min=1))
    options = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    cache_seconds = fields.Float(
        load_default=2.0,
        validate=validate.Range(min=0, max=300),
        metadata={"description": "how long a process may reuse a token's identity and a member's role (0: never)"},
    )


class ServerSchema(_Strict):
    host = fields.String(load_default="127.0.0.1")
    port = fields.Integer(load_default=5000, validate=validate.Range(min=1, max=65535))
    workers = fields.Integer(load_default=None, validate=validate.Range(min=1))
    max_content_length = fields.Integer(load_default=16 * 1024 * 1024, validate=validate.Range(min=1024))
    bootstrap_admin = fields.String(load_default="admin")
    secret_key = fields.String(
        load_default=None,
        metadata={"secret": True, "description": "signs portal sessions; default: a key kept in data_dir"},
    )
    secure_cookies = fields.Boolean(
        load_default=False, metadata={"description": "send the portal cookie over HTTPS only"}
    )


class PluginsSchema(_Strict):
    block = fields.List(fields.String(), load_default=list)
    require = fields.List(fields.String(), load_default=list)


class Duration(fields.Field):
    """Seconds: a number, or a string such as ``90s``, ``1.5s``, ``5m``, ``72h``, ``1d``. Loads as a float."""

    UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value) if isinstance(value, str) else None
        if match is None:
            raise ValidationError("a duration such as 30s, 5m, 72h or a number of seconds")
        return float(match.group(1)) * self.UNITS[match.group(2)]


_GATE = re.compile(
    r"\s*(?P<metric>[\w.-]+)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?:(?P<current>current)\s*(?:(?P<operator>[-+*])\s*(?P<amount>-?\d+(?:\.\d+)?(?:e-?\d+)?))?|(?P<value>-?\d+(?:\.\d+)?(?:e-?\d+)?))\s*"
)


class MetricGate(fields.Field):
    """``"accuracy >= 0.9"`` (absolute) or ``"accuracy >= current + 0.01"``, ``"loss <= current * 1.05"``
    (relative to the version now serving the environment). Loads as a dict."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        match = _GATE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValidationError(
                "a gate such as 'accuracy >= 0.9', 'accuracy >= current + 0.01' or 'loss <= current * 1.05'"
            )
        relative = match.group("current") is not None
        return {
            "expression": " ".join(value.split()),
            "metric": match.group("metric"),
            "op": match.group("op"),
            "relative": relative,
            "operator": match.group("operator") if relative else None,
            "value": float(match.group("amount") or 0.0) if relative else float(match.group("value")),
        }


class PoliciesSchema(Schema):
    """The built-in promotion policies of an environment. Other keys are kept as they are, for
    in-house ``check_promotion`` plugins (each validates its own)."""

    class Meta:
        unknown = INCLUDE

    min_metrics = fields.Dict(
        keys=fields.String(),
        values=fields.Float(allow_nan=False),
        metadata={"description": "shorthand gates: {accuracy: 0.9} means 'accuracy >= 0.9'"},
    )
    metric_gates = fields.List(MetricGate(), metadata={"description": "gates on the version's run metrics"})
    healthy_in_previous_minutes = fields.Integer(
        validate=validate.Range(min=0),
        metadata={"description": "the version served the previous environment this long, with no alert firing"},
    )
    require_reference = fields.Boolean(metadata={"description": "the version has reference data for monitoring"})


class GuardSchema(_Strict):
    period = Duration(
        load_default=600.0, metadata={"description": "how long the SLO guard watches after a rollout completes"}
    )
    check_interval = Duration(load_default=5.0, validate=validate.Range(min=0.05))
    min_requests = fields.Integer(load_default=20, validate=validate.Range(min=1))
    error_rate_margin = fields.Float(
        load_default=0.02,
        validate=validate.Range(min=0),
        metadata={"description": "new error rate may exceed the old by this much"},
    )
    latency_p99_ratio = fields.Float(load_default=1.5, validate=validate.Range(min=1))
    latency_p99_margin_ms = fields.Float(load_default=50.0, validate=validate.Range(min=0))
    alerts = fields.Boolean(load_default=True, metadata={"description": "an alert firing on the deployment rolls back"})


def _check_steps(steps: list[int]) -> None:
    if not steps or steps[-1] != 100 or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValidationError("increasing percentages ending at 100, e.g. [10, 50, 100]")


class PromotionSchema(_Strict):
    approval_expiry = Duration(
        load_default=72 * 3600.0, metadata={"description": "a pending request expires after this"}
    )
    strategy = fields.String(load_default="canary", validate=validate.OneOf(["direct", "canary", "blue_green"]))
    canary_steps = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=100)),
        load_default=lambda: [10, 50, 100],
        validate=_check_steps,
    )
    bake_time = Duration(load_default=300.0, metadata={"description": "how long each canary step runs before the next"})
    alert_channels = fields.List(
        fields.String(),
        load_default=None,
        metadata={"description": "channels told of a rollback; default: every alert_channels entry"},
    )
    retire_previous = fields.Boolean(
        load_default=True, metadata={"description": "undeploy the previous version once the guard period passed"}
    )
    guard = fields.Nested(GuardSchema, load_default=lambda: GuardSchema().load({}))


class EnvironmentSchema(_Strict):
    name = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_-]{0,62}$"))
    target = fields.String(required=True)
    approvals = fields.Integer(load_default=0, validate=validate.Range(min=0))
    promotion_only = fields.Boolean(load_default=False)
    policies = fields.Nested(PoliciesSchema, load_default=dict)
    promotion = fields.Nested(
        PromotionSchema(partial=True),
        load_default=dict,
        metadata={"description": "overrides of the top-level promotion section for this environment"},
    )


class MonitoringSchema(_Strict):
    window = fields.String(load_default="1h", validate=validate.Regexp(r"^\d+[smhd]$"))
    drift_metrics = fields.List(fields.String(), load_default=lambda: ["psi", "ks"])
    thresholds = fields.Dict(keys=fields.String(), values=fields.Float(), load_default=dict)
    metric_options = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    feature_thresholds = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.Float()),
        load_default=dict,
        metadata={"description": "per-feature threshold overrides: {feature: {metric: threshold}}"},
    )
    learned_thresholds = fields.Boolean(
        load_default=False,
        metadata={"description": "learn a threshold per (metric, numerical feature) from the reference's spread"},
    )
    learned_threshold_chunks = fields.Integer(
        load_default=10,
        validate=validate.Range(min=2),
        metadata={"description": "random chunks the reference is split into to learn thresholds"},
    )
    close_delay = fields.String(
        load_default="1m",
        validate=validate.Regexp(r"^\d+[smhd]$"),
        metadata={"description": "a window is computed this long after it ended (late captured records)"},
    )
    max_event_bytes = fields.Integer(
        load_default=512 * 1024**2,
        validate=validate.Range(min=1024),
        metadata={"description": "largest events body (JSON, Parquet or Arrow) the events route accepts"},
    )

    @validates_schema
    def _feature_threshold_metrics(self, data: dict[str, Any], **_: Any) -> None:
        enabled = set(data.get("drift_metrics", []))
        for feature, by_metric in data.get("feature_thresholds", {}).items():
            for metric in by_metric:
                if metric not in enabled:
                    raise ValidationError(
                        {"feature_thresholds": {feature: {metric: ["not in monitoring.drift_metrics"]}}}
                    )


class TrackingLimitsSchema(_Strict):
    max_metrics_per_batch = fields.Integer(load_default=1000, validate=validate.Range(min=1000))
    max_params_per_batch = fields.Integer(load_default=100, validate=validate.Range(min=100))
    max_tags_per_batch = fields.Integer(load_default=100, validate=validate.Range(min=100))
    max_key_length = fields.Integer(load_default=250, validate=validate.Range(min=250))
    max_param_value_length = fields.Integer(load_default=6000, validate=validate.Range(min=6000))
    max_tag_value_length = fields.Integer(load_default=8000, validate=validate.Range(min=8000))
    max_artifact_bytes = fields.Integer(load_default=5 * 1024**3, validate=validate.Range(min=1))


class TrackingSchema(_Strict):
    limits = fields.Nested(TrackingLimitsSchema, load_default=lambda: TrackingLimitsSchema().load({}))


class RateLimitSchema(_Strict):
    requests_per_second = fields.Float(load_default=100.0, validate=validate.Range(min=0, min_inclusive=False))
    burst = fields.Integer(load_default=200, validate=validate.Range(min=1))
    backend = fields.String(load_default="memory", validate=validate.OneOf(["memory", "redis"]))
    url = fields.String(load_default="redis://127.0.0.1:6379/0")


class CaptureSchema(_Strict):
    enabled = fields.Boolean(load_default=True)
    sample_rate = fields.Float(load_default=1.0, validate=validate.Range(min=0, max=1))
    buffer_size = fields.Integer(load_default=10000, validate=validate.Range(min=1))
    flush_interval = fields.Float(load_default=5.0, validate=validate.Range(min=0.01))


class GatewaySchema(_Strict):
    rate_limit = fields.Nested(RateLimitSchema, load_default=lambda: RateLimitSchema().load({}))
    capture = fields.Nested(CaptureSchema, load_default=lambda: CaptureSchema().load({}))
    max_body_bytes = fields.Integer(load_default=8 * 1024 * 1024, validate=validate.Range(min=1024))
    version_header = fields.String(load_default="X-MLPlatform-Version")


class LoggingSchema(_Strict):
    level = fields.String(load_default="INFO", validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"]))


class PlatformConfigSchema(_Strict):
    data_dir = fields.String(load_default="data")
    database = fields.Nested(DatabaseSchema, load_default=lambda: DatabaseSchema().load({}))
    artifact_store = fields.Nested(BackendRefSchema, load_default=lambda: {"backend": "local", "options": {}})
    jobs = fields.Nested(JobsSchema, load_default=lambda: JobsSchema().load({}))
    secrets = fields.Nested(BackendRefSchema, load_default=lambda: {"backend": "env", "options": {}})
    auth = fields.Nested(AuthSchema, load_default=lambda: AuthSchema().load({}))
    server = fields.Nested(ServerSchema, load_default=lambda: ServerSchema().load({}))
    plugins = fields.Nested(PluginsSchema, load_default=lambda: PluginsSchema().load({}))
    environments = fields.List(fields.Nested(EnvironmentSchema), load_default=list)
    deployment_targets = fields.List(fields.Nested(NamedBackendSchema), load_default=list)
    alert_channels = fields.List(fields.Nested(NamedBackendSchema), load_default=list)
    monitoring = fields.Nested(MonitoringSchema, load_default=lambda: MonitoringSchema().load({}))
    tracking = fields.Nested(TrackingSchema, load_default=lambda: TrackingSchema().load({}))
    model_flavors = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    gateway = fields.Nested(GatewaySchema, load_default=lambda: GatewaySchema().load({}))
    logging = fields.Nested(LoggingSchema, load_default=lambda: LoggingSchema().load({}))
    promotion = fields.Nested(PromotionSchema, load_default=lambda: PromotionSchema().load({}))

    @validates_schema
    def _unique_names(self, data: dict[str, Any], **_: Any) -> None:
        for section in ("environments", "deployment_targets", "alert_channels"):
            seen: set[str] = set()
            for index, item in enumerate(data.get(section, [])):
                if item["name"] in seen:
                    raise ValidationError({section: {index: {"name": [f"duplicate name {item['name']!r}"]}}})
                seen.add(item["name"])
        channels = {c["name"] for c in data.get("alert_channels", [])}
        for where, section in [("promotion", data.get("promotion") or {})] + [
            (f"environments.{i}.promotion", env.get("promotion") or {})
            for i, env in enumerate(data.get("environments", []))
        ]:
            unknown = [name for name in section.get("alert_channels") or [] if name not in channels]
            if unknown:
                raise ValidationError({where: {"alert_channels": [f"no alert channel named {', '.join(unknown)}"]}})
        targets = {t["name"] for t in data.get("deployment_targets", [])} | {"local"}
        for index, env in enumerate(data.get("environments", [])):
            if env["target"] not in targets:
                raise ValidationError(
                    {
                        "environments": {
                            index: {
                                "target": [f"unknown target {env['target']!r}; defined: {', '.join(sorted(targets))}"]
                            }
                        }
                    }
                )


# --- loading ------------------------------------------------------------------------------


def read_config_file(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parse the YAML file (``MLPLATFORM_CONFIG`` or the embedded default) and apply env overrides."""
    path = Path(path or os.environ.get("MLPLATFORM_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} does not exist; set MLPLATFORM_CONFIG to a YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("", f"config file {path} must hold a mapping at the top level")
    return apply_env_overrides(raw, os.environ)


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    overrides: list[tuple[tuple[str, ...], Any]] = []
    for name, keys in ENV_SHORTCUTS.items():
        if environ.get(name):
            overrides.append((keys, environ[name]))
    for name, value in environ.items():
        if name.startswith("MLPLATFORM__"):
            keys = tuple(k.lower() for k in name[len("MLPLATFORM__") :].split("__") if k)
            overrides.append((keys, yaml.safe_load(value)))
    for keys, value in overrides:
        node = raw
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return raw


def resolve_references(node: Any, path: str = "", secrets: SecretBackend | None = None) -> Any:
    """Replace ``$env`` and ``$file`` references; ``$secret`` too when ``secrets`` is given."""
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "$env":
                if not isinstance(value, str) or value not in os.environ:
                    raise ConfigError(path, f"environment variable {value!r} is not set")
                return os.environ[value]
            if key == "$file":
                try:
                    return SecretStr(Path(str(value)).expanduser().read_text().strip())
                except OSError as exc:
                    raise ConfigError(path, f"cannot read file {value!r}: {exc.strerror}") from None
            if key == "$secret":
                if secrets is None:
                    return node
                secret_path, sep, secret_key = str(value).partition("#")
                if not sep or not secret_path or not secret_key:
                    raise ConfigError(path, f"$secret must look like 'path#key', got {value!r}")
                try:
                    return SecretStr(secrets.get(secret_path, secret_key))
                except ConfigError as exc:
                    raise type(exc)(path, exc.message) from None
        return {k: resolve_references(v, f"{path}.{k}" if path else str(k), secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_references(v, f"{path}.{i}", secrets) for i, v in enumerate(node)]
    return node


def _first_error(messages: Any, path: str = "") -> tuple[str, str]:
    if isinstance(messages, dict):
        key = sorted(messages, key=str)[0]
        value = messages[key]
        if key == "_schema":
            return _first_error(value, path)
        return _first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(messages, list):
        first = messages[0]
        if isinstance(first, (dict, list)):
            return _first_error(first, path)
        return path, _humanise(str(first))
    return path, _humanise(str(messages))


def _humanise(message: str) -> str:
    return {
        "Missing data for required field.": "missing required field",
        "Unknown field.": "unknown key",
    }.get(message, message)


def validate_schema(schema: Schema, data: Any, path: str) -> dict[str, Any]:
    try:
        return schema.load(data if data is not None else {})
    except ValidationError as exc:
        sub, message = _first_error(exc.messages)
        raise ConfigError(".".join(p for p in (path, sub) if p), message) from None


def validate_backend_options(
    registry: BackendRegistry, kind: str, name: str, options: Any, path: str
) -> dict[str, Any]:
    cls = registry.get(kind, name, f"{path}.backend" if path else "backend")
    loaded = validate_schema(cls.Config(unknown=RAISE), options, f"{path}.options")
    for key in secret_fields(cls.Config):
        if isinstance(loaded.get(key), str):
            loaded[key] = SecretStr(loaded[key])
    return loaded


def load_config(raw: dict[str, Any], registry: BackendRegistry, platform: Any = None) -> dict[str, Any]:
    """Resolve and validate ``raw`` against the core schema and each selected backend's schema."""
    raw = resolve_references(raw)
    secrets_section = validate_schema(BackendRefSchema(), raw.get("secrets") or {"backend": "env"}, "secrets")
    secret_options = validate_backend_options(
        registry, "secret_backend", secrets_section["backend"], secrets_section["options"], "secrets"
    )
    secret_backend = registry.get("secret_backend", secrets_section["backend"], "secrets.backend")(
        secret_options, platform
    )
    raw = resolve_references(raw, secrets=secret_backend)
    config = validate_schema(PlatformConfigSchema(), raw, "")
    config["secrets"]["options"] = secret_options
    ref = config["artifact_store"]
    ref["options"] = validate_backend_options(
        registry, "artifact_store", ref["backend"], ref["options"], "artifact_store"
    )
    for index, name in enumerate(config["auth"]["backends"]):
        options = config["auth"]["options"].get(name, {})
        config["auth"]["options"][name] = validate_backend_options(
            registry, "auth_backend", name, options, f"auth.backends.{index}"
        )
    for section, kind in (("deployment_targets", "deployment_target"), ("alert_channels", "alert_channel")):
        for index, item in enumerate(config[section]):
            item["options"] = validate_backend_options(
                registry, kind, item["backend"], item["options"], f"{section}.{index}"
            )
    monitoring = config["monitoring"]
    for index, name in enumerate(monitoring["drift_metrics"]):
        registry.get("drift_metric", name, f"monitoring.drift_metrics.{index}")
    for name, options in monitoring["metric_options"].items():
        if name not in monitoring["drift_metrics"]:
            raise ConfigError(f"monitoring.metric_options.{name}", f"{name!r} is not in monitoring.drift_metrics")
        metric = registry.get("drift_metric", name, f"monitoring.metric_options.{name}")
        monitoring["metric_options"][name] = validate_schema(
            metric.Config(unknown=RAISE), options, f"monitoring.metric_options.{name}"
        )
    for name, options in config["model_flavors"].items():
        flavor = registry.get("model_flavor", name, f"model_flavors.{name}")
        config["model_flavors"][name] = validate_schema(flavor.Config(unknown=RAISE), options, f"model_flavors.{name}")
    config = _keep_secret_marks(config, raw)
    config["_secret_backend"] = secret_backend
    return config


def _keep_secret_marks(loaded: Any, raw: Any) -> Any:
    """Schemas turn a ``SecretStr`` into a plain str; mark it again so dumps still mask it."""
    if isinstance(raw, SecretStr) and isinstance(loaded, str):
        return SecretStr(loaded)
    if isinstance(loaded, dict) and isinstance(raw, dict):
        return {k: _keep_secret_marks(v, raw.get(k)) for k, v in loaded.items()}
    if isinstance(loaded, list) and isinstance(raw, list):
        return [_keep_secret_marks(v, r) for v, r in zip(loaded, raw, strict=False)] + loaded[len(raw) :]
    return loaded


_URL_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")


def masked(config: Any) -> Any:
    """A copy fit for printing: values from ``$secret``/``$file``, secret fields and URL passwords hidden."""
    if isinstance(config, SecretStr):
        return MASK
    if isinstance(config, dict):
        return {k: masked(v) for k, v in config.items() if not k.startswith("_")}
    if isinstance(config, list):
        return [masked(v) for v in config]
    if isinstance(config, str):
        return _URL_PASSWORD.sub(r"\1***\3", config)
    return config


def secret_fields(schema_cls: type[Schema]) -> set[str]:
    return {name for name, fld in schema_cls().fields.items() if fld.metadata.get("secret")}
