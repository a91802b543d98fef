"""The module the ``inhouse`` entry point names: the hook implementations, nothing else.

mlplatform finds it through the ``mlplatform`` entry-point group in ``setup.cfg``; importing
it must stay cheap, so the backend classes live in their own modules.
"""

from __future__ import annotations

from mlplatform import hookimpl
from mlplatform.core.backends import AlertChannel, DriftMetric
from mlplatform_inhouse.channels import JsonlFileChannel
from mlplatform_inhouse.metrics import MeanShift


@hookimpl
def register_drift_metrics() -> list[type[DriftMetric]]:
    return [MeanShift]


@hookimpl
def register_alert_channels() -> list[type[AlertChannel]]:
    return [JsonlFileChannel]
