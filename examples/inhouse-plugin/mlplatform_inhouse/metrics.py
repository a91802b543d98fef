"""``mean_shift``: how far the current mean moved, in reference standard deviations."""

from __future__ import annotations

import numpy as np

from mlplatform.core.backends import DriftMetric, DriftResult
from mlplatform.core.errors import InvalidInput


class MeanShift(DriftMetric):
    """``|mean(current) - mean(reference)| / std(reference)`` (population std, ``ddof=0``).

    Drifted when the score is at least the threshold (default 0.1). Non-finite values are
    ignored. A constant reference scores 0 if the current mean equals it and ``inf``
    otherwise. Raises ``InvalidInput`` when a sample has no finite value.
    """

    name = "mean_shift"
    feature_kind = "numerical"
    default_threshold = 0.1
    higher_is_drift = True

    def compute(self, reference: np.ndarray, current: np.ndarray, threshold: float | None = None) -> DriftResult:
        ref, cur = _finite(reference, "reference"), _finite(current, "current")
        shift = abs(float(cur.mean()) - float(ref.mean()))
        std = float(ref.std())
        if std > 0:
            score = shift / std
        else:
            score = 0.0 if shift == 0 else float("inf")
        threshold = self.default_threshold if threshold is None else threshold
        return DriftResult(
            score=score,
            drifted=score >= threshold,
            details={"reference_mean": float(ref.mean()), "current_mean": float(cur.mean()), "reference_std": std},
        )


def _finite(values: np.ndarray, label: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InvalidInput(f"{label} sample must be numeric") from None
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise InvalidInput(f"{label} sample is empty")
    return array
