"""``mean_shift`` behaviour, called directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mlplatform_inhouse.metrics import MeanShift

from mlplatform.core.errors import InvalidInput


def test_score_is_mean_shift_in_reference_stds() -> None:
    reference = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, population std sqrt(2)
    result = MeanShift().compute(reference, np.array([3.5, 4.5]))
    assert result.score == pytest.approx(1.0 / math.sqrt(2.0))
    assert result.drifted
    assert result.details["reference_mean"] == 3.0 and result.details["current_mean"] == 4.0


def test_threshold_default_and_override() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=10_000)
    assert MeanShift.default_threshold == 0.1 and MeanShift.higher_is_drift
    assert not MeanShift().compute(reference, rng.normal(size=10_000)).drifted
    assert MeanShift().compute(reference, rng.normal(0.2, 1.0, size=10_000)).drifted
    assert not MeanShift().compute(reference, rng.normal(0.2, 1.0, size=10_000), threshold=0.5).drifted


def test_constant_reference_and_non_finite_values() -> None:
    assert MeanShift().compute(np.ones(10), np.ones(3)).score == 0.0
    assert MeanShift().compute(np.ones(10), np.full(3, 2.0)).score == math.inf
    assert MeanShift().compute(np.array([1.0, 3.0, np.nan]), np.array([2.0, np.inf])).score == 0.0


@pytest.mark.parametrize(("reference", "current"), [([], [1.0]), ([1.0], []), ([np.nan], [1.0]), (["x"], [1.0])])
def test_empty_or_non_numeric_input_is_invalid(reference: list, current: list) -> None:
    with pytest.raises(InvalidInput):
        MeanShift().compute(np.asarray(reference), np.asarray(current))
