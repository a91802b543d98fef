"""Data-quality figures of one window, per feature and for the prediction.

Each function returns ``(metric, feature, value)`` rows plus what drift needs next (the
window's sorted finite values, or its category counts), so a column is converted and sorted
once. Rates are shares of the window's rows, except ``out_of_range_rate`` and
``unseen_category_rate``, which are shares of the non-missing values.

- ``missing_rate``: null or NaN, not counting values stored as null because their type was
  wrong (those are ``type_violation_rate``);
- ``type_violation_rate``, ``null_violation_rate``, ``unknown_feature_rate``: from the
  records' ``violations`` (see :mod:`.records`); ``schema_violation_rate`` (overall): rows
  with any violation;
- ``out_of_range_rate``: values below the reference min or above its max (+-inf included);
- ``unseen_category_rate`` and ``unseen_categories`` (how many distinct);
- ``mean`` of a numerical feature;
- prediction: ``prediction_mean``, ``prediction_std``, ``prediction_p05`` ... ``prediction_p95``
  for numeric outputs; ``prediction_share`` per class (the class in ``feature``) otherwise;
  ``prediction_missing_rate``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.core.errors import InvalidInput
from mlplatform.core.monitoring.profiles import categorical_values, numeric_values
from mlplatform.core.monitoring.reference_cache import CategoricalReference, NumericReference

Row = tuple[str, str, float]
PREDICTION_QUANTILES = {"p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
OVERALL = ""


def violation_counts(violations: pa.ChunkedArray | pa.Array) -> tuple[Counter[str], int]:
    """``(count per violation code, rows with any violation)``."""
    if violations.null_count == len(violations):
        return Counter(), 0
    flat = pc.list_flatten(violations)
    counts = (
        pc.value_counts(flat)
        if len(flat)
        else pa.array([], pa.struct([("values", pa.string()), ("counts", pa.int64())]))
    )
    codes = (
        Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=False)))
        if len(counts)
        else Counter()
    )
    rows = int(pc.sum(pc.greater(pc.list_value_length(violations).fill_null(0), 0).cast(pa.int64())).as_py() or 0)
    return codes, rows


def violation_rows(codes: Counter[str], total: int) -> list[Row]:
    names = {"type": "type_violation_rate", "null": "null_violation_rate", "unknown": "unknown_feature_rate"}
    rows = []
    for code, count in sorted(codes.items()):
        kind, _, feature = code.partition(":")
        if kind in names:
            rows.append((names[kind], feature, count / total))
    return rows


def sorted_finite(values: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``(finite values sorted, NaN count, +-inf count)``; one sort, the rest by bisection."""
    ordered = np.sort(values)  # NaN sorts last, -inf first, +inf just before the NaNs
    nan_at = (
        int(np.searchsorted(ordered, np.nan, side="left")) if ordered.size and np.isnan(ordered[-1]) else ordered.size
    )
    lo = int(np.searchsorted(ordered[:nan_at], -np.inf, side="right"))
    hi = int(np.searchsorted(ordered[:nan_at], np.inf, side="left"))
    return ordered[lo:hi], ordered.size - nan_at, lo + (nan_at - hi)


def numeric_feature(
    name: str, column: Any, reference: NumericReference | None, total: int, type_violations: int
) -> tuple[list[Row], np.ndarray]:
    """Rows for one numerical feature, and its finite values sorted (for drift)."""
    values = _floats(column)
    finite, nans, infinite = sorted_finite(values)
    rows: list[Row] = [("missing_rate", name, max(nans - type_violations, 0) / total)]
    if finite.size:
        rows.append(("mean", name, float(finite.mean())))
    present = finite.size + infinite
    if reference is not None and reference.values.size and present:
        low, high = reference.values[0], reference.values[-1]
        outside = int(np.searchsorted(finite, low, side="left")) + int(
            finite.size - np.searchsorted(finite, high, side="right")
        )
        rows.append(("out_of_range_rate", name, (outside + infinite) / present))
    return rows, finite


def _floats(column: Any) -> np.ndarray:
    """Numbers as float64, nulls and text that is not a number as NaN (files of one window
    may disagree on a column's type; the text then came from a file that had it wrong)."""
    try:
        return numeric_values(column)
    except InvalidInput:
        return np.array([_float_or_nan(v) for v in column.to_pylist()], dtype=np.float64)


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def category_counts(column: Any) -> tuple[list[str], np.ndarray, int]:
    """``(categories, counts, nulls)`` of a column compared as strings."""
    if pa.types.is_dictionary(column.type) and pa.types.is_string(column.type.value_type):
        return _dictionary_counts(column)
    strings = categorical_values(column)
    nulls = strings.null_count
    if nulls == len(strings):
        return [], np.zeros(0, dtype=np.int64), nulls
    counts = pc.value_counts(strings.drop_null() if nulls else strings)
    return counts.field("values").to_pylist(), np.asarray(counts.field("counts").to_numpy(), dtype=np.int64), nulls


def _dictionary_counts(column: Any) -> tuple[list[str], np.ndarray, int]:
    """Counts of a dictionary-encoded column: a ``bincount`` of each chunk's indices (as
    Parquet string columns are read), no hashing of the values."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    totals: dict[str, int] = {}
    for chunk in chunks:
        if len(chunk) == chunk.null_count:
            continue
        indices = chunk.indices.drop_null() if chunk.null_count else chunk.indices
        counts = np.bincount(indices.to_numpy(), minlength=len(chunk.dictionary))
        for value, count in zip(chunk.dictionary.to_pylist(), counts.tolist(), strict=True):
            if count:
                totals[value] = totals.get(value, 0) + count
    return list(totals), np.fromiter(totals.values(), dtype=np.int64, count=len(totals)), column.null_count


def categorical_feature(
    name: str, column: Any, reference: CategoricalReference | None, total: int, type_violations: int
) -> tuple[list[Row], list[str], np.ndarray]:
    """Rows for one categorical feature, and its category counts (for drift)."""
    categories, counts, nulls = category_counts(column)
    rows: list[Row] = [("missing_rate", name, max(nulls - type_violations, 0) / total)]
    present = int(counts.sum())
    if reference is not None and present:
        known = reference.index
        unseen = [i for i, c in enumerate(categories) if c not in known]
        rows.append(("unseen_category_rate", name, float(counts[unseen].sum()) / present))
        rows.append(("unseen_categories", name, float(len(unseen))))
    return rows, categories, counts


def output_is_numeric(column: Any, declared: str | None) -> bool:
    """Regression-like outputs: declared ``number``, or a float column when undeclared."""
    if declared:
        return declared == "number"
    return pa.types.is_floating(column.type)


def prediction_rows(
    column: Any, numeric: bool, total: int
) -> tuple[list[Row], np.ndarray | None, tuple[list[str], np.ndarray] | None]:
    """Prediction distribution rows, and the sorted values or class counts (for drift)."""
    if numeric:
        values = _floats(column)
        finite, nans, _ = sorted_finite(values)
        rows: list[Row] = [("prediction_missing_rate", OVERALL, nans / total)]
        if finite.size:
            rows += [
                ("prediction_mean", OVERALL, float(finite.mean())),
                ("prediction_std", OVERALL, float(finite.std())),
            ]
            quantiles = np.quantile(finite, list(PREDICTION_QUANTILES.values()))
            rows += [
                (f"prediction_{key}", OVERALL, float(q))
                for key, q in zip(PREDICTION_QUANTILES, quantiles, strict=False)
            ]
        return rows, finite, None
    categories, counts, nulls = category_counts(column)
    rows = [("prediction_missing_rate", OVERALL, nulls / total)]
    present = int(counts.sum())
    rows += (
        [
            ("prediction_share", category, int(count) / present)
            for category, count in zip(categories, counts, strict=False)
        ]
        if present
        else []
    )
    return rows, None, (categories, counts)
