"""The ``drift_extra`` metrics against scipy (a test-only dependency: the metrics are pure numpy)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from marshmallow import ValidationError
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from mlplatform.core.errors import InvalidInput
from plugins_contrib.drift_extra import plugin
from plugins_contrib.drift_extra.chi_square import UNSEEN_PROPORTION, ChiSquare
from plugins_contrib.drift_extra.jensen_shannon import JensenShannon
from plugins_contrib.drift_extra.special import chi2_sf, gammaincc
from plugins_contrib.drift_extra.wasserstein import Wasserstein
from tests.contrib.helpers import declared_entry_points, manager_with

RNG = np.random.default_rng(20240501)


def test_registered_by_the_plugin() -> None:
    assert plugin.register_drift_metrics() == [ChiSquare, JensenShannon, Wasserstein]
    entries = manager_with(plugin).backends.entries("drift_metric")
    assert entries["chi_square"].cls is ChiSquare
    assert entries["jensen_shannon"].cls is JensenShannon
    assert entries["wasserstein"].cls is Wasserstein
    described = {
        (c.name, c.feature_kind, c.default_threshold, c.higher_is_drift) for c in plugin.register_drift_metrics()
    }
    assert described == {
        ("chi_square", "categorical", 0.05, False),
        ("jensen_shannon", "both", 0.1, True),
        ("wasserstein", "numerical", 0.1, True),
    }
    assert all(value == "plugins_contrib.drift_extra.plugin" for value in declared_entry_points("drift_extra"))


# --- the chi-square survival function --------------------------------------------------------


@pytest.mark.parametrize("a", [0.5, 1.0, 1.5, 2.0, 3.5, 10.0, 49.5, 500.0])
def test_gammaincc_matches_scipy(a: float) -> None:
    for x in [0.0, 1e-8, 0.01, 0.5, a / 2, a - 1, a, a + 1, a + 1.0001, 2 * a, 3 * a + 30, 10 * a + 200]:
        x = max(x, 0.0)
        expected = special.gammaincc(a, x)
        assert gammaincc(a, x) == pytest.approx(expected, rel=1e-9, abs=1e-13), (a, x)


def test_chi2_sf_matches_scipy_including_tiny_and_huge_dof() -> None:
    for dof in [1, 2, 3, 9, 99, 999, 20_000]:
        for statistic in [0.0, 0.1, dof * 0.8, float(dof), dof * 1.3 + 5, dof * 4.0 + 60]:
            assert chi2_sf(statistic, dof) == pytest.approx(stats.chi2.sf(statistic, dof), rel=1e-8, abs=1e-10)
    assert chi2_sf(5.0, 0) == 1.0 and chi2_sf(math.inf, 3) == 0.0
    with pytest.raises(ValueError):
        gammaincc(0.0, 1.0)


# --- chi_square ------------------------------------------------------------------------------


def scipy_chisquare(reference: list, current: list, unseen: float = UNSEEN_PROPORTION) -> tuple[float, float, int]:
    """The documented test, built independently: reference proportions over the union, an
    unseen category at ``unseen`` before renormalising; returns (statistic, p-value, k)."""
    ref, cur = Counter(reference), Counter(current)
    union = list(ref) + [c for c in cur if c not in ref]
    proportions = np.array([ref[c] / len(reference) if c in ref else unseen for c in union])
    expected = len(current) * proportions / proportions.sum()
    observed = np.array([cur[c] for c in union], dtype=float)
    result = stats.chisquare(f_obs=observed, f_exp=expected)
    return float(result.statistic), float(result.pvalue), len(union)


@pytest.mark.parametrize(
    ("probabilities", "n_ref", "n_cur"),
    [
        ([0.5, 0.5], 1000, 100),
        ([0.7, 0.2, 0.1], 5000, 300),
        ([0.25] * 4, 200, 2000),
        (list(np.full(40, 1 / 40)), 10_000, 1000),
        ([0.9, 0.05, 0.03, 0.02], 50, 50),
    ],
)
def test_chi_square_matches_scipy_chisquare(probabilities: list[float], n_ref: int, n_cur: int) -> None:
    names = [f"c{i}" for i in range(len(probabilities))]
    reference = list(RNG.choice(names, size=n_ref, p=probabilities))
    shifted = np.roll(probabilities, 1) * 0.3 + np.array(probabilities) * 0.7
    for current in (
        list(RNG.choice(names, size=n_cur, p=probabilities)),
        list(RNG.choice(names, size=n_cur, p=shifted)),
    ):
        statistic, pvalue, k = scipy_chisquare(reference, current)
        result = ChiSquare().compute(np.array(reference), np.array(current))
        assert result.score == pytest.approx(pvalue, rel=1e-9, abs=1e-12)
        assert result.details["statistic"] == pytest.approx(statistic, rel=1e-12)
        assert result.details["dof"] == k - 1
        assert result.details["unseen_categories"] == len(set(current) - set(reference))  # small samples miss some


def test_chi_square_with_many_categories_matches_scipy() -> None:
    reference = list(RNG.integers(0, 3000, size=200_000))
    current = list(RNG.integers(0, 3000, size=20_000))
    statistic, pvalue, k = scipy_chisquare(reference, current)
    result = ChiSquare().compute(np.array(reference), np.array(current))
    assert k == 3000 and result.details["dof"] == 2999
    assert abs(result.score - pvalue) < 1e-6


def test_chi_square_unseen_and_missing_categories() -> None:
    reference = ["a"] * 600 + ["b"] * 300 + ["c"] * 100
    current = ["a"] * 60 + ["b"] * 35 + ["new"] * 4 + ["newer"]  # no "c"; two unseen categories
    result = ChiSquare().compute(np.array(reference, dtype=object), np.array(current, dtype=object))
    statistic, pvalue, k = scipy_chisquare(reference, current)
    assert k == 5 and result.details["categories"] == 5
    assert result.details["statistic"] == pytest.approx(statistic, rel=1e-12)
    assert result.score == pytest.approx(pvalue, rel=1e-9, abs=1e-300)
    assert result.details["unseen_categories"] == 2
    assert result.details["unseen_share"] == pytest.approx(0.05)
    assert result.details["unseen_examples"] == ["new", "newer"]
    assert result.drifted  # 5 values where 0.02 were expected
    # A larger unseen proportion is an option, and softens the verdict.
    softer = ChiSquare({"unseen_proportion": 0.01}).compute(np.array(reference), np.array(current))
    assert softer.details["statistic"] == pytest.approx(scipy_chisquare(reference, current, 0.01)[0], rel=1e-12)
    assert softer.details["statistic"] < result.details["statistic"]


def test_chi_square_drift_flags_and_threshold() -> None:
    names = np.array(["red", "green", "blue"])
    reference = RNG.choice(names, size=20_000, p=[0.5, 0.3, 0.2])
    same = ChiSquare().compute(reference, RNG.choice(names, size=2000, p=[0.5, 0.3, 0.2]))
    shifted = ChiSquare().compute(reference, RNG.choice(names, size=2000, p=[0.4, 0.3, 0.3]))
    assert not same.drifted and same.score > 0.05
    assert shifted.drifted and shifted.score < 1e-10
    assert ChiSquare().compute(reference, reference[:2000], threshold=1.0).drifted  # score <= threshold
    assert ChiSquare().compute(reference, reference[:2000]).details["threshold"] == 0.05


def test_chi_square_category_types_and_missing_values() -> None:
    ints = ChiSquare().compute(np.array([1, 1, 2, 3]), np.array([1, 2, 2, 3]))
    objs = ChiSquare().compute(np.array([1, 1, 2, 3], dtype=object), np.array([1, 2, 2, 3], dtype=object))
    assert ints.score == pytest.approx(objs.score, rel=1e-15)
    with_missing = ChiSquare().compute(
        np.array([1.0, 1.0, 2.0, 3.0, np.nan]), np.array([1, 2, 2, 3, None, float("nan")], dtype=object)
    )
    assert with_missing.score == pytest.approx(ints.score, rel=1e-15)
    assert with_missing.details["ignored"] == 3
    booleans = ChiSquare().compute(np.array([True, False, True]), np.array([True, True]))
    assert booleans.details["categories"] == 2
    single = ChiSquare().compute(np.array(["x", "x"]), np.array(["x"]))
    assert (single.score, single.details["dof"], single.drifted) == (1.0, 0, False)


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        ([], ["a"], "reference sample is empty"),
        (["a"], [None, None], "current sample is empty"),
        ([["a", "b"]], ["a"], "reference sample must be 1-dimensional"),
        (np.array([np.nan]), ["a"], "reference sample is empty"),
    ],
)
def test_chi_square_invalid_input(reference: object, current: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ChiSquare().compute(np.asarray(reference, dtype=object) if isinstance(reference, list) else reference, current)


def test_chi_square_unhashable_values_are_invalid() -> None:
    current = np.empty(1, dtype=object)
    current[0] = ["a"]
    with pytest.raises(InvalidInput, match="current sample has unhashable values"):
        ChiSquare().compute(np.array(["a"]), current)


def test_chi_square_options_are_validated() -> None:
    with pytest.raises(ValidationError):
        ChiSquare.Config().load({"unseen_proportion": 0})
    assert ChiSquare.Config().load({}) == {"unseen_proportion": 1e-4}


# --- jensen_shannon --------------------------------------------------------------------------


def histogram_counts(reference: np.ndarray, current: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented binning, via np.histogram: [cut_i, cut_i+1) bins, open at both ends."""
    cuts = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], cuts, [np.inf]])
    return np.histogram(reference, edges)[0], np.histogram(current, edges)[0]


@pytest.mark.parametrize(
    ("reference", "current", "bins"),
    [
        (RNG.normal(size=5000), RNG.normal(size=1000), 10),
        (RNG.normal(size=5000), RNG.normal(0.4, 1.3, size=800), 10),
        (RNG.exponential(size=3000), RNG.exponential(2.0, size=3000), 20),
        (
            RNG.integers(0, 5, size=2000).astype(float),
            RNG.integers(0, 7, size=500).astype(float),
            10,
        ),  # ties merge bins
        (RNG.uniform(size=100), RNG.uniform(5, 6, size=50), 4),  # all current values above the reference
    ],
)
def test_jensen_shannon_numerical_matches_scipy(reference: np.ndarray, current: np.ndarray, bins: int) -> None:
    ref_counts, cur_counts = histogram_counts(reference, current, bins)
    expected = jensenshannon(ref_counts, cur_counts, base=2)
    result = JensenShannon({"bins": bins}).compute(reference, current)
    assert result.score == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert result.details["mode"] == "numerical" and result.details["bins"] == ref_counts.size


def test_jensen_shannon_categorical_matches_scipy_with_unseen_categories() -> None:
    reference = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    current = ["a"] * 10 + ["c"] * 25 + ["d"] * 5  # "b" missing, "d" unseen
    union = ["a", "b", "c", "d"]
    ref, cur = Counter(reference), Counter(current)
    expected = jensenshannon([ref[c] for c in union], [cur[c] for c in union], base=2)
    result = JensenShannon().compute(np.array(reference), np.array(current))
    assert result.score == pytest.approx(expected, rel=1e-12)
    assert result.details["mode"] == "categorical"
    assert (result.details["categories"], result.details["unseen_categories"]) == (4, 1)
    assert result.drifted


def test_jensen_shannon_bounds_modes_and_flags() -> None:
    reference = RNG.normal(size=10_000)
    same = JensenShannon().compute(reference, reference)
    assert same.score == pytest.approx(0.0, abs=1e-7) and not same.drifted
    disjoint = JensenShannon().compute(np.array(["a", "b"]), np.array(["c"]))
    assert disjoint.score == pytest.approx(1.0, rel=1e-12) and disjoint.drifted
    assert not JensenShannon().compute(reference, RNG.normal(size=5000)).drifted
    assert JensenShannon().compute(reference, RNG.normal(1.0, size=5000)).drifted
    codes = np.array([1, 2, 2, 3, 3, 3])
    as_categories = JensenShannon({"mode": "categorical"}).compute(codes, np.array([1, 1, 7]))
    assert as_categories.details["mode"] == "categorical" and as_categories.details["unseen_categories"] == 1
    assert JensenShannon().compute(codes, np.array([1, 1, 7])).details["mode"] == "numerical"
    assert JensenShannon().compute(np.array([True, False]), np.array([True])).details["mode"] == "categorical"
    assert JensenShannon().compute(reference, reference, threshold=0.0).drifted


def test_jensen_shannon_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="current sample is empty"):
        JensenShannon().compute(np.arange(10.0), np.array([np.nan, np.inf]))
    with pytest.raises(InvalidInput, match="reference sample is empty"):
        JensenShannon().compute(np.array([None], dtype=object), np.array(["a"]))
    with pytest.raises(InvalidInput, match="current sample must be numeric"):
        JensenShannon({"mode": "numerical"}).compute(np.arange(10.0), np.array(["a"]))
    with pytest.raises(InvalidInput, match="1-dimensional"):
        JensenShannon().compute(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValidationError):
        JensenShannon.Config().load({"mode": "ordinal"})


# --- wasserstein -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        (RNG.normal(size=5000), RNG.normal(size=1000)),
        (RNG.normal(10, 3, size=2000), RNG.normal(11, 3, size=2000)),
        (RNG.exponential(size=700), RNG.lognormal(size=301)),
        (RNG.integers(0, 4, size=1000).astype(float), RNG.integers(0, 5, size=90).astype(float)),  # heavy ties
        (np.array([1.0]), np.array([4.0, 6.0])),
    ],
)
def test_wasserstein_matches_scipy(reference: np.ndarray, current: np.ndarray) -> None:
    distance = stats.wasserstein_distance(reference, current)
    result = Wasserstein().compute(reference, current)
    assert result.details["distance"] == pytest.approx(distance, rel=1e-12, abs=1e-15)
    assert result.score == pytest.approx(distance / max(np.std(reference), 0.001), rel=1e-12, abs=1e-15)
    assert result.details["reference_std"] == pytest.approx(np.std(reference), rel=1e-15)


def test_wasserstein_hand_computed_and_constant_reference() -> None:
    # All mass moves from 0 to 2: W1 = 2; reference [0, 2] has std 1.
    assert Wasserstein().compute(np.array([0.0, 2.0]), np.array([2.0, 4.0])).score == pytest.approx(2.0)
    constant = Wasserstein().compute(np.full(10, 5.0), np.full(5, 5.001))
    assert constant.details["reference_std"] == 0.0
    assert constant.score == pytest.approx(1.0)  # 0.001 / the 0.001 floor


def test_wasserstein_drift_flags_scale_free_and_ignores_non_finite() -> None:
    reference = RNG.normal(size=10_000)
    assert not Wasserstein().compute(reference, RNG.normal(size=2000)).drifted
    shifted = Wasserstein().compute(reference, RNG.normal(0.3, 1.0, size=2000))
    assert shifted.drifted and shifted.score == pytest.approx(0.3, abs=0.05)
    scaled = Wasserstein().compute(reference * 1000, RNG.normal(300.0, 1000.0, size=2000))
    assert scaled.score == pytest.approx(shifted.score, abs=0.05)
    with_nan = Wasserstein().compute(np.array([0.0, 2.0, np.nan]), np.array([2.0, np.inf, 4.0]))
    assert with_nan.score == pytest.approx(2.0) and with_nan.details["ignored"] == 2
    with pytest.raises(InvalidInput, match="reference sample is empty"):
        Wasserstein().compute(np.array([]), np.array([1.0]))
    with pytest.raises(InvalidInput, match="current sample must be numeric"):
        Wasserstein().compute(np.array([1.0]), np.array(["x"]))
