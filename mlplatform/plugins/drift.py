"""Built-in drift metrics ``psi`` and ``ks``: pure numpy, no scipy at run time.

Both take two 1-d numeric samples. Values that are not finite (NaN, +-inf) are ignored and
counted in ``details["ignored"]``; a sample with no finite value raises ``InvalidInput``.

``psi`` (Population Stability Index): ``sum((cur - ref) * ln(cur / ref))`` over bin
proportions. Higher means more drift; default threshold 0.1; drifted when ``score >= threshold``.

``ks`` (two-sample Kolmogorov-Smirnov): ``score`` is the two-sided p-value, so lower means
more drift; default threshold 0.05; drifted when ``score <= threshold``. The statistic ``D``
is in ``details["statistic"]`` and equals ``scipy.stats.ks_2samp``'s bit for bit; the p-value
follows its ``method="auto"``: exact while the larger sample has at most 10,000 values (equal
to scipy's to ~1e-12), asymptotic beyond (within 4e-4 of scipy's there).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from marshmallow import Schema, fields, validate

from mlplatform import hookimpl
from mlplatform.core.backends import DriftMetric, DriftResult
from mlplatform.core.errors import InvalidInput

EMPTY_BIN_EPSILON = 1e-4
"""PSI (quantile binning): a bin with no values counts as this proportion (0.01%), so the
logarithm stays finite. Proportions are not renormalised afterwards."""

KS_EXACT_MAX_N = 10_000
"""Up to this many values in the larger sample the KS p-value is exact, as in scipy's ``auto``."""


def as_sample(values: Any, label: str) -> tuple[np.ndarray, int]:
    """``values`` as a 1-d float array of its finite values, and how many values were dropped.
    Raises ``InvalidInput`` if it is not 1-d numeric data or has no finite value."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"{label} sample must be numeric") from None
    if array.ndim != 1:
        raise InvalidInput(f"{label} sample must be 1-dimensional, got shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        array = array[finite]
    if array.size == 0:
        raise InvalidInput(f"{label} sample is empty (no finite values)")
    return array, int(finite.size - array.size)


# --- PSI ----------------------------------------------------------------------------------


def quantile_proportions(reference: np.ndarray, current: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin proportions over ``bins`` reference quantile bins (linear interpolation).

    Only the inner cut points come from the reference; the outer bins are open, so current
    values outside the reference range land in the first or last bin. Equal cut points (a
    reference with many ties) merge their bins. A value equal to a cut point goes to the bin
    above it. Empty bins become ``EMPTY_BIN_EPSILON``.
    """
    cuts = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    ref = np.bincount(np.searchsorted(cuts, reference, side="right"), minlength=cuts.size + 1) / reference.size
    cur = np.bincount(np.searchsorted(cuts, current, side="right"), minlength=cuts.size + 1) / current.size
    return np.maximum(ref, EMPTY_BIN_EPSILON), np.maximum(cur, EMPTY_BIN_EPSILON)


def evidently_proportions(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin proportions exactly as Evidently 0.7 (``legacy.calculations.stattests.utils.get_binned_data``).

    - If the reference has more than 20 distinct values: bin edges are
      ``np.histogram_bin_edges(concatenate([reference, current]), bins="sturges")`` (equal-width
      bins over the pooled range; Evidently's ``n_bins`` argument is ignored), proportions are
      ``np.histogram(x, edges)[0] / len(x)``.
    - Otherwise one bin per distinct value of either sample.
    - Zero proportions, per sample: ``min(nonzero) / 1e6`` if the smallest non-zero proportion
      is at most 1e-4, else 1e-4.
    """
    if np.unique(reference).size > 20:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        ref = np.histogram(reference, edges)[0] / reference.size
        cur = np.histogram(current, edges)[0] / current.size
    else:
        keys = np.union1d(reference, current)
        ref = np.bincount(np.searchsorted(keys, reference), minlength=keys.size) / reference.size
        cur = np.bincount(np.searchsorted(keys, current), minlength=keys.size) / current.size
    return _fill_zeroes(ref), _fill_zeroes(cur)


def _fill_zeroes(proportions: np.ndarray) -> np.ndarray:
    smallest = proportions[proportions != 0].min()
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(proportions == 0, fill, proportions)


class PSI(DriftMetric):
    """Population Stability Index over binned numerical values.

    Options: ``bins`` (quantile binning only, default 10) and ``binning``:

    - ``quantile`` (default): ``bins`` bins at the reference's quantiles, see
      ``quantile_proportions``; stable across windows because the cut points depend on the
      reference only.
    - ``evidently``: Evidently 0.7's PSI, value for value, see ``evidently_proportions``. The
      bins depend on the current window too, and ``bins`` is ignored, as in Evidently.
    """

    name = "psi"
    feature_kind = "numerical"
    default_threshold = 0.1
    higher_is_drift = True

    class Config(Schema):
        bins = fields.Integer(load_default=10, validate=validate.Range(min=2, max=1000))
        binning = fields.String(load_default="quantile", validate=validate.OneOf(["quantile", "evidently"]))

    def compute(self, reference: np.ndarray, current: np.ndarray, threshold: float | None = None) -> DriftResult:
        ref, ignored_ref = as_sample(reference, "reference")
        cur, ignored_cur = as_sample(current, "current")
        binning = self.options.get("binning", "quantile")
        if binning == "evidently":
            ref_p, cur_p = evidently_proportions(ref, cur)
        else:
            ref_p, cur_p = quantile_proportions(ref, cur, int(self.options.get("bins", 10)))
        # Evidently's operand order, so the evidently mode matches it to the last bit.
        score = float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))
        threshold = self.default_threshold if threshold is None else threshold
        return DriftResult(
            score=score,
            drifted=score >= threshold,
            details={
                "binning": binning,
                "bins": int(ref_p.size),
                "threshold": threshold,
                "n_reference": int(ref.size),
                "n_current": int(cur.size),
                "ignored": ignored_ref + ignored_cur,
            },
        )


# --- KS -----------------------------------------------------------------------------------


def ks_statistic(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """The two-sided KS statistic ``D = max |F_ref - F_cur|`` of two sorted samples, computed
    with the same floating-point operations as ``scipy.stats.ks_2samp``."""
    pooled = np.concatenate([reference_sorted, current_sorted])
    diffs = (
        np.searchsorted(reference_sorted, pooled, side="right") / reference_sorted.size
        - np.searchsorted(current_sorted, pooled, side="right") / current_sorted.size
    )
    return float(max(diffs.max(), -diffs.min(), 0.0))


def kolmogorov_sf(x: float) -> float:
    """Survival function of the Kolmogorov distribution, ``P(K > x)``, to about 1e-15."""
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        # Jacobi theta form of the CDF: converges fast where the alternating series does not.
        k = np.arange(1, 16)
        cdf = math.sqrt(2.0 * math.pi) / x * np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * x * x)).sum()
        return float(min(max(1.0 - cdf, 0.0), 1.0))
    k = np.arange(1, 40)
    return float(min(max(2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k * k * x * x)), 0.0), 1.0))


def ks_pvalue_asymptotic(d: float, n: int, m: int) -> float:
    """Two-sided p-value from the Kolmogorov limit with a first-order small-sample correction:
    ``Q(sqrt(N) * d + 1 / (6 * sqrt(N)))`` with ``N = round(n*m/(n+m))``.

    scipy uses the exact one-sample distribution at ``N`` here; this approximates it to within
    4e-4 for ``N >= 900``. (Stephens' ``(sqrt(N) + 0.12 + 0.11/sqrt(N)) * d`` is 4e-3 off.)
    """
    root = math.sqrt(max(round(n * m / (n + m)), 1))
    return kolmogorov_sf(root * d + 1.0 / (6.0 * root))


def ks_pvalue_exact(h: int, n: int, m: int) -> float:
    """Exact two-sided ``P(D >= h / lcm(n, m))`` under the null hypothesis.

    Equal sizes: the reflection formula ``2 * sum_k (-1)^(k-1) C(2n, n-kh) / C(2n, n)``.
    Otherwise the lattice-path recursion of Hodges as scipy runs it, in Viehmann's form that
    carries the probability of having left the band (so small p-values keep their precision):
    ``Q(x, y) = (x * Q(x-1, y) + y * Q(x, y-1)) / (x + y)`` inside ``|x/n - y/m| < d``, 1
    outside, ``p = Q(n, m)``. It runs one anti-diagonal at a time so numpy does the inner loop.
    When the asymptotic p-value is below 1e-12 it is returned instead: both are 0 to 1e-10.
    """
    if h <= 0:
        return 1.0
    if n == m:
        ks = np.arange(1, n // h + 1)
        log_terms = 2.0 * math.lgamma(n + 1) - _lgamma(n - ks * h + 1) - _lgamma(n + ks * h + 1)
        return float(min(max(2.0 * np.sum((-1.0) ** (ks - 1) * np.exp(log_terms)), 0.0), 1.0))
    lcm = n // math.gcd(n, m) * m
    asymptotic = ks_pvalue_asymptotic(h / lcm, n, m)
    if asymptotic < 1e-12:
        return asymptotic
    g = math.gcd(n, m)
    ng, mg = n // g, m // g
    # Cell (x, y), x in 0..n, y in 0..m, is inside when |mg*x - ng*y| < h (exact integers);
    # on the anti-diagonal x + y = s that is |(mg + ng)*x - ng*s| < h.
    width = mg + ng
    low, q = 0, np.zeros(1)  # diagonal 0: the origin, inside, has not left
    for s in range(1, n + m + 1):
        new_low = max(s - m, (ng * s - h) // width + 1, 0)
        new_high = min(n, s, -(-(ng * s + h) // width) - 1)
        if new_low > new_high:
            return 1.0  # every path leaves the band
        # Predecessors on diagonal s-1, for x = new_low-1 .. new_high; 1 where outside the band.
        # Off-grid predecessors get weight 0 below, so their value does not matter.
        prev = np.ones(new_high - new_low + 2)
        first, last = max(new_low - 1, low), min(new_high, low + q.size - 1)
        if first <= last:
            prev[first - new_low + 1 : last - new_low + 2] = q[first - low : last - low + 1]
        xs = np.arange(new_low, new_high + 1)
        q = (xs * prev[:-1] + (s - xs) * prev[1:]) / s
        low = new_low
    return float(min(max(q[n - low], 0.0), 1.0))


def _lgamma(values: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(float(v)) for v in values])


def ks_2samp(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> tuple[float, float, str]:
    """``(statistic, p-value, method)`` as ``scipy.stats.ks_2samp(method="auto")`` for two
    sorted samples: exact when the larger has at most ``KS_EXACT_MAX_N`` values (the statistic
    is then snapped to its lattice ``h / lcm``, as scipy does), asymptotic otherwise."""
    n, m = int(reference_sorted.size), int(current_sorted.size)
    d = ks_statistic(reference_sorted, current_sorted)
    if max(n, m) > KS_EXACT_MAX_N:
        return d, ks_pvalue_asymptotic(d, n, m), "asymptotic"
    lcm = n // math.gcd(n, m) * m
    h = round(d * lcm)
    return h / lcm, ks_pvalue_exact(h, n, m), "exact"


def is_sorted(values: np.ndarray) -> bool:
    return bool(values.size < 2 or np.all(values[:-1] <= values[1:]))


class KS(DriftMetric):
    """Two-sample Kolmogorov-Smirnov test; ``score`` is the p-value (drift when <= threshold).

    ``details``: ``statistic`` (D), ``method`` (``exact`` or ``asymptotic``), sample sizes.
    Monitoring compares many windows with one reference: pass the reference already sorted
    and it is not sorted again (checked in O(n); ``presorted=True`` skips even the check).
    """

    name = "ks"
    feature_kind = "numerical"
    default_threshold = 0.05
    higher_is_drift = False

    def compute(
        self,
        reference: np.ndarray,
        current: np.ndarray,
        threshold: float | None = None,
        *,
        presorted: bool = False,
    ) -> DriftResult:
        ref, ignored_ref = as_sample(reference, "reference")
        cur, ignored_cur = as_sample(current, "current")
        if not (presorted or is_sorted(ref)):
            ref = np.sort(ref)
        statistic, pvalue, method = ks_2samp(ref, np.sort(cur))
        threshold = self.default_threshold if threshold is None else threshold
        return DriftResult(
            score=pvalue,
            drifted=pvalue <= threshold,
            details={
                "statistic": statistic,
                "method": method,
                "threshold": threshold,
                "n_reference": int(ref.size),
                "n_current": int(cur.size),
                "ignored": ignored_ref + ignored_cur,
            },
        )


@hookimpl
def register_drift_metrics() -> list[type[DriftMetric]]:
    return [PSI, KS]
