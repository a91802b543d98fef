"""Environments and their deployment targets, as the operator configured them.

``environments`` is ordered (promotion goes left to right); each names a ``target``: an entry
of ``deployment_targets`` (backend + options) or ``local`` without an entry, meaning the
built-in in-process backend with its default options. Target instances are built once per
platform and kept, so the deploy job and the gateway of one process share one ``local``
target (and its loaded models).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlplatform.core.backends import DeploymentTarget
from mlplatform.core.errors import ConfigError, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform


def environment(platform: Platform, name: str) -> dict[str, Any]:
    """The config of environment ``name``. ``NotFound`` naming the configured ones otherwise."""
    for env in platform.environments:
        if env["name"] == name:
            return env
    names = ", ".join(e["name"] for e in platform.environments) or "none"
    raise NotFound(f"environment {name!r} is not configured; environments: {names}")


def target_config(platform: Platform, name: str) -> tuple[int | None, dict[str, Any]]:
    """``(index in deployment_targets or None, {"name", "backend", "options"})`` for target ``name``."""
    for index, item in enumerate(platform.config["deployment_targets"]):
        if item["name"] == name:
            return index, item
    if name == "local":
        return None, {"name": "local", "backend": "local", "options": {}}
    raise NotFound(f"deployment target {name!r} is not configured")


def target(platform: Platform, name: str) -> DeploymentTarget:
    """The platform's instance of target ``name``, built on first use and kept.

    Raises ``NotFound`` for an unconfigured name and ``ServiceUnavailable`` if the backend
    cannot start (its SDK is missing, its cluster unreachable): both name the target.
    """

    def build() -> DeploymentTarget:
        index, item = target_config(platform, name)
        path = f"deployment_targets.{index}" if index is not None else "environments"
        try:
            return platform.backend("deployment_target", item["backend"], dict(item["options"]), path)  # type: ignore[return-value]
        except ConfigError as exc:
            raise ServiceUnavailable(f"deployment target {name!r} cannot start: {exc.message}") from None

    return platform.shared(f"deployment_target:{name}", build)


def target_for_environment(platform: Platform, env_name: str) -> tuple[dict[str, Any], DeploymentTarget]:
    """``(environment config, its target instance)``."""
    env = environment(platform, env_name)
    return env, target(platform, env["target"])
