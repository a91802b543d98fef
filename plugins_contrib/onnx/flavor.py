"""``onnx``: a model saved as an ONNX graph, run with onnxruntime (on the CPU by default).

Files: ``model.onnx`` (else the one ``.onnx`` file at the top of the folder, or the file
``model_file`` names in ``mlplatform-model.json``) and any external-data files it refers to.
The descriptor is optional::

    {"flavor": "onnx", "model_file": "model.onnx", "output": "output_label",
     "signature": {"inputs": [{"name": "x1", "type": "double"}, {"name": "x2", "type": "double"}]}}

Inputs. A batch's columns (the signature's, in its order; without a signature, the batch's
own, in its order) are fed to the graph in one of two ways, chosen when the model is loaded:

- one 2-D input ``[batch, features]``, what skl2onnx and most converters produce: each row
  of the batch is one row of the tensor, its columns in order;
- one input per column, named after it, each ``[batch]`` or ``[batch, 1]``.

Values are cast to each input's element type (``tensor(float)`` to float32, ...).

Outputs. The descriptor's ``output``, else the graph's first output, one entry per row: a
``[batch]`` or ``[batch, 1]`` tensor gives a scalar per row, ``[batch, k]`` a list per row,
and a sequence of maps (skl2onnx's ZipMap probabilities) a ``{class: probability}`` object.

Loading parses the graph and runs no Python code from the artifact; the platform checks the
artifact's SHA-256 before loading all the same, as for every flavor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from mlplatform.core.backends import ModelFlavor, Predictor
from mlplatform.core.errors import InvalidInput, Unprocessable
from mlplatform.core.model_loading import DESCRIPTOR, read_descriptor
from mlplatform.plugins.flavors import as_frame

if TYPE_CHECKING:
    import numpy as np

    from mlplatform.core.platform import Platform

INSTALL_HINT = "pip install 'mlplatform[onnx]'"
DEFAULT_FILE = "model.onnx"
SUFFIX = ".onnx"
CPU = "CPUExecutionProvider"

# onnxruntime's input types that columns can fill, and the numpy dtype each is fed as.
ELEMENT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint64)": "uint64",
    "tensor(uint32)": "uint32",
    "tensor(uint16)": "uint16",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


class OnnxConfig(Schema):
    providers = fields.List(
        fields.String(),
        load_default=[CPU],
        validate=validate.Length(min=1),
        metadata={"description": "onnxruntime execution providers, in order of preference"},
    )
    intra_op_num_threads = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0),
        metadata={"description": "threads per operator; 0: onnxruntime's default (one per core)"},
    )


@dataclass(frozen=True)
class Feed:
    """How one graph input is filled: from ``columns`` of the batch (None: every column, in
    order), as ``dtype``, shaped ``[batch]`` (rank 1) or ``[batch, columns]`` (rank 2).
    ``width``: the number of columns the input takes, when the graph says."""

    name: str
    columns: tuple[str, ...] | None
    dtype: str
    rank: int
    width: int | None = None


class OnnxFlavor(ModelFlavor):
    """An ONNX graph run by onnxruntime; see the module docstring."""

    name = "onnx"
    Config = OnnxConfig
    install_hint = INSTALL_HINT

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Platform | None = None) -> None:
        super().__init__(options, platform)
        self.settings = OnnxConfig().load(self.options)

    def detect(self, files: list[str]) -> bool:
        return any(name.lower().endswith(SUFFIX) for name in files)

    def load(self, path: str) -> Predictor:
        """Open the graph in ``path`` and match its inputs to the signature.

        ``InvalidInput`` if the file is missing, is not a valid ONNX graph, or its inputs or
        outputs do not match the signature and descriptor, or onnxruntime is not installed.
        """
        descriptor = read_descriptor(path)
        session = self._session(model_file(path, descriptor))
        signature = descriptor.get("signature")
        columns = signature_columns(signature)
        feeds = plan_inputs(session.get_inputs(), columns)
        outputs = [output.name for output in session.get_outputs()]
        output = descriptor.get("output") or outputs[0]
        if output not in outputs:
            raise InvalidInput(
                f"{DESCRIPTOR} names output {output!r}; the ONNX graph's outputs are {', '.join(outputs)}"
            )
        return OnnxPredictor(session, feeds, output, signature)

    def _session(self, file: Path) -> Any:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise InvalidInput(f"the onnx flavor needs onnxruntime: {INSTALL_HINT}") from exc
        providers = list(self.settings["providers"])
        available = ort.get_available_providers()
        missing = [name for name in providers if name not in available]
        if missing:
            raise InvalidInput(
                f"onnxruntime execution provider {', '.join(missing)} is not available here; available: {', '.join(available)}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings["intra_op_num_threads"]
        try:
            return ort.InferenceSession(str(file), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime's InvalidProtobuf, Fail, InvalidGraph, ...
            reason = str(exc).replace(str(file), file.name)  # the serving host's paths are not the user's business
            raise InvalidInput(f"cannot load ONNX model {file.name}: {type(exc).__name__}: {reason}") from None


class OnnxPredictor(Predictor):
    """Feeds a batch to an onnxruntime session; returns one output per row. Thread-safe."""

    def __init__(self, session: Any, feeds: Sequence[Feed], output: str, signature: Mapping[str, Any] | None) -> None:
        self._session = session
        self._feeds = list(feeds)
        self._output = output
        self.signature = signature

    def predict(self, frame: Any) -> list[Any]:
        """One prediction per row. ``InvalidInput`` when the batch does not fit the graph's
        inputs, ``Unprocessable`` if onnxruntime fails on it."""
        prepared = as_frame(frame, self.signature)
        arrays = {feed.name: tensor(prepared, feed) for feed in self._feeds}
        try:
            (result,) = self._session.run([self._output], arrays)
        except Exception as exc:  # onnxruntime's own error, e.g. a value the graph refuses
            raise Unprocessable(f"the ONNX model failed on this batch: {type(exc).__name__}: {exc}") from exc
        predictions = rows(result)
        if len(predictions) != len(prepared):
            raise Unprocessable(f"the ONNX model returned {len(predictions)} predictions for {len(prepared)} rows")
        return predictions


# --- matching columns to the graph ----------------------------------------------------------


def model_file(folder: str, descriptor: Mapping[str, Any]) -> Path:
    """The graph file: the descriptor's ``model_file``, else ``model.onnx``, else the only ``.onnx``
    file at the top of ``folder``. ``InvalidInput`` if there is none, or it is outside the folder."""
    root = Path(folder).resolve()
    named = descriptor.get("model_file")
    if named is None:
        found = sorted(p.name for p in root.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIX))
        if DEFAULT_FILE in found or not found:
            named = DEFAULT_FILE
        elif len(found) == 1:
            named = found[0]
        else:
            raise InvalidInput(
                f"the artifact holds several ONNX files ({', '.join(found)}); name one as model_file in {DESCRIPTOR}"
            )
    if not isinstance(named, str) or not named:
        raise InvalidInput(f"{DESCRIPTOR}: model_file must be a file name")
    target = (root / named).resolve()
    if root not in target.parents or not target.is_file():
        raise InvalidInput(
            f"the artifact has no ONNX model file {named!r}; name its .onnx file as model_file in {DESCRIPTOR}"
        )
    return target


def signature_columns(signature: Any) -> list[str] | None:
    """The signature's input column names, in order; None when it names none."""
    if not isinstance(signature, Mapping):
        return None
    names = [item["name"] for item in signature.get("inputs") or [] if isinstance(item, Mapping) and item.get("name")]
    return [str(name) for name in names] or None


def plan_inputs(inputs: Sequence[Any], columns: Sequence[str] | None) -> list[Feed]:
    """The feeds for a graph whose ``inputs`` are onnxruntime ``NodeArg`` s (name, type, shape),
    given the signature's ``columns`` (None: no signature; the batch's columns are used).

    Several inputs, or one named like the only column: one input per column. Otherwise the
    single input must be 2-D and take as many features as there are columns. ``InvalidInput``
    names what does not match.
    """
    if not inputs:
        raise InvalidInput("the ONNX graph has no inputs")
    names = [arg.name for arg in inputs]
    single = inputs[0]
    per_column = (
        len(inputs) > 1 or (columns is not None and list(columns) == names) or (columns is None and _rank(single) == 1)
    )
    if not per_column:
        rank = _rank(single)
        if rank != 2:
            raise InvalidInput(
                f"the ONNX graph's input {single.name!r} has shape {_shape(single)}; a single input must be "
                "2-D [batch, features], or the graph must take one input per column"
            )
        width = _dim(single.shape[1])
        if columns is not None and width is not None and width != len(columns):
            raise InvalidInput(
                f"the ONNX graph's input {single.name!r} takes {width} features per row, "
                f"the signature names {len(columns)} columns ({', '.join(columns)})"
            )
        return [Feed(single.name, tuple(columns) if columns is not None else None, _dtype(single), 2, width)]
    if columns is not None:
        unfed = [name for name in names if name not in columns]
        unused = [name for name in columns if name not in names]
        if unfed or unused:
            gaps = ([f"no column for input {', '.join(unfed)}"] if unfed else []) + (
                [f"no input for column {', '.join(unused)}"] if unused else []
            )
            raise InvalidInput(
                f"the ONNX graph's inputs ({', '.join(names)}) do not match the signature's columns "
                f"({', '.join(columns)}): {'; '.join(gaps)}",
                errors={"inputs": unfed, "columns": unused},
            )
    feeds = []
    for arg in inputs:
        rank = _rank(arg)
        if rank not in (1, 2) or (rank == 2 and _dim(arg.shape[1]) not in (None, 1)):
            raise InvalidInput(
                f"the ONNX graph's input {arg.name!r} has shape {_shape(arg)}; with one input per column, "
                "each must be [batch] or [batch, 1]"
            )
        feeds.append(Feed(arg.name, (arg.name,), _dtype(arg), rank, 1))
    return feeds


def tensor(frame: Any, feed: Feed) -> np.ndarray:
    """The array for ``feed`` from ``frame``. ``InvalidInput`` if columns are missing, their
    count does not fit the input, or their values cannot be cast to its type."""
    columns = list(feed.columns) if feed.columns is not None else [str(c) for c in frame.columns]
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise InvalidInput(f"the batch lacks input columns: {', '.join(missing)}", errors={"columns": missing})
    if feed.width is not None and len(columns) != feed.width:
        raise InvalidInput(
            f"the ONNX graph's input {feed.name!r} takes {feed.width} features per row, the batch has {len(columns)}"
        )
    try:
        values = frame[columns].to_numpy(dtype=feed.dtype)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"columns {', '.join(columns)} cannot be fed to the ONNX graph's input {feed.name!r} ({feed.dtype}): {exc}",
            errors={"columns": columns},
        ) from None
    return values.reshape(-1) if feed.rank == 1 else values


def rows(result: Any) -> list[Any]:
    """One JSON-friendly prediction per row of an onnxruntime output."""
    if hasattr(result, "ndim"):
        if result.ndim == 0:
            raise Unprocessable("the ONNX model returned a scalar, not one prediction per row")
        if result.ndim == 2 and result.shape[1] == 1:
            result = result[:, 0]
        return list(result.tolist())
    return [_plain(item) for item in result]  # a sequence: of maps (ZipMap) or of tensors


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value.tolist() if hasattr(value, "tolist") else value


def _rank(arg: Any) -> int:
    return len(arg.shape or [])


def _dim(value: Any) -> int | None:
    """A fixed dimension, or None for a symbolic / unknown one."""
    return value if isinstance(value, int) and value >= 0 else None


def _shape(arg: Any) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in arg.shape or []) + "]"


def _dtype(arg: Any) -> str:
    dtype = ELEMENT_TYPES.get(arg.type)
    if dtype is None:
        raise InvalidInput(
            f"the ONNX graph's input {arg.name!r} is {arg.type}; columns can only fill tensors of numbers, booleans or strings"
        )
    return dtype
