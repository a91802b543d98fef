"""Evidently 0.7's side of ``bench/drift.py``; runs in bench/.venv-evidently, prints JSON.

    bench/.venv-evidently/bin/python bench/drift_evidently.py DATA_DIR REPEATS

Reads ``reference.parquet`` and ``current_<n>.parquet`` from DATA_DIR and times
``Report([DataDriftPreset(...)]).run(current, reference)`` (building the two ``Dataset``
objects included, reading the files not) for the default methods, forced PSI (every column)
and forced KS (numerical columns; categorical ones keep Evidently's default). Columns ``f*`` are numerical, ``c*`` categorical.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def drifted_columns(snapshot: object) -> int | None:
    for metric in snapshot.dict().get("metrics", []):  # type: ignore[attr-defined]
        if "DriftedColumnsCount" in str(metric.get("metric_name", "")):
            return int(metric["value"]["count"])
    return None


def main() -> None:
    data, repeats = Path(sys.argv[1]), int(sys.argv[2])
    reference = pd.read_parquet(data / "reference.parquet")
    definition = DataDefinition(
        numerical_columns=[c for c in reference.columns if c.startswith("f")],
        categorical_columns=[c for c in reference.columns if c.startswith("c")],
    )
    results = []
    for path in sorted(data.glob("current_*.parquet"), key=lambda p: -int(p.stem.split("_")[1])):
        current = pd.read_parquet(path)
        for mode in ("default", "psi", "ks"):
            times, drifted = [], None
            for _ in range(repeats):
                start = time.perf_counter()
                ref_ds = Dataset.from_pandas(reference, data_definition=definition)
                cur_ds = Dataset.from_pandas(current, data_definition=definition)
                preset = {
                    "default": DataDriftPreset(),
                    "psi": DataDriftPreset(method="psi"),
                    "ks": DataDriftPreset(num_method="ks"),  # KS does not apply to categories
                }[mode]
                snapshot = Report([preset]).run(cur_ds, ref_ds)
                times.append(time.perf_counter() - start)
                drifted = drifted_columns(snapshot)
            results.append({"rows": len(current), "mode": mode, "seconds": sorted(times), "drifted_columns": drifted})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
