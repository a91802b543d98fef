"""``jensen_shannon``: the Jensen-Shannon distance, base 2, between the reference's and the
current window's distributions; 0 for identical, 1 for disjoint ones. Higher means more
drift; default threshold 0.1; drifted when ``score >= threshold``.

For proportion vectors ``p`` (reference) and ``q`` (current) and ``m = (p + q) / 2``:
``sqrt((KL(p || m) + KL(q || m)) / 2)`` with logarithms base 2, i.e.
``scipy.spatial.distance.jensenshannon(p, q, base=2)`` (tested to 1e-12). Empty bins need
no smoothing: ``m`` is positive wherever ``p`` or ``q`` is.

What ``p`` and ``q`` are depends on ``mode``:

- ``numerical``: proportions in ``bins`` (default 10) bins cut at the reference's quantiles,
  the rule of ``psi``'s quantile binning: open outer bins, equal cut points merged, a value
  on a cut point goes to the bin above. Non-finite values are ignored.
- ``categorical``: proportions per category over the union of both samples' categories;
  an unseen category simply has reference proportion 0. Missing values (None, NaN, NaT)
  are ignored.
- ``auto`` (default): ``numerical`` for integer and float arrays, ``categorical`` for any
  other dtype (strings, booleans, objects). Integer-coded categories need ``categorical``.
"""

from __future__ import annotations

import math

import numpy as np
from marshmallow import Schema, fields, validate

from mlplatform.core.backends import DriftMetric, DriftResult
from mlplatform.core.errors import InvalidInput
from mlplatform.plugins.drift import as_sample
from plugins_contrib.drift_extra.categories import aligned_counts, category_counts


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2, of two non-negative vectors (each normalised to sum 1)."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    divergence = (_kl(p, m) + _kl(q, m)) / 2.0 / math.log(2.0)
    return math.sqrt(max(divergence, 0.0))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    positive = p > 0
    return float(np.sum(p[positive] * np.log(p[positive] / m[positive])))


def quantile_bin_counts(reference: np.ndarray, current: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts in ``bins`` reference-quantile bins, as ``drift.quantile_proportions`` bins but
    without its empty-bin floor."""
    cuts = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    ref = np.bincount(np.searchsorted(cuts, reference, side="right"), minlength=cuts.size + 1)
    cur = np.bincount(np.searchsorted(cuts, current, side="right"), minlength=cuts.size + 1)
    return ref, cur


class JensenShannon(DriftMetric):
    """Jensen-Shannon distance (base 2) over quantile bins or categories (see the module doc)."""

    name = "jensen_shannon"
    feature_kind = "both"
    default_threshold = 0.1
    higher_is_drift = True

    class Config(Schema):
        bins = fields.Integer(load_default=10, validate=validate.Range(min=2, max=1000))
        mode = fields.String(load_default="auto", validate=validate.OneOf(["auto", "numerical", "categorical"]))

    def compute(self, reference: np.ndarray, current: np.ndarray, threshold: float | None = None) -> DriftResult:
        mode = self.options.get("mode", "auto")
        if mode == "auto":
            mode = "numerical" if _is_numeric(reference) and _is_numeric(current) else "categorical"
        details: dict[str, object] = {"mode": mode}
        if mode == "numerical":
            ref, ignored_ref = as_sample(reference, "reference")
            cur, ignored_cur = as_sample(current, "current")
            ref_counts, cur_counts = quantile_bin_counts(ref, cur, int(self.options.get("bins", 10)))
            details["bins"] = int(ref_counts.size)
        else:
            ref_cats, ref_c, ignored_ref = category_counts(reference, "reference")
            cur_cats, cur_c, ignored_cur = category_counts(current, "current")
            union, ref_counts, cur_counts, unseen = aligned_counts((ref_cats, ref_c), (cur_cats, cur_c))
            details["categories"] = len(union)
            details["unseen_categories"] = int(unseen.sum())
        score = js_distance(ref_counts.astype(np.float64), cur_counts.astype(np.float64))
        threshold = self.default_threshold if threshold is None else threshold
        details.update(
            threshold=threshold,
            n_reference=int(ref_counts.sum()),
            n_current=int(cur_counts.sum()),
            ignored=ignored_ref + ignored_cur,
        )
        return DriftResult(score=score, drifted=score >= threshold, details=details)


def _is_numeric(values: object) -> bool:
    try:
        return np.asarray(values).dtype.kind in "iuf"
    except (TypeError, ValueError):
        raise InvalidInput("sample must be an array of values") from None
