"""Every enabled drift metric, per feature, against the version's prepared reference.

The metrics are the registered ``DriftMetric`` classes named in ``monitoring.drift_metrics``,
instantiated once per platform with their validated ``monitoring.metric_options``. Thresholds:
the metric's ``default_threshold``, overridden by ``monitoring.thresholds[<metric>]``, then by
``monitoring.feature_thresholds[<feature>][<metric>]``. With ``monitoring.learned_thresholds``
on, a numerical feature's threshold learned from its reference (``profiles.learned_thresholds``,
kept on the ``NumericReference``) replaces the metric-wide one, but is never stricter than it
(psi: at least, p-values: at most the configured threshold); an explicit
``feature_thresholds`` entry wins over it. A feature has drifted when any metric applied to it
says so.

Which metric applies where: numerical features get the metrics whose ``feature_kind`` is
``numerical`` or ``both``; categorical features those with ``categorical`` or ``both``, and
``psi`` too, over category proportions (reference categories, then unseen ones, each a bin,
with psi's empty-bin floor), as Evidently's PSI does for categorical columns.

Speed: a window hands each numerical feature over **sorted once** (its finite values) and the
reference comes sorted from the cache, so the built-in ``psi`` (quantile binning) and ``ks``
take fast paths computed here with the same floating-point operations as their ``compute``
(tests check equality): psi counts the current window per bin with a ``searchsorted`` of the
cut points into the sorted window; ks evaluates ``F_ref - F_cur`` only at the reference values
and just below them, which covers every point where the maximum can occur, instead of at
every pooled value. Every other metric (and psi with ``binning: evidently``) runs its own
``compute`` on the sorted arrays; categorical metrics get integer category codes (``both``
metrics object arrays of the categories), rebuilt from the counts in sorted order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mlplatform.core.backends import DriftMetric
from mlplatform.core.errors import InvalidInput
from mlplatform.core.monitoring.reference_cache import EMPTY_BIN_EPSILON, CategoricalReference, NumericReference
from mlplatform.plugins import drift as builtin

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.monitoring")


@dataclass(frozen=True)
class DriftScore:
    metric: str
    score: float
    drifted: bool
    statistic: float | None = None


class DriftSuite:
    """The enabled metrics with their thresholds; build once per platform (``suite_for``)."""

    def __init__(
        self,
        metrics: list[DriftMetric],
        thresholds: Mapping[str, float],
        feature_thresholds: Mapping[str, Mapping[str, float]],
        learned: bool = False,
    ):
        self.metrics = metrics
        self.thresholds = dict(thresholds)
        self.feature_thresholds = {k: dict(v) for k, v in feature_thresholds.items()}
        self.learned = learned

    @classmethod
    def from_config(cls, platform: Platform) -> DriftSuite:
        config = platform.config["monitoring"]
        metrics = [
            platform.backend(
                "drift_metric", name, config["metric_options"].get(name, {}), f"monitoring.drift_metrics.{i}"
            )
            for i, name in enumerate(config["drift_metrics"])
        ]
        return cls(
            metrics,
            config["thresholds"],
            config.get("feature_thresholds", {}),  # type: ignore[arg-type]
            bool(config.get("learned_thresholds", False)),
        )

    def threshold(self, metric: DriftMetric, feature: str, learned: Mapping[str, float] | None = None) -> float:
        """default -> ``thresholds`` -> the reference's learned one (if on) -> ``feature_thresholds``."""
        per_feature = self.feature_thresholds.get(feature, {})
        if metric.name in per_feature:
            return float(per_feature[metric.name])
        configured = float(self.thresholds.get(metric.name, metric.default_threshold))
        if self.learned and learned and metric.name in learned:
            value = float(learned[metric.name])
            return max(value, configured) if metric.higher_is_drift else min(value, configured)
        return configured

    def numeric(self, feature: str, reference: NumericReference, current_sorted: np.ndarray) -> list[DriftScore]:
        """Scores for a numerical feature; ``current_sorted`` holds the window's finite values, sorted."""
        if current_sorted.size == 0 or reference.values.size == 0:
            return []
        scores = []
        for metric in self.metrics:
            if metric.feature_kind not in ("numerical", "both"):
                continue
            threshold = self.threshold(metric, feature, reference.learned)
            if type(metric) is builtin.PSI and metric.options.get("binning", "quantile") == "quantile":
                scores.append(_psi_numeric(metric, reference, current_sorted, threshold))
            elif type(metric) is builtin.KS:
                scores.append(_ks(metric, reference, current_sorted, threshold))
            else:
                scores.extend(_generic(metric, feature, reference.values, current_sorted, threshold))
        return scores

    def categorical(
        self, feature: str, reference: CategoricalReference, categories: list[str], counts: np.ndarray
    ) -> list[DriftScore]:
        """Scores for a categorical feature from the window's category counts."""
        if counts.sum() == 0 or reference.counts.sum() == 0:
            return []
        ref_counts, cur_counts, union = _aligned(reference, categories, counts)
        scores = []
        for metric in self.metrics:
            threshold = self.threshold(metric, feature)
            if type(metric) is builtin.PSI:
                scores.append(_psi_from_counts(metric, ref_counts, cur_counts, threshold))
            elif metric.feature_kind == "categorical":
                codes = np.arange(union.size)
                scores.extend(
                    _generic(metric, feature, np.repeat(codes, ref_counts), np.repeat(codes, cur_counts), threshold)
                )
            elif metric.feature_kind == "both":
                scores.extend(
                    _generic(metric, feature, np.repeat(union, ref_counts), np.repeat(union, cur_counts), threshold)
                )
        return scores


def _drifted(metric: DriftMetric, score: float, threshold: float) -> bool:
    return score >= threshold if metric.higher_is_drift else score <= threshold


def _psi_numeric(
    metric: DriftMetric, reference: NumericReference, current_sorted: np.ndarray, threshold: float
) -> DriftScore:
    cuts, ref_p = reference.psi_bins(int(metric.options.get("bins", 10)))
    # The psi metric puts a value equal to a cut point in the bin above: bin j holds
    # cuts[j-1] <= v < cuts[j], so the window's counts are differences of left insertion points.
    edges = np.concatenate(([0], np.searchsorted(current_sorted, cuts, side="left"), [current_sorted.size]))
    cur_p = np.maximum(np.diff(edges) / current_sorted.size, EMPTY_BIN_EPSILON)
    score = float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))
    return DriftScore(metric.name, score, _drifted(metric, score, threshold))


def _psi_from_counts(
    metric: DriftMetric, ref_counts: np.ndarray, cur_counts: np.ndarray, threshold: float
) -> DriftScore:
    ref_p = np.maximum(ref_counts / ref_counts.sum(), EMPTY_BIN_EPSILON)
    cur_p = np.maximum(cur_counts / cur_counts.sum(), EMPTY_BIN_EPSILON)
    score = float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))
    return DriftScore(metric.name, score, _drifted(metric, score, threshold))


def ks_statistic_presorted(reference: NumericReference, current_sorted: np.ndarray) -> float:
    """``max |F_ref - F_cur|`` over the pooled sample, as ``scipy.stats.ks_2samp`` computes it.

    Both step functions only change at sample values. Between two consecutive distinct
    reference values ``F_ref`` is constant, so ``F_ref - F_cur`` is largest at the lower one
    (pair ``(#ref <= r, #cur <= r)``) and smallest just below the upper one (pair
    ``(#ref < r, #cur < r)``); each pair is the value at some pooled point (or 0), and is
    computed with scipy's operations, so the maximum is the same float.
    """
    m = current_sorted.size
    cdf_below, cdf_at = reference.ranks()
    cur_le = np.searchsorted(current_sorted, reference.values, side="right")
    cur_at = cur_le / m
    at = cdf_at - cur_at
    # #cur < r differs from #cur <= r only where the window holds r itself; elsewhere the pair
    # below r is (cdf_below, cur_at), whose difference is at most the one at r.
    tied = np.flatnonzero((cur_le > 0) & (current_sorted[np.maximum(cur_le - 1, 0)] == reference.values))
    below = cdf_below - cur_at
    largest = at.max()
    if tied.size:
        below[tied] = cdf_below[tied] - np.searchsorted(current_sorted, reference.values[tied], side="left") / m
        largest = max(largest, below[tied].max())
    return float(max(largest, -below.min(), -at.min(), 0.0))


def _ks(metric: DriftMetric, reference: NumericReference, current_sorted: np.ndarray, threshold: float) -> DriftScore:
    n, m = int(reference.values.size), int(current_sorted.size)
    d = ks_statistic_presorted(reference, current_sorted)
    if max(n, m) > builtin.KS_EXACT_MAX_N:
        pvalue = builtin.ks_pvalue_asymptotic(d, n, m)
    else:
        lcm = n // math.gcd(n, m) * m
        h = round(d * lcm)
        d, pvalue = h / lcm, builtin.ks_pvalue_exact(h, n, m)
    return DriftScore(metric.name, pvalue, _drifted(metric, pvalue, threshold), d)


def _generic(
    metric: DriftMetric, feature: str, reference: np.ndarray, current: np.ndarray, threshold: float
) -> list[DriftScore]:
    try:
        result = metric.compute(reference, current, threshold)
    except InvalidInput as exc:
        log.warning("drift metric %s skipped feature %r: %s", metric.name, feature, exc.message)
        return []
    statistic = result.details.get("statistic")
    return [
        DriftScore(
            metric.name,
            float(result.score),
            bool(result.drifted),
            float(statistic) if isinstance(statistic, (int, float)) else None,
        )
    ]


def _aligned(
    reference: CategoricalReference, categories: list[str], counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts over the union: reference categories (and its capped ``other``), then unseen ones."""
    index = reference.index
    unseen = [c for c in categories if c not in index]
    union = list(reference.categories) + unseen
    ref_counts = np.concatenate([reference.counts, np.zeros(len(unseen), dtype=np.int64)])
    cur_counts = np.zeros(len(union), dtype=np.int64)
    position = {c: i for i, c in enumerate(union)}
    cur_counts[[position[c] for c in categories]] = counts
    if reference.other:
        union.append("\x00other")
        ref_counts = np.append(ref_counts, reference.other)
        cur_counts = np.append(cur_counts, 0)
    return ref_counts, cur_counts, np.array(union, dtype=object)


def scores_to_points(feature: str, scores: list[DriftScore]) -> list[tuple[str, str, float]]:
    """``(metric, feature, value)`` rows: ``<m>`` (the score), ``<m>_drifted`` (0/1), ``<m>_statistic``."""
    rows = []
    for score in scores:
        rows.append((score.metric, feature, score.score))
        rows.append((f"{score.metric}_drifted", feature, 1.0 if score.drifted else 0.0))
        if score.statistic is not None:
            rows.append((f"{score.metric}_statistic", feature, score.statistic))
    return rows
