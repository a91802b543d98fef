"""Thresholds learned from the metric's spread across chunks of the reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from marshmallow import ValidationError
from sqlalchemy import select

from mlplatform.core.config import MonitoringSchema
from mlplatform.core.db.monitoring import ReferenceProfile
from mlplatform.core.monitoring.drift_window import DriftSuite
from mlplatform.core.monitoring.profiles import build_profile, learned_thresholds
from mlplatform.core.monitoring.quality import sorted_finite
from mlplatform.core.monitoring.reference_cache import NumericReference
from mlplatform.plugins.drift import KS, PSI
from tests.monitoring.conftest import Monitored, parquet_bytes, reference_frame


def metrics() -> list:
    return [PSI({"bins": 10}), KS({})]


def heavy_tailed_reference() -> tuple[NumericReference, dict[str, dict[str, float]]]:
    table = pa.table({"x": np.random.default_rng(3).standard_t(2, 1000)})
    profile, arrays = build_profile(table, None)
    learned = learned_thresholds(table, profile, metrics(), {}, 10)
    reference = NumericReference(arrays[profile["features"]["x"]["sorted"]])
    reference.learned = {metric: by_feature["x"] for metric, by_feature in learned.items()}
    return reference, learned


def window(seed: int, shift: float = 0.0) -> np.ndarray:
    return sorted_finite(np.random.default_rng(seed).standard_t(2, 100) + shift)[0]


def test_config_defaults_and_validation() -> None:
    loaded = MonitoringSchema().load({})
    assert loaded["learned_thresholds"] is False and loaded["learned_threshold_chunks"] == 10
    with pytest.raises(ValidationError):
        MonitoringSchema().load({"learned_threshold_chunks": 1})


def test_noisy_reference_learns_a_looser_psi_threshold() -> None:
    _, learned = heavy_tailed_reference()
    assert learned["psi"]["x"] > 0.1
    assert 0 < learned["ks"]["x"] <= 0.05
    again = learned_thresholds(
        pa.table({"x": np.random.default_rng(3).standard_t(2, 1000)}),
        build_profile(pa.table({"x": np.random.default_rng(3).standard_t(2, 1000)}), None)[0],
        metrics(),
        {},
        10,
    )
    assert again == learned  # seeded


def test_learned_threshold_never_stricter_than_configured() -> None:
    table = pa.table({"x": np.random.default_rng(0).normal(0, 1, 20_000)})
    profile, _ = build_profile(table, None)
    learned = learned_thresholds(table, profile, metrics(), {"psi": 0.5, "ks": 0.01}, 5)
    assert learned["psi"]["x"] == 0.5 and learned["ks"]["x"] <= 0.01


def test_same_distribution_not_flagged_shifted_still_is() -> None:
    reference, _ = heavy_tailed_reference()
    on = DriftSuite(metrics(), {}, {}, learned=True)
    off = DriftSuite(metrics(), {}, {})
    flagged_on = flagged_off = 0
    for seed in range(100, 160):
        current = window(seed)
        flagged_on += on.numeric("x", reference, current)[0].drifted
        flagged_off += off.numeric("x", reference, current)[0].drifted
    assert flagged_off > 0 and flagged_on < flagged_off
    # a calm window (same distribution) the default psi threshold flags and the learned one does not
    current = window(102)
    assert off.numeric("x", reference, current)[0].drifted
    assert not any(score.drifted for score in on.numeric("x", reference, current))
    moved = on.numeric("x", reference, window(7, shift=3.0))
    assert all(score.drifted for score in moved)


def test_explicit_feature_threshold_wins_over_learned() -> None:
    reference, learned = heavy_tailed_reference()
    suite = DriftSuite(metrics(), {}, {"x": {"psi": 0.01, "ks": 0.9}}, learned=True)
    assert suite.threshold(suite.metrics[0], "x", reference.learned) == 0.01
    assert suite.threshold(suite.metrics[1], "x", reference.learned) == 0.9
    assert suite.threshold(suite.metrics[0], "y", reference.learned) == learned["psi"]["x"]


def test_option_off_keeps_configured_thresholds() -> None:
    reference, _ = heavy_tailed_reference()
    off = DriftSuite(metrics(), {"psi": 0.2}, {})
    assert off.threshold(off.metrics[0], "x", reference.learned) == 0.2
    assert off.threshold(off.metrics[1], "x", reference.learned) == 0.05
    plain = NumericReference(reference.values)
    for seed in range(100, 110):
        current = window(seed)
        assert off.numeric("x", reference, current) == off.numeric("x", plain, current)


def test_reference_upload_stores_learned_thresholds_only_when_on(monitored: Monitored) -> None:
    api, url = monitored.api, f"{monitored.base}/versions/1/reference"
    body = parquet_bytes(reference_frame(500))
    headers = {"Content-Type": "application/vnd.apache.parquet"}

    def stored() -> dict:
        with api.platform.db.read() as session:
            return session.scalar(select(ReferenceProfile)).profile

    assert api.put(url, data=body, headers=headers).status_code in (200, 201)
    assert "learned_thresholds" not in stored()
    api.platform.config["monitoring"]["learned_thresholds"] = True
    assert api.put(url, data=body, headers=headers).status_code in (200, 201)
    learned = stored()["learned_thresholds"]
    assert set(learned) == {"psi", "ks"} and set(learned["psi"]) == {"age", "income"}
    assert all(v >= 0.1 for v in learned["psi"].values()) and all(v <= 0.05 for v in learned["ks"].values())
