"""Build the plugin manager and the registry of backend classes it contributes.

Loading policy, in order: the built-in plugins, then the ``mlplatform`` entry-point group
(which includes ``plugins_contrib``), minus anything in ``plugins.block``. Then every name in
``plugins.require`` must be present, every hookimpl must match a spec (``check_pending``),
and every backend class must be complete and uniquely named. Any failure is a
``PluginError`` at start-up naming the plugin and the fix.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from marshmallow import Schema, fields

import mlplatform
from mlplatform.core import hookspecs
from mlplatform.core.backends import BACKEND_KINDS, Backend
from mlplatform.core.errors import ConfigError, PluginError

log = logging.getLogger("mlplatform.plugins")

BUILTIN_PLUGINS = (
    "mlplatform.plugins.local_storage",
    "mlplatform.plugins.secrets",
    "mlplatform.plugins.token_auth",
    "mlplatform.plugins.channels",
    "mlplatform.plugins.drift",
    "mlplatform.plugins.flavors",
    "mlplatform.plugins.local_target",
    "mlplatform.plugins.policies",
)

REGISTER_HOOKS = {
    "artifact_store": "register_artifact_stores",
    "deployment_target": "register_deployment_targets",
    "drift_metric": "register_drift_metrics",
    "alert_channel": "register_alert_channels",
    "auth_backend": "register_auth_backends",
    "secret_backend": "register_secret_backends",
    "model_flavor": "register_model_flavors",
}

# What to install for backends shipped in plugins_contrib, for "not installed" messages.
INSTALL_HINTS = {
    "s3": "for S3: pip install 'mlplatform[s3]'",
    "azure_blob": "for Azure Blob: pip install 'mlplatform[azure]'",
    "ray_serve": "for Ray Serve: pip install 'mlplatform[ray]'",
    "kubernetes": "for Kubernetes: pip install 'mlplatform[kubernetes]'",
    "vault": "for Vault: pip install 'mlplatform[vault]'",
    "onnx": "for ONNX models: pip install 'mlplatform[onnx]'",
    "rq": "for RQ: pip install 'mlplatform' (rq ships with the core)",
}


@dataclass
class BackendEntry:
    cls: type[Backend]
    plugin: str


@dataclass
class PluginInfo:
    name: str
    version: str
    hooks: list[str] = field(default_factory=list)
    backends: list[dict[str, Any]] = field(default_factory=list)


class BackendRegistry:
    """Backend classes by kind and name, as contributed by the loaded plugins."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, BackendEntry]] = {kind: {} for kind in REGISTER_HOOKS}

    def add(self, kind: str, cls: Any, plugin: str) -> None:
        base = BACKEND_KINDS[kind]
        if not (inspect.isclass(cls) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {plugin!r}: {REGISTER_HOOKS[kind]}() returned {cls!r}, "
                f"which is not a subclass of {base.__module__}.{base.__name__}"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r}: {cls.__qualname__} has no 'name' attribute; set name = '...'")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise PluginError(
                f"plugin {plugin!r}: {kind} {name!r} ({cls.__qualname__}) does not implement {missing}; "
                f"implement every abstract method of {base.__name__}"
            )
        if not (inspect.isclass(cls.Config) and issubclass(cls.Config, Schema)):
            raise PluginError(f"plugin {plugin!r}: {kind} {name!r} Config must be a marshmallow Schema class")
        existing = self._entries[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise PluginError(
                f"two {kind} backends are named {name!r}: one from plugin {existing.plugin!r}, "
                f"one from plugin {plugin!r}; block one with plugins.block or rename it"
            )
        self._entries[kind][name] = BackendEntry(cls, plugin)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> dict[str, BackendEntry]:
        return dict(self._entries[kind])

    def get(self, kind: str, name: str, path: str) -> type[Backend]:
        """The class for ``name``; a ``ConfigError`` at ``path`` says what is available and what to install."""
        entry = self._entries[kind].get(name)
        if entry is not None:
            return entry.cls
        available = self.names(kind)
        message = f"{name!r} is not installed; available: {', '.join(available) or 'none'}"
        hints = [
            INSTALL_HINTS[n]
            for n in [name, *difflib.get_close_matches(name, INSTALL_HINTS, n=2, cutoff=0.5)]
            if n in INSTALL_HINTS
        ]
        if hints:
            message += "; " + "; ".join(dict.fromkeys(hints))
        raise ConfigError(path, message)


class PlatformPluginManager(pluggy.PluginManager):
    """A pluggy manager that also knows where each plugin came from and its version."""

    def __init__(self) -> None:
        super().__init__("mlplatform")
        self.add_hookspecs(hookspecs)
        self.versions: dict[str, str] = {}
        self.backends = BackendRegistry()
        self._infos: list[PluginInfo] | None = None

    def plugin_infos(self) -> list[PluginInfo]:
        """What is loaded; fixed once the manager is built, so it is computed once."""
        if self._infos is None:
            self._infos = self._describe()
        return self._infos

    def _describe(self) -> list[PluginInfo]:
        infos: dict[str, PluginInfo] = {}
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(caller.name for caller in self.get_hookcallers(plugin) or [])
            infos[name] = PluginInfo(name, self.versions.get(name, mlplatform.__version__), hooks)
        for kind in REGISTER_HOOKS:
            for backend_name, entry in self.backends.entries(kind).items():
                if entry.plugin in infos:
                    infos[entry.plugin].backends.append(
                        {"kind": kind, "name": backend_name, "config_schema": describe_schema(entry.cls.Config)}
                    )
        return sorted(infos.values(), key=lambda info: info.name)


def build_plugin_manager(
    block: Iterable[str] = (),
    require: Iterable[str] = (),
    extra_plugins: Iterable[Any] = (),
    load_entry_points: bool = True,
) -> PlatformPluginManager:
    """A fresh plugin manager: built-ins, entry points, ``extra_plugins`` (tests), checked."""
    pm = PlatformPluginManager()
    for name in block:
        pm.set_blocked(name)
    for module_name in BUILTIN_PLUGINS:
        if not pm.is_blocked(module_name):
            pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points:
        _load_entry_points(pm)
    for plugin in extra_plugins:
        pm.register(plugin)
    missing = [name for name in require if pm.get_plugin(name) is None]
    if missing:
        loaded = ", ".join(sorted(n for n, p in pm.list_name_plugin() if p is not None))
        raise PluginError(
            f"plugins.require lists {', '.join(missing)}, which is not loaded (loaded: {loaded}); "
            f"install the package that provides it or remove it from plugins.require"
        )
    _check_pending(pm)
    for kind, hook_name in REGISTER_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            for cls in impl.function() or []:
                pm.backends.add(kind, cls, impl.plugin_name)
    if os.environ.get("MLPLATFORM_TRACE_PLUGINS") == "1":
        enable_tracing(pm)
    return pm


def _load_entry_points(pm: PlatformPluginManager) -> None:
    for ep in metadata.entry_points(group="mlplatform"):
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            dist = ep.dist.name if ep.dist else "its package"
            raise PluginError(
                f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}; "
                f"reinstall {dist}, or add {ep.name!r} to plugins.block"
            ) from exc
        pm.register(plugin, name=ep.name)
        pm.versions[ep.name] = ep.dist.version if ep.dist else "unknown"


def _check_pending(pm: PlatformPluginManager) -> None:
    known = [name for name in dir(hookspecs) if getattr(getattr(hookspecs, name), "mlplatform_spec", None) is not None]
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        for attr in dir(plugin):
            function = getattr(plugin, attr, None)
            if pm.parse_hookimpl_opts(plugin, attr) is None or attr in known:
                continue
            guess = difflib.get_close_matches(attr, known, n=1)
            fix = f"rename it to {guess[0]!r}" if guess else f"use one of: {', '.join(sorted(known))}"
            raise PluginError(f"plugin {name!r} implements unknown hook {attr!r} ({function!r}); {fix}")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc


def enable_tracing(pm: pluggy.PluginManager) -> None:
    """Log every hook call and its results at INFO on ``mlplatform.plugins``."""

    def before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
        log.info("hook %s(%s) -> %s", hook_name, ", ".join(kwargs), [impl.plugin_name for impl in hook_impls])

    def after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
        log.info(
            "hook %s returned %r", hook_name, outcome.get_result() if outcome.exception is None else outcome.exception
        )

    pm.add_hookcall_monitoring(before, after)


def describe_schema(schema_cls: type[Schema]) -> dict[str, Any]:
    """A plain description of a backend's options, for ``/plugins`` and ``mlplatform plugins``."""
    described: dict[str, Any] = {}
    for name, fld in schema_cls().fields.items():
        item: dict[str, Any] = {"type": type(fld).__name__, "required": fld.required}
        if fld.load_default is not None and not callable(fld.load_default) and fld.load_default is not fields.missing_:
            item["default"] = fld.load_default
        if fld.metadata.get("secret"):
            item["secret"] = True
        if fld.metadata.get("description"):
            item["description"] = fld.metadata["description"]
        if isinstance(fld, fields.Nested):
            item["fields"] = describe_schema(type(fld.schema))
        described[name] = item
    return described
