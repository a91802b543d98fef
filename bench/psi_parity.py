"""PSI parity: our ``psi`` with ``binning: "evidently"`` against Evidently 0.7's own PSI stat test.

    .venv/bin/python bench/psi_parity.py

Generates seeded reference/current pairs, writes them as ``.npy`` files to a temp dir, runs
Evidently's registered ``psi`` stat test (``evidently.legacy.calculations.stattests.psi``,
the function ``DataDriftPreset(method="psi")`` calls per column) inside bench/.venv-evidently,
computes ``PSI({"binning": "evidently"}).compute(ref, cur)`` here, prints both scores and the
absolute difference, and exits 1 if any difference exceeds 1e-9.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlplatform.plugins.drift import PSI  # noqa: E402

EVIDENTLY_PYTHON = ROOT / "bench" / ".venv-evidently" / "bin" / "python"
TOLERANCE = 1e-9

EVIDENTLY_SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd
from evidently.legacy.calculations.stattests.psi import psi_stat_test
from evidently.legacy.core import ColumnType

data = Path(sys.argv[1])
out = {}
for name in json.loads((data / "names.json").read_text()):
    ref = pd.Series(np.load(data / f"{name}.ref.npy"))
    cur = pd.Series(np.load(data / f"{name}.cur.npy"))
    result = psi_stat_test(ref, cur, ColumnType.Numerical, None)
    out[name] = float(result.drift_score)
print(json.dumps(out))
"""


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20240607)
    d: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    d["normal"] = (rng.normal(size=5000), rng.normal(size=5000))
    d["normal_shift_0.1"] = (rng.normal(size=5000), rng.normal(0.1, 1.0, size=5000))
    d["normal_shift_1sd"] = (rng.normal(size=5000), rng.normal(1.0, 1.0, size=5000))
    d["normal_scale_2"] = (rng.normal(size=5000), rng.normal(0.0, 2.0, size=5000))
    d["cauchy"] = (rng.standard_cauchy(size=5000), rng.standard_cauchy(size=5000))
    d["student_t2_shift"] = (rng.standard_t(2, size=5000), rng.standard_t(2, size=5000) + 0.3)
    d["lognormal"] = (rng.lognormal(0.0, 1.5, size=5000), rng.lognormal(0.2, 1.5, size=5000))
    d["int_5_values"] = (rng.integers(0, 5, size=3000), rng.integers(0, 5, size=3000))
    d["int_15_values_shift"] = (rng.integers(0, 15, size=3000), rng.integers(3, 18, size=3000))
    d["int_20_values"] = (rng.integers(0, 20, size=3000), rng.integers(0, 20, size=3000))
    d["int_21_values"] = (rng.integers(0, 21, size=3000), rng.integers(0, 21, size=3000))
    d["int_poisson_10"] = (rng.poisson(10, size=4000), rng.poisson(11, size=4000))
    d["int_100_values"] = (rng.integers(0, 100, size=4000), rng.integers(10, 110, size=4000))
    d["int_ref_few_cur_many"] = (rng.integers(0, 8, size=2000), rng.integers(0, 40, size=2000))
    d["float_ref_10_values"] = (
        rng.choice(np.linspace(0, 1, 10), size=2000),
        rng.choice(np.linspace(0, 1, 10), size=2000) + 0.05,
    )
    d["unequal_1e5_vs_300"] = (rng.normal(size=100_000), rng.normal(0.2, 1.0, size=300))
    d["unequal_200_vs_2e4"] = (rng.normal(size=200), rng.normal(size=20_000))
    d["unequal_int_7_values"] = (rng.integers(0, 7, size=50_000), rng.integers(0, 7, size=150))
    d["tiny_bins_1e6"] = (rng.normal(size=1_000_000), rng.normal(0.5, 1.0, size=1_000_000))
    return d


def evidently_scores(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="psi-parity-") as tmp:
        path = Path(tmp)
        for name, (ref, cur) in data.items():
            np.save(path / f"{name}.ref.npy", ref)
            np.save(path / f"{name}.cur.npy", cur)
        (path / "names.json").write_text(json.dumps(list(data)))
        run = subprocess.run(
            [str(EVIDENTLY_PYTHON), "-c", EVIDENTLY_SCRIPT, tmp], capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            sys.exit(f"Evidently side failed:\n{run.stderr}")
        return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    if not EVIDENTLY_PYTHON.exists():
        sys.exit(f"missing {EVIDENTLY_PYTHON}; see bench/README.md")
    data = datasets()
    theirs = evidently_scores(data)
    width = max(map(len, data))
    print(
        f"{'dataset':<{width}}  {'n_ref':>9} {'n_cur':>9} {'bins':>5}  {'evidently':>22} {'ours':>22} {'abs diff':>10}"
    )
    worst = 0.0
    for name, (ref, cur) in data.items():
        result = PSI({"binning": "evidently"}).compute(ref, cur)
        diff = abs(result.score - theirs[name])
        worst = max(worst, diff)
        flag = "  <-- MISMATCH" if diff > TOLERANCE else ""
        print(
            f"{name:<{width}}  {ref.size:>9} {cur.size:>9} {result.details['bins']:>5}  "
            f"{theirs[name]:>22.17g} {result.score:>22.17g} {diff:>10.3g}{flag}"
        )
    print(f"max abs difference: {worst:.3g} (tolerance {TOLERANCE:g})")
    return 1 if worst > TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())
