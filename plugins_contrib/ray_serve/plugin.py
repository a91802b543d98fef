"""Registers the ``ray_serve`` deployment target.

Ray is imported only when the target is instantiated, so this plugin loads, and lists
itself, without ``pip install 'mlplatform[ray]'``.
"""

from __future__ import annotations

from mlplatform import hookimpl
from mlplatform.core.backends import DeploymentTarget
from plugins_contrib.ray_serve.target import RayServeTarget

__all__ = ["RayServeTarget", "register_deployment_targets"]


@hookimpl
def register_deployment_targets() -> list[type[DeploymentTarget]]:
    return [RayServeTarget]
