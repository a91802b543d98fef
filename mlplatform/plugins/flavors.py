"""Built-in model flavors: ``sklearn`` and ``python_function``.

Both read ``mlplatform-model.json`` at the top of the artifact folder (MLflow's ``MLmodel``,
in JSON)::

    {"flavor": "sklearn", "model_file": "model.joblib", "predict_method": "predict",
     "signature": {"inputs": [{"name": "age", "type": "double"}, ...], "outputs": [...]}}

    {"flavor": "python_function", "module": "model.py", "class": "Model", "signature": {...}}

When ``signature.inputs`` names columns, a batch must have them; they are passed to the
model in that order and other columns are dropped.

SECURITY: loading either flavor executes code from the artifact. ``sklearn`` unpickles
(joblib/pickle runs arbitrary code) and ``python_function`` imports ``model.py``. Only load
folders whose digest matches the one recorded at registration (``model_loading`` does this
before calling ``load``), and only register models from people allowed to run code on the
serving hosts.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlplatform import hookimpl
from mlplatform.core.backends import ModelFlavor, Predictor
from mlplatform.core.errors import InvalidInput, MLPlatformError, Unprocessable
from mlplatform.core.model_loading import DESCRIPTOR, read_descriptor, to_list

SKLEARN_FILES = ("model.joblib", "model.pkl")


def as_frame(batch: Any, signature: Mapping[str, Any] | None) -> Any:
    """``batch`` (a DataFrame, or a list of records) as a DataFrame with the signature's columns.

    Raises ``InvalidInput`` naming any input column the batch lacks.
    """
    import pandas as pd

    frame = batch if isinstance(batch, pd.DataFrame) else pd.DataFrame.from_records(list(batch))
    names = [
        item["name"] for item in (signature or {}).get("inputs", []) if isinstance(item, dict) and item.get("name")
    ]
    if not names:
        return frame
    if list(frame.columns) == names:
        return frame  # already in signature order (the gateway's validated frames): no copy
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InvalidInput(f"the batch lacks input columns: {', '.join(missing)}", errors={"columns": missing})
    return frame[names]


class _Predictor(Predictor):
    """Calls ``method`` on a batch shaped by the signature; returns a plain list."""

    def __init__(self, method: Any, signature: Mapping[str, Any] | None, label: str) -> None:
        self._method = method
        self.signature = signature
        self._label = label

    def predict(self, frame: Any) -> list[Any]:
        """One prediction per row. ``InvalidInput`` for missing columns, ``Unprocessable`` if the model raises."""
        prepared = as_frame(frame, self.signature)
        try:
            return to_list(self._method(prepared))
        except MLPlatformError:
            raise
        except Exception as exc:  # the model's own error, e.g. a wrong dtype
            raise Unprocessable(f"{self._label} failed on this batch: {type(exc).__name__}: {exc}") from exc


class SklearnFlavor(ModelFlavor):
    """A scikit-learn estimator (or anything with ``predict``) saved with joblib.

    Files: ``model.joblib`` or ``model.pkl`` (or ``model_file`` in the descriptor), plus
    ``mlplatform-model.json``. ``load`` UNPICKLES the file, which runs arbitrary code; call
    it only on a verified artifact.
    """

    name = "sklearn"

    def detect(self, files: list[str]) -> bool:
        return any(name in files for name in SKLEARN_FILES)

    def load(self, path: str) -> Predictor:
        """Load the estimator in ``path`` (runs the pickle's code). ``InvalidInput`` if it cannot."""
        import joblib

        descriptor = read_descriptor(path)
        model_file = _inside(path, descriptor.get("model_file") or _first_existing(path, SKLEARN_FILES))
        method_name = descriptor.get("predict_method", "predict")
        try:
            model = joblib.load(model_file)
        except Exception as exc:
            raise InvalidInput(f"cannot load sklearn model {model_file.name}: {type(exc).__name__}: {exc}") from exc
        method = getattr(model, method_name, None)
        if not callable(method):
            raise InvalidInput(f"the sklearn model ({type(model).__name__}) has no method {method_name!r}")
        return _Predictor(method, descriptor.get("signature"), f"sklearn model {type(model).__name__}")


class PythonFunctionFlavor(ModelFlavor):
    """A class in a Python file of the artifact, with ``predict(DataFrame) -> sequence``.

    Files: the module (``module`` in the descriptor, default ``model.py``) and
    ``mlplatform-model.json`` naming ``class`` (default ``Model``). The class is instantiated
    with no arguments, or with ``artifact_dir=<folder>`` if its ``__init__`` accepts that, so
    it can read other files of the artifact. ``load`` IMPORTS the module, which runs its code;
    call it only on a verified artifact. Only that one file is importable: the folder is not
    put on ``sys.path``.
    """

    name = "python_function"

    def detect(self, files: list[str]) -> bool:
        return DESCRIPTOR in files and any(f.endswith(".py") for f in files)

    def load(self, path: str) -> Predictor:
        """Import the module and instantiate the class (runs the artifact's code). ``InvalidInput`` if it cannot."""
        descriptor = read_descriptor(path)
        module_file = _inside(path, descriptor.get("module", "model.py"))
        class_name = descriptor.get("class", "Model")
        try:
            module = _import_file(module_file)
            cls = getattr(module, class_name)
            accepts_dir = "artifact_dir" in inspect.signature(cls).parameters
            instance = cls(artifact_dir=path) if accepts_dir else cls()
        except MLPlatformError:
            raise
        except Exception as exc:
            raise InvalidInput(
                f"cannot load python_function {module_file.name}:{class_name}: {type(exc).__name__}: {exc}"
            ) from exc
        method = getattr(instance, "predict", None)
        if not callable(method):
            raise InvalidInput(f"python_function class {class_name} has no predict(DataFrame) method")
        return _Predictor(method, descriptor.get("signature"), f"python_function {class_name}")


def _inside(folder: str, relative: str) -> Path:
    """``folder/relative``, refusing names that escape the folder."""
    root = Path(folder).resolve()
    target = (root / relative).resolve()
    if root not in target.parents or not target.is_file():
        raise InvalidInput(f"{DESCRIPTOR} names {relative!r}, which is not a file in the artifact")
    return target


def _first_existing(folder: str, names: tuple[str, ...]) -> str:
    for name in names:
        if (Path(folder) / name).is_file():
            return name
    raise InvalidInput(f"the artifact has none of {', '.join(names)}")


def _import_file(path: Path) -> Any:
    # A fresh, unique module name: two versions' model.py never share a module object.
    name = f"_mlplatform_model_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot import {path.name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@hookimpl
def register_model_flavors() -> list[type[ModelFlavor]]:
    return [SklearnFlavor, PythonFunctionFlavor]
