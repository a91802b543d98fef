"""The built-in drift metrics ``psi`` and ``ks`` against hand-computed values, Evidently's
formula and scipy (a test-only dependency: the metrics themselves are pure numpy)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from marshmallow import ValidationError
from scipy import stats

from mlplatform.core.errors import InvalidInput
from mlplatform.core.plugins import build_plugin_manager
from mlplatform.plugins import drift
from mlplatform.plugins.drift import EMPTY_BIN_EPSILON, KS, PSI


def test_register_drift_metrics_contributes_psi_and_ks() -> None:
    assert drift.register_drift_metrics() == [PSI, KS]
    assert {(cls.name, cls.feature_kind) for cls in drift.register_drift_metrics()} == {
        ("psi", "numerical"),
        ("ks", "numerical"),
    }


def test_registered_as_builtin_plugins() -> None:
    pm = build_plugin_manager(load_entry_points=False)
    entries = pm.backends.entries("drift_metric")
    assert entries["psi"].cls is PSI and entries["ks"].cls is KS
    assert entries["psi"].plugin == "mlplatform.plugins.drift"
    assert (PSI.default_threshold, PSI.higher_is_drift) == (0.1, True)
    assert (KS.default_threshold, KS.higher_is_drift) == (0.05, False)


# --- PSI, quantile binning ------------------------------------------------------------------


def test_psi_matches_hand_computed_value() -> None:
    # Reference 0..99, 4 bins: cut points 24.75, 49.5, 74.25, so 25% per bin.
    # Current counts per bin: 5, 2, 1, 2 of 10 (200 lies above the reference range).
    current = [0, 1, 2, 3, 4, 30, 31, 60, 80, 200]
    expected = (
        (0.5 - 0.25) * math.log(0.5 / 0.25)
        + (0.2 - 0.25) * math.log(0.2 / 0.25)
        + (0.1 - 0.25) * math.log(0.1 / 0.25)
        + (0.2 - 0.25) * math.log(0.2 / 0.25)
    )
    result = PSI({"bins": 4}).compute(np.arange(100), np.array(current))
    assert result.score == pytest.approx(expected, rel=1e-12)
    assert result.score == pytest.approx(0.3330449, abs=1e-6)
    assert result.drifted
    assert result.details["bins"] == 4 and result.details["binning"] == "quantile"


def test_psi_empty_bins_use_the_documented_epsilon() -> None:
    result = PSI({"bins": 4}).compute(np.arange(100), np.array([0.0, 1.0, 2.0, 3.0]))
    eps = EMPTY_BIN_EPSILON
    expected = (1.0 - 0.25) * math.log(1.0 / 0.25) + 3 * (eps - 0.25) * math.log(eps / 0.25)
    assert eps == 1e-4
    assert result.score == pytest.approx(expected, rel=1e-12)


def test_psi_default_ten_bins_and_ties_merge_bins() -> None:
    rng = np.random.default_rng(0)
    assert PSI().compute(rng.normal(size=5000), rng.normal(size=5000)).details["bins"] == 10
    # 70% zeros: the cut points at the 10%..70% quantiles coincide, so their bins merge.
    reference = np.concatenate([np.zeros(700), np.arange(1, 301)])
    result = PSI().compute(reference, reference)
    assert result.details["bins"] < 10
    assert result.score == pytest.approx(0.0, abs=1e-12)


def test_psi_drift_flags_and_threshold_override() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=20_000)
    same = PSI().compute(reference, rng.normal(size=5_000))
    shifted = PSI().compute(reference, rng.normal(0.5, 1.0, size=5_000))
    assert not same.drifted and same.score < 0.02
    assert shifted.drifted and shifted.score > 0.1
    assert not PSI().compute(reference, rng.normal(0.5, 1.0, size=5_000), threshold=10.0).drifted
    assert PSI().compute(reference, rng.normal(size=5_000), threshold=0.0).drifted  # score >= threshold


def test_psi_config_schema() -> None:
    assert PSI.Config().load({}) == {"bins": 10, "binning": "quantile"}
    with pytest.raises(ValidationError):
        PSI.Config().load({"binning": "equal_width"})
    with pytest.raises(ValidationError):
        PSI.Config().load({"bins": 1})


# --- PSI, Evidently binning ------------------------------------------------------------------


def evidently_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently 0.7's PSI, re-derived from ``legacy/calculations/stattests/psi.py`` and
    ``utils.get_binned_data`` (numerical feature): sturges equal-width bins over the pooled
    range when the reference has more than 20 distinct values, else one bin per value; zero
    proportions filled per sample; ``sum((ref - cur) * ln(ref / cur))``."""
    if len(set(reference.tolist())) > 20:
        pooled = np.concatenate([reference, current])
        count = math.ceil(math.log2(pooled.size) + 1)  # Sturges: width = range / (log2(n) + 1)
        edges = np.linspace(pooled.min(), pooled.max(), count + 1)

        def percents(sample: np.ndarray) -> np.ndarray:
            index = np.clip(np.searchsorted(edges, sample, side="right") - 1, 0, count - 1)
            return np.bincount(index, minlength=count) / sample.size

        ref, cur = percents(reference), percents(current)
    else:
        keys = sorted(set(reference.tolist()) | set(current.tolist()))
        ref_counts, cur_counts = Counter(reference.tolist()), Counter(current.tolist())
        ref = np.array([ref_counts[k] / len(reference) for k in keys])
        cur = np.array([cur_counts[k] / len(current) for k in keys])
    for p in (ref, cur):
        smallest = min(p[p != 0])
        np.place(p, p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda rng: (rng.normal(size=3000), rng.normal(0.3, 1.2, size=1000)), id="continuous"),
        pytest.param(lambda rng: (rng.normal(size=20_000), rng.normal(4.0, 1.0, size=500)), id="disjoint-tails"),
        pytest.param(
            lambda rng: (np.append(rng.normal(size=19_999), 40.0), rng.normal(size=2000)), id="tiny-proportion"
        ),
        pytest.param(lambda rng: (rng.integers(0, 8, 4000), rng.integers(2, 12, 900)), id="few-values"),
        pytest.param(
            lambda rng: (rng.integers(0, 20, 30_000), np.append(rng.integers(0, 20, 999), 25)), id="few-values-rare"
        ),
    ],
)
def test_psi_evidently_mode_matches_evidently_formula(make) -> None:  # type: ignore[no-untyped-def]
    reference, current = make(np.random.default_rng(7))
    reference, current = reference.astype(float), current.astype(float)
    result = PSI({"binning": "evidently"}).compute(reference, current)
    assert result.score == pytest.approx(evidently_psi(reference, current), rel=1e-12, abs=1e-15)
    assert result.details["binning"] == "evidently"


def test_psi_evidently_mode_uses_sturges_bins_and_ignores_bins_option() -> None:
    rng = np.random.default_rng(3)
    reference, current = rng.normal(size=1000), rng.normal(size=1000)
    a = PSI({"binning": "evidently", "bins": 10}).compute(reference, current)
    b = PSI({"binning": "evidently", "bins": 50}).compute(reference, current)
    assert a.score == b.score
    assert a.details["bins"] == math.ceil(math.log2(2000) + 1)


# --- KS ------------------------------------------------------------------------------------


def _samples() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(42)
    return [
        ("normal-same", rng.normal(size=2000), rng.normal(size=2000)),
        ("normal-shift-unequal", rng.normal(size=3000), rng.normal(0.08, 1.0, size=1700)),
        ("scale-change", rng.normal(size=1500), rng.normal(0.0, 1.1, size=4100)),
        ("ties-rounded", np.round(rng.normal(size=2500), 1), np.round(rng.normal(0.05, 1.0, size=1200), 1)),
        ("ties-integers", rng.poisson(3.0, 4000).astype(float), rng.poisson(3.1, 3000).astype(float)),
        ("multiple-sizes", rng.exponential(size=2000), rng.exponential(1.05, size=4000)),
        ("skewed", rng.lognormal(size=1000), rng.lognormal(0.1, 1.0, size=1000)),
        ("large-asymptotic", rng.normal(size=12_000), rng.normal(0.03, 1.0, size=3000)),
        ("large-both", rng.normal(size=15_000), rng.normal(0.02, 1.0, size=11_000)),
        ("strong-drift", rng.normal(size=2000), rng.normal(0.6, 1.0, size=3000)),
    ]


@pytest.mark.parametrize(("label", "reference", "current"), _samples(), ids=[s[0] for s in _samples()])
def test_ks_matches_scipy(label: str, reference: np.ndarray, current: np.ndarray) -> None:
    expected = stats.ks_2samp(reference, current, method="auto")
    result = KS().compute(reference, current)
    assert result.details["statistic"] == expected.statistic  # exactly
    assert result.score == pytest.approx(expected.pvalue, abs=1e-3)
    assert result.details["method"] == ("exact" if max(reference.size, current.size) <= 10_000 else "asymptotic")
    assert result.drifted == (expected.pvalue <= 0.05)


@pytest.mark.parametrize(
    ("n", "m"),
    [(1, 1), (3, 7), (10, 10), (25, 40), (50, 20), (200, 333)],
)
def test_ks_small_samples_match_scipy(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 1000 + m)
    for shift in (0.0, 0.5, 2.0):
        reference, current = rng.normal(size=n), np.round(rng.normal(shift, size=m), 1)
        expected = stats.ks_2samp(reference, current)
        result = KS().compute(reference, current)
        assert result.details["statistic"] == expected.statistic
        assert result.score == pytest.approx(expected.pvalue, abs=1e-9)


def test_ks_presorted_reference_gives_the_same_result() -> None:
    rng = np.random.default_rng(5)
    reference, current = rng.normal(size=5000), rng.normal(0.05, 1.0, size=1000)
    plain = KS().compute(reference, current)
    ordered = np.sort(reference)
    assert KS().compute(ordered, current) == plain
    assert KS().compute(ordered, current, presorted=True) == plain


def test_ks_drift_flags_and_threshold_override() -> None:
    rng = np.random.default_rng(9)
    reference = rng.normal(size=5000)
    same = KS().compute(reference, rng.normal(size=2000))
    drifted = KS().compute(reference, rng.normal(0.3, 1.0, size=2000))
    assert not same.drifted and same.score > 0.05
    assert drifted.drifted and drifted.score < 1e-6 and drifted.details["statistic"] > 0.1
    assert not KS().compute(reference, rng.normal(0.3, 1.0, size=2000), threshold=0.0).drifted
    assert KS().compute(reference, reference).score == 1.0


# --- input handling -------------------------------------------------------------------------


@pytest.mark.parametrize("metric", [PSI(), KS()], ids=["psi", "ks"])
@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ([], [1.0, 2.0]),
        ([1.0, 2.0], []),
        ([float("nan")] * 3, [1.0, 2.0]),
        ([1.0, 2.0], [float("inf"), float("nan")]),
        ([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0]),
        (["a", "b"], [1.0, 2.0]),
    ],
    ids=["empty-reference", "empty-current", "all-nan", "no-finite", "two-dimensional", "strings"],
)
def test_invalid_input(metric, reference, current) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        metric.compute(np.asarray(reference, dtype=object), np.asarray(current, dtype=object))


@pytest.mark.parametrize("metric", [PSI(), PSI({"binning": "evidently"}), KS()], ids=["psi", "psi-evidently", "ks"])
def test_non_finite_values_are_ignored_and_counted(metric) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    reference, current = rng.normal(size=1000), rng.normal(size=800)
    clean = metric.compute(reference, current)
    dirty = metric.compute(np.append(reference, [np.nan, np.inf]), np.append(current, [-np.inf]))
    assert dirty.score == clean.score
    assert dirty.details["ignored"] == 3 and clean.details["ignored"] == 0
