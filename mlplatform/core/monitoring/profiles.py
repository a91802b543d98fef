"""Profiling reference data once per model version.

``read_reference(data, fmt)`` reads a CSV or Parquet body; ``build_profile(table, signature,
bins)`` returns the profile (JSON, stored in ``reference_profiles.profile``) and the sorted
finite values of every numerical feature, which ``save_sorted`` writes as ``.npy`` files
under the profile's ``artifact_prefix`` (``sorted/<n>.npy``; the profile names the file).

Which columns are features: the signature's inputs when the version has a signature (other
columns, e.g. a label, are ignored), else every column. Kinds: signature ``number`` and
``integer`` (or an Arrow numeric column) -> ``numerical``; ``string`` and ``boolean`` (or an
Arrow string, boolean or dictionary column) -> ``categorical``; anything else is skipped.
The output column, named by the signature's first output (default ``prediction``), is
profiled as ``output`` when present.

Numerical profile: ``count`` (finite values), ``missing`` (null, NaN, +-inf), ``min``, ``max``,
``mean``, ``std``, ``quantiles`` (p01..p99) and ``bin_edges``: the inner PSI cut points at
``bins`` reference quantiles, as the psi metric computes them. Categorical profile:
``categories`` (category -> count; categories are compared as strings, booleans as
``true``/``false``), the ``MAX_CATEGORIES`` most frequent only; the rest are counted in
``other`` and are unseen categories to a window.

Learned thresholds (``monitoring.learned_thresholds``): ``learned_thresholds(table, profile,
metrics, thresholds, chunks)`` shuffles the reference rows (seeded, so the same reference
learns the same thresholds) into ``chunks`` equal chunks and, for every enabled metric that
applies to numerical features and every numerical feature, computes the metric's own
``compute(rest of the reference, chunk)`` per chunk. The learned threshold is, for metrics
where a higher score is drift (psi), ``mean + 3 * std`` of the chunk scores, never below the
configured threshold (``monitoring.thresholds[<metric>]``, else the metric's default); for
p-value metrics (``higher_is_drift`` False, ks), the smallest chunk p-value divided by 10,
never above the configured threshold. Stored as ``profile["learned_thresholds"]`` =
``{metric: {feature: threshold}}``; a feature or metric without a finite score in every chunk
gets none.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.core.errors import InvalidInput

if TYPE_CHECKING:
    from mlplatform.core.backends import ArtifactStore, DriftMetric

MAX_CATEGORIES = 1000
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
NUMERICAL_TYPES = ("number", "integer")
CATEGORICAL_TYPES = ("string", "boolean")
DEFAULT_OUTPUT = "prediction"
FORMATS = ("csv", "parquet")


def read_reference(data: bytes | Any, fmt: str) -> pa.Table:
    """A CSV or Parquet body (bytes or a binary stream) as a table; ``InvalidInput`` if unreadable."""
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        if fmt == "csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(source)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(source)
        else:
            raise InvalidInput(f"reference format {fmt!r} is not one of {', '.join(FORMATS)}")
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"reference data is not valid {fmt}: {exc}") from None
    if table.num_rows == 0:
        raise InvalidInput("reference data has no rows")
    seen: set[str] = set()
    for name in table.column_names:
        if name in seen:
            raise InvalidInput(f"reference data has more than one column named {name!r}")
        seen.add(name)
    return table


def build_profile(
    table: pa.Table, signature: Mapping[str, Any] | None, bins: int = 10
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(profile, sorted values by file name)``; see the module doc."""
    kinds = feature_kinds(table, signature)
    if not kinds:
        raise InvalidInput(
            "reference data has no usable feature column"
            + (" named in the version's signature" if signature and signature.get("inputs") else ""),
        )
    profile: dict[str, Any] = {"row_count": table.num_rows, "bins": bins, "features": {}, "output": None}
    arrays: dict[str, np.ndarray] = {}
    for index, (name, kind) in enumerate(kinds.items()):
        profile["features"][name], sorted_values = _profile_column(table.column(name), kind, bins)
        if sorted_values is not None:
            file = f"sorted/{index}.npy"
            profile["features"][name]["sorted"] = file
            arrays[file] = sorted_values
    output = output_name(signature)
    if output in table.column_names and output not in kinds:
        kind = _arrow_kind(table.column(output).type)
        if kind:
            profile["output"], sorted_values = _profile_column(table.column(output), kind, bins)
            profile["output"]["name"] = output
            if sorted_values is not None:
                profile["output"]["sorted"] = "sorted/output.npy"
                arrays["sorted/output.npy"] = sorted_values
    return profile, arrays


def output_name(signature: Mapping[str, Any] | None) -> str:
    outputs = (signature or {}).get("outputs") or []
    return (outputs[0].get("name") if outputs else None) or DEFAULT_OUTPUT  # an output may be unnamed


def feature_kinds(table: pa.Table, signature: Mapping[str, Any] | None) -> dict[str, str]:
    """Feature name -> ``numerical`` | ``categorical``, in column order (see the module doc)."""
    inputs = (signature or {}).get("inputs") or []
    if inputs:
        from mlplatform.core.signature import normalize_type

        kinds = {}
        for item in inputs:
            if item["name"] not in table.column_names:
                continue
            declared = normalize_type(item.get("type"))
            kind = (
                "numerical" if declared in NUMERICAL_TYPES else "categorical" if declared in CATEGORICAL_TYPES else None
            )
            if kind:
                kinds[item["name"]] = kind
        return kinds
    output = output_name(signature)
    found = {name: _arrow_kind(table.schema.field(name).type) for name in table.column_names if name != output}
    return {name: kind for name, kind in found.items() if kind}


def _arrow_kind(type: pa.DataType) -> str | None:
    if pa.types.is_integer(type) or pa.types.is_floating(type):
        return "numerical"
    if (
        pa.types.is_string(type)
        or pa.types.is_large_string(type)
        or pa.types.is_boolean(type)
        or pa.types.is_dictionary(type)
    ):
        return "categorical"
    return None


def numeric_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as float64 with nulls as NaN (strings that are not numbers raise ``InvalidInput``)."""
    if column.null_count == 0 and pa.types.is_float64(column.type):
        return np.asarray(column.to_numpy(), dtype=np.float64)  # no copy for one chunk
    try:
        as_float = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InvalidInput(f"column of type {column.type} holds values that are not numbers") from None
    return np.asarray(pc.fill_null(as_float, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def categorical_values(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A column as strings (the form categories are compared in)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def psi_cuts(sorted_values: np.ndarray, bins: int) -> np.ndarray:
    """The psi metric's inner cut points (quantile binning) for a sorted reference."""
    return np.unique(np.quantile(sorted_values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def _profile_column(column: pa.ChunkedArray, kind: str, bins: int) -> tuple[dict[str, Any], np.ndarray | None]:
    if kind == "numerical":
        values = numeric_values(column)
        finite = np.sort(values[np.isfinite(values)])
        summary: dict[str, Any] = {"kind": kind, "count": int(finite.size), "missing": int(values.size - finite.size)}
        if finite.size == 0:
            return summary | {
                "min": None,
                "max": None,
                "mean": None,
                "std": None,
                "quantiles": {},
                "bin_edges": [],
            }, None
        summary |= {
            "min": float(finite[0]),
            "max": float(finite[-1]),
            "mean": float(finite.mean()),
            "std": float(finite.std()),
            "quantiles": {
                key: float(q) for key, q in zip(QUANTILES, np.quantile(finite, list(QUANTILES.values())), strict=False)
            },
            "bin_edges": psi_cuts(finite, bins).tolist(),
        }
        return summary, finite
    strings = categorical_values(column)
    counts = pc.value_counts(strings.drop_null()) if len(strings) else pa.array([], pa.struct([]))
    pairs = (
        sorted(
            zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=False),
            key=lambda p: (-p[1], p[0]),
        )
        if len(counts)
        else []
    )
    kept = dict(pairs[:MAX_CATEGORIES])
    return {
        "kind": kind,
        "count": int(sum(c for _, c in pairs)),
        "missing": int(strings.null_count),
        "categories": kept,
        "other": int(sum(c for _, c in pairs[MAX_CATEGORIES:])),
    }, None


LEARN_SEED = 0


def learned_thresholds(
    table: pa.Table,
    profile: Mapping[str, Any],
    metrics: Sequence[DriftMetric],
    thresholds: Mapping[str, float],
    chunks: int = 10,
    seed: int = LEARN_SEED,
) -> dict[str, dict[str, float]]:
    """``{metric: {feature: learned threshold}}`` from chunks of the reference; see the module doc."""
    chunks = max(2, int(chunks))
    if table.num_rows < chunks:
        return {}
    parts = np.array_split(np.random.default_rng(seed).permutation(table.num_rows), chunks)
    applicable = [m for m in metrics if m.feature_kind in ("numerical", "both")]
    learned: dict[str, dict[str, float]] = {}
    for name, feature in profile["features"].items():
        if feature.get("kind") != "numerical" or not feature.get("count"):
            continue
        values = numeric_values(table.column(name))
        for metric in applicable:
            configured = float(thresholds.get(metric.name, metric.default_threshold))
            scores = []
            for part in parts:
                rest_mask = np.ones(values.size, dtype=bool)
                rest_mask[part] = False
                chunk, rest = values[part], values[rest_mask]
                chunk, rest = chunk[np.isfinite(chunk)], rest[np.isfinite(rest)]
                if chunk.size == 0 or rest.size == 0:
                    break
                try:
                    score = float(metric.compute(rest, chunk, configured).score)
                except InvalidInput:
                    break
                if not np.isfinite(score):
                    break
                scores.append(score)
            if len(scores) != len(parts):
                continue
            spread = np.asarray(scores)
            if metric.higher_is_drift:
                value = max(float(spread.mean() + 3.0 * spread.std()), configured)
            else:
                value = min(float(spread.min()) / 10.0, configured)
            learned.setdefault(metric.name, {})[name] = value
    return learned


def save_sorted(store: ArtifactStore, prefix: str, arrays: Mapping[str, np.ndarray]) -> None:
    for file, values in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, values, allow_pickle=False)
        size = buffer.tell()
        buffer.seek(0)
        store.put(f"{prefix}{file}", buffer, size)


def load_sorted(store: ArtifactStore, prefix: str, file: str) -> np.ndarray:
    with store.open(f"{prefix}{file}") as stream:
        return np.load(io.BytesIO(stream.read()), allow_pickle=False)


def summary(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The profile without storage details, for the API."""

    def clean(feature: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in feature.items() if k != "sorted"}

    return {
        "row_count": profile["row_count"],
        "bins": profile["bins"],
        "features": {name: clean(f) for name, f in profile["features"].items()},
        "output": clean(profile["output"]) if profile.get("output") else None,
    }
