"""Category counts of a categorical sample, and two samples' counts over their union."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from mlplatform.core.errors import InvalidInput


def category_counts(values: Any, label: str) -> tuple[list[Any], np.ndarray, int]:
    """``(categories, counts, ignored)`` of a 1-d sample of any hashable values.

    Missing values are dropped and counted in ``ignored``: ``None``, float NaN and NaT.
    Categories are Python scalars (``np.str_("a")`` becomes ``"a"``), sorted when the array
    has one numpy dtype, in order of first appearance for object arrays (which may mix types;
    ``1`` and ``"1"`` are then different categories). Raises ``InvalidInput`` if the sample is
    not 1-d, holds unhashable values or has no value left.
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInput(f"{label} sample must be 1-dimensional, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "O":
        try:
            counter = Counter(v for v in array.tolist() if not _missing(v))
        except TypeError:
            raise InvalidInput(f"{label} sample has unhashable values; categories must be scalars") from None
        categories, counts = list(counter), np.fromiter(counter.values(), dtype=np.int64, count=len(counter))
        kept = int(counts.sum())
    else:
        if kind in "fc":
            array = array[~np.isnan(array)]
        elif kind in "mM":
            array = array[~np.isnat(array)]
        unique, counts = np.unique(array, return_counts=True)
        categories, counts, kept = unique.tolist(), counts.astype(np.int64), int(array.size)
    if kept == 0:
        raise InvalidInput(f"{label} sample is empty (no non-missing values)")
    return categories, counts, int(np.asarray(values).size - kept)


def aligned_counts(
    reference: tuple[list[Any], np.ndarray], current: tuple[list[Any], np.ndarray]
) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """Both samples' counts over the union of their categories: the reference's categories
    first, in their order, then those only in the current sample (``unseen``, a boolean mask)."""
    index = {category: i for i, category in enumerate(reference[0])}
    union = list(reference[0])
    for category in current[0]:
        if category not in index:
            index[category] = len(union)
            union.append(category)
    ref = np.zeros(len(union), dtype=np.int64)
    ref[: len(reference[0])] = reference[1]
    cur = np.zeros(len(union), dtype=np.int64)
    cur[[index[c] for c in current[0]]] = current[1]
    unseen = np.zeros(len(union), dtype=bool)
    unseen[len(reference[0]) :] = True
    return union, ref, cur, unseen


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and NaT are the values not equal to themselves
    except (TypeError, ValueError):
        return False
