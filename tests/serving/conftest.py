"""Serving fixtures: tiny models built in the test, uploaded to a platform's artifact store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlplatform.core.backends import DeploymentSpec
from mlplatform.core.model_loading import DESCRIPTOR, artifact_sha256
from mlplatform.core.platform import Platform
from mlplatform.core.plugins import BUILTIN_PLUGINS
from mlplatform.plugins import flavors, local_target

# Registered here until they are built-ins; registering a module twice is an error.
SERVING_PLUGINS = [m for m in (flavors, local_target) if m.__name__ not in BUILTIN_PLUGINS]

PYFUNC_SOURCE = """
class Model:
    def __init__(self, artifact_dir):
        with open(artifact_dir + "/offset.txt") as handle:
            self.offset = float(handle.read())

    def predict(self, frame):
        return (frame["x1"] + self.offset).tolist()
"""


def training_frame() -> Any:
    import pandas as pd

    return pd.DataFrame({"x1": [0.0, 0.1, 0.2, 0.9, 1.0, 1.1], "x2": [1.0, 0.9, 1.1, 0.0, 0.1, 0.2]})


def write_sklearn_model(folder: Path) -> Path:
    """A logistic regression on two features (x1, x2), class 1 when x1 is high."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    model = LogisticRegression().fit(training_frame(), [0, 0, 0, 1, 1, 1])
    joblib.dump(model, folder / "model.joblib")
    signature = {
        "inputs": [{"name": "x1", "type": "double"}, {"name": "x2", "type": "double"}],
        "outputs": [{"type": "long"}],
    }
    (folder / DESCRIPTOR).write_text(json.dumps({"flavor": "sklearn", "signature": signature}))
    return folder


def write_pyfunc_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(PYFUNC_SOURCE)
    (folder / "offset.txt").write_text("10")
    (folder / DESCRIPTOR).write_text(json.dumps({"flavor": "python_function", "module": "model.py", "class": "Model"}))
    return folder


def upload(platform: Platform, folder: Path, prefix: str) -> str:
    """Put every file of ``folder`` under ``prefix`` in the platform's store; return its digest."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as stream:
            platform.artifact_store.put(f"{prefix}{path.relative_to(folder).as_posix()}", stream)
    return artifact_sha256(folder)


@pytest.fixture
def serving_platform(make_platform: Callable[..., Platform]) -> Platform:
    return make_platform(extra_plugins=SERVING_PLUGINS)


@pytest.fixture
def sklearn_spec(serving_platform: Platform, tmp_path: Path) -> DeploymentSpec:
    folder = write_sklearn_model(tmp_path / "sk")
    sha = upload(serving_platform, folder, "models/churn/1/")
    return DeploymentSpec("acme", "churn", 1, "sklearn", "models/churn/1/", sha)
