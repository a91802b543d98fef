"""``chi_square``: Pearson's chi-square goodness-of-fit test of the current window's category
counts against the reference's category proportions.

Over the union of both samples' categories (``k`` of them), the expected count of category
``i`` is ``n_current * p_i``, with ``p_i`` the reference proportion; the statistic is
``sum((observed - expected)**2 / expected)`` with ``k - 1`` degrees of freedom and ``score``
is its p-value: lower means more drift, drifted when ``score <= threshold`` (default 0.05).
The reference is taken as the true distribution (no sampling error of its own), which suits
a large training reference; the result equals
``scipy.stats.chisquare(f_obs=observed, f_exp=expected)`` (tested to 1e-9).

Categories present in the reference but absent from the window count as observed 0.
Unseen categories, present in the window but not in the reference, would have an expected
count of 0 and an infinite statistic, so each gets the reference proportion
``unseen_proportion`` (option, default 1e-4, PSI's empty-bin value) and all proportions are
then divided by their sum. One category in all gives 0 degrees of freedom and a p-value of 1.
``details`` report the unseen categories (count, share of the window, up to 10 examples).
"""

from __future__ import annotations

import numpy as np
from marshmallow import Schema, fields, validate

from mlplatform.core.backends import DriftMetric, DriftResult
from plugins_contrib.drift_extra.categories import aligned_counts, category_counts
from plugins_contrib.drift_extra.special import chi2_sf

UNSEEN_PROPORTION = 1e-4
UNSEEN_EXAMPLES = 10


class ChiSquare(DriftMetric):
    """Chi-square goodness-of-fit p-value for a categorical feature (see the module doc)."""

    name = "chi_square"
    feature_kind = "categorical"
    default_threshold = 0.05
    higher_is_drift = False

    class Config(Schema):
        unseen_proportion = fields.Float(
            load_default=UNSEEN_PROPORTION, validate=validate.Range(min=0, max=0.5, min_inclusive=False)
        )

    def compute(self, reference: np.ndarray, current: np.ndarray, threshold: float | None = None) -> DriftResult:
        ref_categories, ref_counts, ignored_ref = category_counts(reference, "reference")
        cur_categories, cur_counts, ignored_cur = category_counts(current, "current")
        union, ref, observed, unseen = aligned_counts((ref_categories, ref_counts), (cur_categories, cur_counts))
        n_ref, n_cur = int(ref.sum()), int(observed.sum())
        proportions = np.where(unseen, float(self.options.get("unseen_proportion", UNSEEN_PROPORTION)), ref / n_ref)
        expected = n_cur * (proportions / proportions.sum())
        statistic = float(np.sum((observed - expected) ** 2 / expected))
        dof = len(union) - 1
        pvalue = chi2_sf(statistic, dof)
        threshold = self.default_threshold if threshold is None else threshold
        unseen_names = [union[i] for i in np.flatnonzero(unseen)]
        return DriftResult(
            score=pvalue,
            drifted=pvalue <= threshold,
            details={
                "statistic": statistic,
                "dof": dof,
                "threshold": threshold,
                "categories": len(union),
                "unseen_categories": len(unseen_names),
                "unseen_share": float(observed[unseen].sum() / n_cur),
                "unseen_examples": [str(c) for c in unseen_names[:UNSEEN_EXAMPLES]],
                "n_reference": n_ref,
                "n_current": n_cur,
                "ignored": ignored_ref + ignored_cur,
            },
        )
