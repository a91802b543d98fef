"""Every hook of mlplatform. These docstrings are the plugin contract.

A plugin is a module (or object) with functions decorated ``@mlplatform.hookimpl`` whose names
match the specs below; it is registered through the ``mlplatform`` entry-point group. An
implementation may accept fewer arguments than its spec, so specs can grow. Hooks are called
with keyword arguments only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from mlplatform.core.backends import (
        AlertChannel,
        ArtifactStore,
        AuthBackend,
        DeploymentTarget,
        DriftMetric,
        ModelFlavor,
        PlatformEvent,
        PolicyResult,
        SecretBackend,
    )

hookspec = pluggy.HookspecMarker("mlplatform")


@hookspec
def register_artifact_stores() -> list[type[ArtifactStore]]:
    """Contribute artifact store classes (subclasses of ``ArtifactStore``).

    Called once when the platform builds its plugin manager, before config is validated.
    Takes no arguments. Return a list of classes, each with a unique ``name`` and a
    ``Config`` schema for its options; return None or ``[]`` to contribute nothing. Do not
    import a heavy SDK here: import it when the class is instantiated.

    Raises nothing; a duplicate ``name`` across plugins fails start-up with ``PluginError``.

    .. versionadded:: 0.1
    """


@hookspec
def register_deployment_targets() -> list[type[DeploymentTarget]]:
    """Contribute deployment target classes (subclasses of ``DeploymentTarget``).

    Called once when the plugin manager is built. Takes no arguments. Return a list of
    classes, each with a unique ``name`` and a ``Config`` schema; None or ``[]`` contributes
    nothing. A target serves one model version per reference; the platform gateway splits
    traffic between versions, so canary rollouts behave the same on every target.

    Raises nothing; a duplicate ``name`` fails start-up with ``PluginError``.

    .. versionadded:: 0.1
    """


@hookspec
def register_drift_metrics() -> list[type[DriftMetric]]:
    """Contribute drift metric classes (subclasses of ``DriftMetric``).

    Called once when the plugin manager is built. Takes no arguments. Return a list of
    classes, each with a unique ``name``, a ``feature_kind`` (numerical, categorical or
    both), a ``default_threshold`` and a pure-numpy ``compute``; None or ``[]`` contributes
    nothing. The operator enables metrics by name under ``monitoring.drift_metrics``.

    Raises nothing; a duplicate ``name`` fails start-up with ``PluginError``.

    .. versionadded:: 0.1
    """


@hookspec
def register_alert_channels() -> list[type[AlertChannel]]:
    """Contribute alert channel classes (subclasses of ``AlertChannel``).

    Called once when the plugin manager is built. Takes no arguments. Return a list of
    classes, each with a unique ``name`` and a ``Config`` schema; None or ``[]``
    contributes nothing. Operators name channel instances under ``alert_channels``.

    Raises nothing; a duplicate ``name`` fails start-up with ``PluginError``.

    .. versionadded:: 0.1
    """


@hookspec
def register_auth_backends() -> list[type[AuthBackend]]:
    """Contribute authentication backend classes (subclasses of ``AuthBackend``).

    Called once when the plugin manager is built. Takes no arguments. Return a list of
    classes; None or ``[]`` contributes nothing. The operator orders them under
    ``auth.backends``; on each request they are asked in that order and the first to
    return an Identity wins. An auth backend only says who the caller is: roles and
    permissions stay in core.

    Raises nothing; a duplicate ``name`` fails start-up with ``PluginError``.

    .. versionadded:: 0.1
    """


@hookspec
def register_secret_backends() -> list[type[SecretBackend]]:
    """Contribute secret backend classes (subclasses of ``SecretBackend``).

    Called once when the plugin manager is built. Takes no arguments. Return a list of
    classes; None or ``[]`` contributes nothing. The backend selected under
    ``secrets.backend`` resolves every ``{$secret: "path#key"}`` in the config, once, at
    start-up; its own options may use ``$env`` and ``$file`` but not ``$secret``.

    Raises nothing; a duplicate ``name`` fails start-up with ``PluginError``.

    .. versionadded:: 0.1
    """


@hookspec
def register_model_flavors() -> list[type[ModelFlavor]]:
    """Contribute model flavor classes (subclasses of ``ModelFlavor``).

    Called once when the plugin manager is built. Takes no arguments. Return a list of
    classes; None or ``[]`` contributes nothing. A flavor detects its artifact layout and
    loads it into a predictor on the serving side, never inside an API request.

    Raises nothing; a duplicate ``name`` fails start-up with ``PluginError``.

    .. versionadded:: 0.1
    """


@hookspec
def check_promotion(version: Any, environment: Any, context: Any) -> list[PolicyResult]:
    """Judge whether ``version`` may be promoted to ``environment``.

    Called when a promotion is requested and again just before traffic moves. Every
    implementation is called (not firstresult) and all results are reported together.

    ``version``: the model version being promoted (its run, metrics, flavor, tags).
    ``environment``: the target environment's config (name, policies, approvals).
    ``context``: the promotion request (who asked, strategy) and a read-only view of the
    platform's state (the version now serving the environment, firing alerts).

    Return a list of ``PolicyResult``; any result with ``passed=False`` blocks the
    promotion. Return None or ``[]`` when the policy does not apply to this environment.
    Raise nothing: an exception is reported as a failed check naming the plugin.

    .. versionadded:: 0.1
    """


@hookspec
def platform_event(event: PlatformEvent) -> None:
    """Be told about an audited change after its transaction has committed.

    Called once per audit event, after commit, in the process that made the change; never
    for a change that rolled back. ``event`` carries the actor, project, action, resource
    and a summary of what changed (never a secret).

    Return None; any return value is ignored. An exception is logged with the plugin's name and does not
    undo the change or stop other implementations. Keep it fast: enqueue slow work as a job.

    .. versionadded:: 0.1
    """
