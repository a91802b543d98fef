"""``wasserstein``: the first Wasserstein (earth mover's) distance between the reference and
the current window, divided by the reference's standard deviation so that one threshold
fits features of any scale. Higher means more drift; default threshold 0.1; drifted when
``score >= threshold``.

``details["distance"]`` is the raw W1, ``integral |F_ref(x) - F_cur(x)| dx`` over the two
empirical CDFs, equal to ``scipy.stats.wasserstein_distance(reference, current)`` (tested to
1e-12). ``score = distance / max(std(reference), 0.001)`` with the population standard
deviation (``ddof=0``); the floor keeps a constant reference finite. That is Evidently's
``wasserstein`` stat test, value for value. Non-finite values are ignored.
"""

from __future__ import annotations

import numpy as np

from mlplatform.core.backends import DriftMetric, DriftResult
from mlplatform.plugins.drift import as_sample

MIN_NORM = 0.001


def wasserstein_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """W1 between the empirical distributions of two 1-d samples (scipy's algorithm)."""
    ref, cur = np.sort(reference), np.sort(current)
    pooled = np.sort(np.concatenate([ref, cur]), kind="mergesort")
    deltas = np.diff(pooled)
    ref_cdf = np.searchsorted(ref, pooled[:-1], side="right") / ref.size
    cur_cdf = np.searchsorted(cur, pooled[:-1], side="right") / cur.size
    return float(np.sum(np.abs(ref_cdf - cur_cdf) * deltas))


class Wasserstein(DriftMetric):
    """Wasserstein-1 distance normed by the reference's standard deviation (see the module doc)."""

    name = "wasserstein"
    feature_kind = "numerical"
    default_threshold = 0.1
    higher_is_drift = True

    def compute(self, reference: np.ndarray, current: np.ndarray, threshold: float | None = None) -> DriftResult:
        ref, ignored_ref = as_sample(reference, "reference")
        cur, ignored_cur = as_sample(current, "current")
        distance = wasserstein_distance(ref, cur)
        std = float(np.std(ref))
        score = distance / max(std, MIN_NORM)
        threshold = self.default_threshold if threshold is None else threshold
        return DriftResult(
            score=score,
            drifted=score >= threshold,
            details={
                "distance": distance,
                "reference_std": std,
                "threshold": threshold,
                "n_reference": int(ref.size),
                "n_current": int(cur.size),
                "ignored": ignored_ref + ignored_cur,
            },
        )
