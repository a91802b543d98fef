"""The fast psi/ks paths give what the metrics' own ``compute`` gives, and drift is found
where the data moved and not where it did not (pure unit tests, no database)."""

from __future__ import annotations

import numpy as np
import pytest

from mlplatform.core.monitoring.drift_window import DriftSuite, ks_statistic_presorted
from mlplatform.core.monitoring.quality import sorted_finite
from mlplatform.core.monitoring.reference_cache import CategoricalReference, NumericReference
from mlplatform.plugins.drift import KS, PSI, ks_statistic


def suite(**thresholds: float) -> DriftSuite:
    return DriftSuite([PSI({"bins": 10}), KS({})], thresholds, {})


@pytest.mark.parametrize(
    ("n", "m", "ties"),
    [(5000, 20000, False), (3000, 3000, True), (700, 1300, False), (20000, 400, True), (50, 60, True)],
)
def test_fast_paths_equal_the_metrics_compute(n: int, m: int, ties: bool) -> None:
    rng = np.random.default_rng(n + m)
    ref = rng.normal(0, 1, n)
    cur = rng.normal(0.1, 1.1, m)
    if ties:
        ref, cur = np.round(ref, 1), np.round(cur, 1)
    reference = NumericReference(np.sort(ref))
    current, _, _ = sorted_finite(cur)

    assert ks_statistic_presorted(reference, current) == ks_statistic(np.sort(ref), np.sort(cur))
    fast = {s.metric: s for s in suite().numeric("x", reference, current)}
    psi = PSI({"bins": 10}).compute(ref, cur)
    ks = KS({}).compute(ref, cur)
    assert fast["psi"].score == psi.score and fast["psi"].drifted == psi.drifted
    assert fast["ks"].score == ks.score and fast["ks"].statistic == ks.details["statistic"]
    assert fast["ks"].drifted == ks.drifted


def test_shifted_feature_drifts_and_unshifted_does_not() -> None:
    rng = np.random.default_rng(1)
    reference = NumericReference(np.sort(rng.normal(0, 1, 50_000)))
    same, _, _ = sorted_finite(rng.normal(0, 1, 20_000))
    shifted, _, _ = sorted_finite(rng.normal(0.5, 1, 20_000))
    calm = suite().numeric("a", reference, same)
    moved = suite().numeric("b", reference, shifted)
    assert not any(s.drifted for s in calm)
    assert all(s.drifted for s in moved)


def test_thresholds_from_config_and_per_feature() -> None:
    rng = np.random.default_rng(2)
    reference = NumericReference(np.sort(rng.normal(0, 1, 10_000)))
    current, _, _ = sorted_finite(rng.normal(0.5, 1, 10_000))
    lenient = DriftSuite([PSI({"bins": 10})], {"psi": 100.0}, {"strict": {"psi": 0.0}})
    assert not lenient.numeric("a", reference, current)[0].drifted
    assert lenient.numeric("strict", reference, current)[0].drifted


def test_categorical_psi_counts_unseen_categories_as_bins() -> None:
    reference = CategoricalReference(["a", "b"], np.array([500, 500]))
    same = suite().categorical("c", reference, ["a", "b"], np.array([250, 250]))
    moved = suite().categorical("c", reference, ["a", "b", "new"], np.array([100, 100, 300]))
    assert [s.metric for s in same] == ["psi"] and same[0].score == pytest.approx(0.0) and not same[0].drifted
    assert moved[0].drifted and moved[0].score > 1


def test_contrib_categorical_metric_runs_through_its_compute() -> None:
    from plugins_contrib.drift_extra.chi_square import ChiSquare

    reference = CategoricalReference(["a", "b"], np.array([500, 500]))
    scores = DriftSuite([ChiSquare({})], {}, {}).categorical("c", reference, ["a", "b"], np.array([100, 400]))
    expected = ChiSquare({}).compute(np.repeat([0, 1], [500, 500]), np.repeat([0, 1], [100, 400]))
    assert scores[0].score == expected.score and scores[0].drifted


def test_sorted_finite_separates_nan_and_infinity() -> None:
    finite, nans, infinite = sorted_finite(np.array([3.0, np.nan, -np.inf, 1.0, np.inf, np.nan, 2.0]))
    assert finite.tolist() == [1.0, 2.0, 3.0] and nans == 2 and infinite == 2
