"""Serving and model performance of one window.

- From gateway-captured rows (``status`` not null): ``latency_p50``, ``latency_p99`` (milliseconds)
  (over rows with a latency) and ``error_rate`` (status >= 400).
- From late labels joined by ``request_id``: ``labeled_count`` and, for numeric outputs,
  ``mae`` and ``rmse``; otherwise ``accuracy`` and ``f1`` (macro: the mean F1 over every class
  seen in the labels or the predictions). Labels and predictions are compared as text, with
  booleans as ``true``/``false`` and whole floats as integers, so ``1``, ``1.0`` and ``"1"``
  are one class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Row = tuple[str, str, float]
OVERALL = ""


def serving_rows(status: Any, latency: Any) -> list[Row]:
    captured = len(status) - status.null_count
    if captured == 0:
        return []
    rows: list[Row] = []
    errors = pc.sum(pc.greater_equal(status, 400).cast(pa.int64())).as_py() or 0
    rows.append(("error_rate", OVERALL, errors / captured))
    latencies = latency.drop_null().to_numpy() if latency.null_count < len(latency) else np.zeros(0)
    if latencies.size:
        p50, p99 = np.quantile(np.asarray(latencies, dtype=np.float64), [0.5, 0.99])
        rows += [("latency_p50", OVERALL, float(p50)), ("latency_p99", OVERALL, float(p99))]
    return rows


def label_rows(request_ids: Any, outputs: Any, labels: Mapping[str, Any], numeric: bool) -> list[Row]:
    """Rows for the window's records that have a label (``labels``: request id -> label)."""
    if not labels or len(request_ids) == 0:
        return []
    label_ids = pa.array(list(labels), pa.string())
    position = pc.index_in(request_ids, value_set=label_ids)
    matched = pc.is_valid(position)
    if not pc.any(matched).as_py():
        return []
    predicted = outputs.filter(matched).to_pylist()
    label_values = list(labels.values())
    truth = [label_values[i] for i in position.filter(matched).to_pylist()]
    rows: list[Row] = [("labeled_count", OVERALL, float(len(truth)))]
    if numeric:
        pairs = [(float(p), float(t)) for p, t in zip(predicted, truth, strict=False) if _number(p) and _number(t)]
        if pairs:
            diff = np.array([p - t for p, t in pairs])
            rows += [
                ("mae", OVERALL, float(np.abs(diff).mean())),
                ("rmse", OVERALL, float(math.sqrt((diff**2).mean()))),
            ]
        return rows
    pairs_text = [
        (_text(p), _text(t)) for p, t in zip(predicted, truth, strict=False) if p is not None and t is not None
    ]
    if pairs_text:
        rows += [
            ("accuracy", OVERALL, sum(p == t for p, t in pairs_text) / len(pairs_text)),
            ("f1", OVERALL, macro_f1(pairs_text)),
        ]
    return rows


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    """Mean over classes of ``2TP / (2TP + FP + FN)`` for ``(predicted, true)`` pairs."""
    classes = {c for pair in pairs for c in pair}
    scores = []
    for cls in classes:
        tp = sum(1 for p, t in pairs if p == cls and t == cls)
        fp = sum(1 for p, t in pairs if p == cls and t != cls)
        fn = sum(1 for p, t in pairs if p != cls and t == cls)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(sum(scores) / len(scores)) if scores else 0.0


def _number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return False
    return math.isfinite(float(value))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
