"""Prepared references, cached per process: what every window of a version compares against.

A reference profile is immutable (a new upload makes a new row and a new ``artifact_prefix``),
so ``(version_id, artifact_prefix)`` identifies it and the cache never goes stale. Loading
reads each numerical feature's sorted ``.npy`` once; the derived arrays (psi cut points and
proportions per bin count, the KS rank arrays) are computed on first use and kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplatform.core.monitoring.profiles import load_sorted, psi_cuts

if TYPE_CHECKING:
    from mlplatform.core.backends import ArtifactStore

MAX_CACHED = 32
EMPTY_BIN_EPSILON = 1e-4  # the psi metric's floor for an empty bin


@dataclass
class NumericReference:
    """A numerical feature's finite reference values, sorted."""

    values: np.ndarray
    learned: dict[str, float] = field(default_factory=dict)  # metric -> learned threshold (profiles.py)
    _ranks: tuple[np.ndarray, np.ndarray] | None = None
    _psi: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """For each reference value ``r``: ``(#ref < r / n, #ref <= r / n)``, the reference's
        empirical CDF just below and at ``r``, for the KS statistic."""
        if self._ranks is None:
            n = self.values.size
            self._ranks = (
                np.searchsorted(self.values, self.values, side="left") / n,
                np.searchsorted(self.values, self.values, side="right") / n,
            )
        return self._ranks

    def psi_bins(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """``(cut points, floored reference proportions)`` exactly as the psi metric bins them."""
        if bins not in self._psi:
            cuts = psi_cuts(self.values, bins)
            counts = np.bincount(np.searchsorted(cuts, self.values, side="right"), minlength=cuts.size + 1)
            self._psi[bins] = (cuts, np.maximum(counts / self.values.size, EMPTY_BIN_EPSILON))
        return self._psi[bins]


@dataclass
class CategoricalReference:
    categories: list[str]
    counts: np.ndarray  # int64, aligned with categories
    other: int = 0  # reference values in categories beyond the profile's cap

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories)}


@dataclass
class PreparedReference:
    profile: Mapping[str, Any]
    numeric: dict[str, NumericReference]
    categorical: dict[str, CategoricalReference]
    output: NumericReference | CategoricalReference | None


_cache: OrderedDict[tuple[int, str], PreparedReference] = OrderedDict()
_lock = threading.Lock()


def prepared(store: ArtifactStore, version_id: int, prefix: str, profile: Mapping[str, Any]) -> PreparedReference:
    """The prepared reference of one profile, loaded once per process (LRU of ``MAX_CACHED``)."""
    key = (version_id, prefix)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    ref = _load(store, prefix, profile)
    with _lock:
        _cache[key] = ref
        while len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)
    return ref


def clear() -> None:
    with _lock:
        _cache.clear()


def _load(store: ArtifactStore, prefix: str, profile: Mapping[str, Any]) -> PreparedReference:
    numeric: dict[str, NumericReference] = {}
    categorical: dict[str, CategoricalReference] = {}
    learned = profile.get("learned_thresholds") or {}
    for name, feature in profile["features"].items():
        loaded = _load_one(store, prefix, feature)
        if isinstance(loaded, NumericReference):
            loaded.learned = {m: float(by_feature[name]) for m, by_feature in learned.items() if name in by_feature}
            numeric[name] = loaded
        elif isinstance(loaded, CategoricalReference):
            categorical[name] = loaded
    output = _load_one(store, prefix, profile["output"]) if profile.get("output") else None
    return PreparedReference(profile, numeric, categorical, output)


def _load_one(
    store: ArtifactStore, prefix: str, feature: Mapping[str, Any]
) -> NumericReference | CategoricalReference | None:
    if feature["kind"] == "numerical":
        return NumericReference(load_sorted(store, prefix, feature["sorted"])) if feature.get("sorted") else None
    categories = list(feature["categories"])
    return CategoricalReference(
        categories, np.array([feature["categories"][c] for c in categories], dtype=np.int64), feature.get("other", 0)
    )
