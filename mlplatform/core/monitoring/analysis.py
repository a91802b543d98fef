"""One version's records in one window -> every monitor point of that window.

Features: the reference profile's, then the signature's, then any other input column the
records hold. A feature's kind comes from the profile, else the signature type, else the
column's Arrow type. Drift is computed for features the reference profiles (and for the
prediction, under the feature name ``PREDICTION``, when the reference has the output column).

Overall rows (feature ``""``): ``row_count``, ``schema_violation_rate``, ``drifted_features``
and ``drift_share`` (of the input features with at least one drift score), the prediction
distribution, serving figures and label metrics; per feature: the rows of :mod:`.quality`,
:mod:`.drift_window` and ``drifted`` (0/1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from mlplatform.core.monitoring import performance, quality
from mlplatform.core.monitoring.drift_window import DriftScore, DriftSuite, scores_to_points
from mlplatform.core.monitoring.ingest import InputSchema
from mlplatform.core.monitoring.records import WindowRecords
from mlplatform.core.monitoring.reference_cache import CategoricalReference, NumericReference, PreparedReference

Row = tuple[str, str, float]
PREDICTION = "@prediction"
OVERALL = ""
_KIND_OF_TYPE = {"number": "numerical", "integer": "numerical", "string": "categorical", "boolean": "categorical"}


def feature_kinds(records: WindowRecords, reference: PreparedReference | None, schema: InputSchema) -> dict[str, str]:
    kinds: dict[str, str] = {}
    if reference is not None:
        kinds.update({name: f["kind"] for name, f in reference.profile["features"].items()})
    for name, spec in schema.features.items():
        if name not in kinds and spec.type in _KIND_OF_TYPE:
            kinds[name] = _KIND_OF_TYPE[spec.type]
    for name, column in records.features.items():
        if name not in kinds:
            kind = column.type
            if pa.types.is_integer(kind) or pa.types.is_floating(kind):
                kinds[name] = "numerical"
            elif pa.types.is_string(kind) or pa.types.is_boolean(kind) or pa.types.is_dictionary(kind):
                kinds[name] = "categorical"
    return kinds


def analyze(
    records: WindowRecords,
    reference: PreparedReference | None,
    schema: InputSchema,
    suite: DriftSuite,
    labels: Mapping[str, Any] | None = None,
) -> list[Row]:
    """Every row for one version's window; see the module doc."""
    total = records.num_rows
    rows: list[Row] = [("row_count", OVERALL, float(total))]
    if total == 0:
        return rows
    table = records.table
    codes, violating = quality.violation_counts(table.column("violations"))
    rows.append(("schema_violation_rate", OVERALL, violating / total))
    rows += quality.violation_rows(codes, total)

    drifted, scored = 0, 0
    for name, kind in feature_kinds(records, reference, schema).items():
        column = records.features.get(name)
        if column is None:
            column = pa.nulls(total, pa.float64() if kind == "numerical" else pa.string())
        scores = _feature(rows, name, kind, column, reference, suite, total, codes.get(f"type:{name}", 0))
        if scores:
            scored += 1
            is_drifted = any(s.drifted for s in scores)
            drifted += is_drifted
            rows.append(("drifted", name, 1.0 if is_drifted else 0.0))
    if scored:
        rows += [("drifted_features", OVERALL, float(drifted)), ("drift_share", OVERALL, drifted / scored)]

    numeric_output = quality.output_is_numeric(table.column("output"), schema.output_type)
    prediction, values, counts = quality.prediction_rows(table.column("output"), numeric_output, total)
    rows += prediction
    ref_output = reference.output if reference is not None else None
    if isinstance(ref_output, NumericReference) and values is not None:
        rows += scores_to_points(PREDICTION, suite.numeric(PREDICTION, ref_output, values))
    elif isinstance(ref_output, CategoricalReference) and counts is not None:
        rows += scores_to_points(PREDICTION, suite.categorical(PREDICTION, ref_output, *counts))

    rows += performance.serving_rows(table.column("status"), table.column("latency_ms"))
    if labels:
        rows += performance.label_rows(table.column("request_id"), table.column("output"), labels, numeric_output)
    return rows


def _feature(
    rows: list[Row],
    name: str,
    kind: str,
    column: Any,
    reference: PreparedReference | None,
    suite: DriftSuite,
    total: int,
    type_violations: int,
) -> list[DriftScore]:
    if kind == "numerical":
        ref_num = reference.numeric.get(name) if reference is not None else None
        feature_rows, finite = quality.numeric_feature(name, column, ref_num, total, type_violations)
        scores = suite.numeric(name, ref_num, finite) if ref_num is not None else []
    else:
        ref_cat = reference.categorical.get(name) if reference is not None else None
        feature_rows, categories, counts = quality.categorical_feature(name, column, ref_cat, total, type_violations)
        scores = suite.categorical(name, ref_cat, categories, counts) if ref_cat is not None else []
    rows += feature_rows
    rows += scores_to_points(name, scores)
    return scores
