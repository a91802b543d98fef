"""Registers the ``kubernetes`` deployment target.

The kubernetes client is imported only when the target is instantiated, so this plugin
loads, and lists itself, without ``pip install 'mlplatform[kubernetes]'``.
"""

from __future__ import annotations

from mlplatform import hookimpl
from mlplatform.core.backends import DeploymentTarget
from plugins_contrib.kubernetes.target import KubernetesTarget

__all__ = ["KubernetesTarget", "register_deployment_targets"]


@hookimpl
def register_deployment_targets() -> list[type[DeploymentTarget]]:
    return [KubernetesTarget]
