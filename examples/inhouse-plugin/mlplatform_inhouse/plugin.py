"""The module the ``inhouse`` entry point names: the hook implementations, nothing else.

mlplatform finds it through the ``mlplatform`` entry-point group in ``setup.cfg``; importing
it must stay cheap, so the backend classes live in their own modules.
"""

from __future__ import annotations

from typing import Any

from mlplatform import hookimpl
from mlplatform.core.backends import AlertChannel, DriftMetric, PolicyResult
from mlplatform_inhouse.channels import JsonlFileChannel
from mlplatform_inhouse.metrics import MeanShift
from mlplatform_inhouse.policies import change_ticket


@hookimpl
def register_drift_metrics() -> list[type[DriftMetric]]:
    return [MeanShift]


@hookimpl
def register_alert_channels() -> list[type[AlertChannel]]:
    return [JsonlFileChannel]


@hookimpl
def check_promotion(version: Any, environment: Any) -> list[PolicyResult]:
    return change_ticket(version, environment)
