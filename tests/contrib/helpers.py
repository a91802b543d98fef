"""Shared by the contrib plugin tests."""

from __future__ import annotations

import datetime as dt
from importlib import metadata
from types import ModuleType

from mlplatform.core.backends import Alert
from mlplatform.core.plugins import PlatformPluginManager, build_plugin_manager

ALERT = Alert(
    title="psi drift on age",
    severity="critical",
    state="firing",
    project="churn",
    message="psi 0.31 > 0.1 for 3 windows",
    labels={"deployment": "churn-prod", "feature": "age"},
    values={"psi": 0.312345678, "windows": 3},
    alert_id=7,
    occurred_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
)


def manager_with(module: ModuleType) -> PlatformPluginManager:
    """A plugin manager that has ``module`` registered exactly once: through its entry point
    once setup.cfg declares one, else as an extra plugin (pluggy refuses the same module twice)."""
    pm = build_plugin_manager()
    if pm.is_registered(module):
        return pm
    return build_plugin_manager(extra_plugins=[module])


def declared_entry_points(name: str) -> list[str]:
    """The module paths the ``mlplatform`` entry point ``name`` points to (empty until declared)."""
    return [ep.value for ep in metadata.entry_points(group="mlplatform", name=name)]
