"""Registers the ``chi_square``, ``jensen_shannon`` and ``wasserstein`` drift metrics."""

from __future__ import annotations

from mlplatform import hookimpl
from mlplatform.core.backends import DriftMetric
from plugins_contrib.drift_extra.chi_square import ChiSquare
from plugins_contrib.drift_extra.jensen_shannon import JensenShannon
from plugins_contrib.drift_extra.wasserstein import Wasserstein

__all__ = ["ChiSquare", "JensenShannon", "Wasserstein", "register_drift_metrics"]


@hookimpl
def register_drift_metrics() -> list[type[DriftMetric]]:
    return [ChiSquare, JensenShannon, Wasserstein]
