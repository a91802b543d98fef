"""KServe's Open Inference Protocol (V2) for tabular models: request tensors to the rows
``signature.validate_inputs`` checks, and predictions to response tensors.

The protocol: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
A request carries ``inputs``, a list of tensors ``{"name", "shape", "datatype", "data"}``;
``data`` is row-major, flat or nested. Two layouts are read, the two that KServe's and
MLServer's clients send to a tabular model:

- one tensor per column, named as the signature's inputs, each of shape ``[N]`` or ``[N, 1]``
  (MLServer's pandas codec, Triton-style clients);
- one tensor of shape ``[N, F]`` holding the F columns in signature order (KServe's sklearn
  server); without a signature its columns are named ``"0"`` to ``"F-1"``.

Tensors may also come in binary after a JSON header (the binary tensor data extension that
Triton's and KServe's clients use by default: ``Inference-Header-Content-Length`` gives the
header's size, each binary input says its ``parameters.binary_data_size``);
``with_binary_inputs`` reads them into ``data``. Responses are always JSON.

A malformed tensor is ``InvalidInput`` (400) naming it; values that do not fit the signature
are left to ``validate_inputs`` (422 naming the column), as on every other route.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlplatform.core.errors import InvalidInput
from mlplatform.core.signature import normalize_type

#: The range of each V2 integer datatype.
_INTEGER_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_FLOATS = ("FP16", "FP32", "FP64")
DATATYPES = ("BOOL", *_INTEGER_RANGES, *_FLOATS, "BYTES")

#: The V2 datatype a signature column type is sent as.
DATATYPE_OF_TYPE = {
    "integer": "INT64",
    "number": "FP64",
    "boolean": "BOOL",
    "string": "BYTES",
    "datetime": "BYTES",
}

#: The output tensor's name when the signature names none (MLServer's name for ``predict``).
DEFAULT_OUTPUT = "predict"


#: NumPy dtypes of the binary tensor extension's fixed-size datatypes (little-endian, row-major).
_BINARY_DTYPES = {
    "BOOL": "?",
    **{f"INT{bits}": f"<i{bits // 8}" for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": f"<u{bits // 8}" for bits in (8, 16, 32, 64)},
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def with_binary_inputs(raw: bytes, header_length: str) -> Any:
    """The JSON request at the front of ``raw`` (``header_length`` bytes, from the
    ``Inference-Header-Content-Length`` header), its binary inputs read into ``data``.
    Raises ``InvalidInput`` for a length, header or binary part that does not add up."""
    import json

    import numpy as np

    if not header_length.isdigit() or int(header_length) > len(raw):
        raise InvalidInput(
            f"Inference-Header-Content-Length {header_length!r} is not a size within the body",
            errors={"Inference-Header-Content-Length": ["not a size within the body"]},
        )
    size = int(header_length)
    try:
        request = json.loads(raw[:size])
    except ValueError as exc:
        raise InvalidInput(f"the inference header is not valid JSON: {exc}") from None
    offset = size
    tensors = request.get("inputs") if isinstance(request, Mapping) else None
    for tensor in tensors if isinstance(tensors, list) else []:
        parameters = tensor.get("parameters") if isinstance(tensor, Mapping) else None
        length = parameters.get("binary_data_size") if isinstance(parameters, Mapping) else None
        if length is None:
            continue
        name, datatype = tensor.get("name"), tensor.get("datatype")
        if not isinstance(length, int) or length < 0 or offset + length > len(raw):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {length!r} runs past the body",
                errors={str(name): ["binary data missing"]},
            )
        chunk = raw[offset : offset + length]
        offset += length
        if datatype == "BYTES":
            tensor["data"] = _binary_strings(str(name), chunk)
        elif datatype in _BINARY_DTYPES:
            dtype = np.dtype(_BINARY_DTYPES[datatype])
            if length % dtype.itemsize:
                raise InvalidInput(
                    f"input {name!r}: {length} bytes is not a whole number of {datatype} values",
                    errors={str(name): ["binary data does not match datatype"]},
                )
            tensor["data"] = np.frombuffer(chunk, dtype=dtype).tolist()
    if offset != len(raw):
        raise InvalidInput(
            f"the body has {len(raw) - offset} bytes after its tensors", errors={"body": ["trailing bytes"]}
        )
    return request


def _binary_strings(name: str, chunk: bytes) -> list[str]:
    """BYTES in the binary extension: each element a 4-byte little-endian length, then its bytes."""
    values, offset = [], 0
    while offset < len(chunk):
        length = int.from_bytes(chunk[offset : offset + 4], "little")
        element = chunk[offset + 4 : offset + 4 + length]
        if offset + 4 > len(chunk) or len(element) != length:
            raise InvalidInput(f"input {name!r}: a BYTES element runs past its data", errors={name: ["truncated"]})
        try:
            values.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(
                f"input {name!r}: a BYTES element is not UTF-8 text", errors={name: ["not text"]}
            ) from None
        offset += 4 + length
    return values


def body_from_request(signature: Mapping[str, Any] | None, request: Any) -> dict[str, Any]:
    """A V2 inference request as ``{"columns", "data"}`` for ``validate_inputs``.

    Raises ``InvalidInput`` for a request that is not a V2 request: ``inputs`` missing or
    empty, a tensor without a name, a shape that is not a list of sizes, an unknown datatype,
    data whose count does not match the shape or whose values are not of the datatype, or
    tensors that are neither one per column nor one ``[N, F]`` matrix.
    """
    if not isinstance(request, Mapping):
        raise InvalidInput("a V2 inference request is a JSON object", errors={"body": ["not an object"]})
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput("'inputs' must be a non-empty list of tensors", errors={"inputs": ["not a non-empty list"]})
    parsed = [_tensor(number, tensor) for number, tensor in enumerate(tensors)]
    names = [name for name, _, _ in parsed]
    if len(set(names)) != len(names):
        raise InvalidInput("each input tensor needs its own name", errors={"inputs": ["duplicate tensor names"]})
    columns = _signature_columns(signature)
    if len(parsed) == 1 and len(parsed[0][1]) == 2 and parsed[0][0] not in columns:
        return _matrix(parsed[0], columns)
    return _one_per_column(parsed)


def _tensor(number: int, tensor: Any) -> tuple[str, list[int], list[Any]]:
    where = f"inputs[{number}]"
    if not isinstance(tensor, Mapping):
        raise InvalidInput(f"{where} is not a tensor object", errors={where: ["not an object"]})
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where} needs a 'name'", errors={f"{where}.name": ["missing"]})
    where = f"input {name!r}"
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape)
    ):
        raise InvalidInput(
            f"{where}: 'shape' must be a list of non-negative sizes, e.g. [2] or [2, 3]",
            errors={name: ["shape is not a list of sizes"]},
        )
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"{where}: unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}",
            errors={name: [f"unknown datatype {datatype!r}"]},
        )
    if "data" not in tensor:
        raise InvalidInput(f"{where} has no 'data'", errors={name: ["data missing"]})
    values = _flatten(tensor["data"])
    if len(values) != math.prod(shape):
        raise InvalidInput(
            f"{where}: shape {shape} holds {math.prod(shape)} values but 'data' has {len(values)}",
            errors={name: ["data does not match shape"]},
        )
    for index, value in enumerate(values):
        problem = _datatype_problem(datatype, value)
        if problem is not None:
            raise InvalidInput(f"{where}: data[{index}] {problem}", errors={name: [problem]})
    return name, shape, values


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item))
    return flat


def _datatype_problem(datatype: str, value: Any) -> str | None:
    if datatype == "BOOL":
        return None if isinstance(value, bool) else f"is {value!r}, not a BOOL"
    if datatype == "BYTES":
        return None if isinstance(value, str) else f"is {value!r}, not a string (BYTES)"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is {value!r}, not a number ({datatype})"
    if datatype in _INTEGER_RANGES:
        if isinstance(value, float) and not value.is_integer():
            return f"is {value!r}, not a whole number ({datatype})"
        low, high = _INTEGER_RANGES[datatype]
        if not low <= value <= high:
            return f"is {value!r}, outside {datatype}'s range {low}..{high}"
    return None


def _signature_columns(signature: Mapping[str, Any] | None) -> list[str]:
    return [item["name"] for item in (signature or {}).get("inputs") or []]


def _matrix(tensor: tuple[str, list[int], list[Any]], columns: list[str]) -> dict[str, Any]:
    name, (rows, width), values = tensor
    if columns and width != len(columns):
        raise InvalidInput(
            f"input {name!r} has {width} columns but the model takes {len(columns)}: "
            + ", ".join(repr(c) for c in columns),
            errors={name: [f"expected shape [N, {len(columns)}]"]},
        )
    names = columns or [str(i) for i in range(width)]
    return {"columns": names, "data": [values[row * width : (row + 1) * width] for row in range(rows)]}


def _one_per_column(tensors: list[tuple[str, list[int], list[Any]]]) -> dict[str, Any]:
    rows = None
    for name, shape, _ in tensors:
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInput(
                f"input {name!r} has shape {shape}: send one tensor per column of shape [N] or [N, 1], "
                "or a single [N, F] tensor of all columns",
                errors={name: ["expected shape [N] or [N, 1]"]},
            )
        if rows is not None and shape[0] != rows:
            raise InvalidInput(
                f"input {name!r} has {shape[0]} rows where the others have {rows}",
                errors={name: ["row count differs from the other inputs"]},
            )
        rows = shape[0]
    return {
        "columns": [name for name, _, _ in tensors],
        "data": [list(row) for row in zip(*(values for _, _, values in tensors), strict=True)],
    }


# --- responses ----------------------------------------------------------------------------------


def output_tensors(
    predictions: list[Any], signature: Mapping[str, Any] | None, requested: Any = None
) -> list[dict[str, Any]]:
    """``predictions`` (one per row) as V2 output tensors.

    Rows that are objects give one tensor per key; rows that are lists of K values give one
    ``[N, K]`` tensor; scalars give one ``[N]`` tensor, named as the signature's single output
    or ``predict``. ``requested`` is the request's ``outputs`` (``[{"name"}, ...]``): only
    those are sent, and a name the model does not produce is ``InvalidInput``.
    """
    predictions = [_plain(row) for row in predictions]
    if predictions and all(isinstance(row, Mapping) for row in predictions):
        keys = list(dict.fromkeys(key for row in predictions for key in row))
        tensors = [_output(str(key), [row.get(key) for row in predictions]) for key in keys]
    else:
        tensors = [_output(_output_name(signature), predictions)]
    if requested is None:
        return tensors
    if not isinstance(requested, list) or not all(
        isinstance(item, Mapping) and isinstance(item.get("name"), str) for item in requested
    ):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...}", errors={"outputs": ["not a list of names"]})
    by_name = {tensor["name"]: tensor for tensor in tensors}
    unknown = [item["name"] for item in requested if item["name"] not in by_name]
    if unknown:
        raise InvalidInput(
            f"the model has no output {unknown[0]!r}; it has {', '.join(repr(n) for n in by_name)}",
            errors={"outputs": [f"unknown output {name!r}" for name in unknown]},
        )
    return [by_name[item["name"]] for item in requested]


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays (what models return) as Python values."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    to_list = getattr(value, "tolist", None)
    return to_list() if to_list is not None and not isinstance(value, str) else value


def _output_name(signature: Mapping[str, Any] | None) -> str:
    outputs = (signature or {}).get("outputs") or []
    if len(outputs) == 1 and outputs[0].get("name"):
        return str(outputs[0]["name"])
    return DEFAULT_OUTPUT


def _output(name: str, values: list[Any]) -> dict[str, Any]:
    width = len(values[0]) if values and isinstance(values[0], list) else None
    if width is not None and all(isinstance(row, list) and len(row) == width for row in values):
        flat = [value for row in values for value in row]
        shape = [len(values), width]
    else:
        flat, shape = values, [len(values)]
    datatype = _datatype_of(flat)
    if datatype == "BYTES":
        flat = [value if isinstance(value, str) else str(value) for value in flat]
    return {"name": name, "datatype": datatype, "shape": shape, "data": flat}


def _datatype_of(values: list[Any]) -> str:
    """The narrowest V2 datatype holding every value; anything mixed or null goes as text (BYTES)."""
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if any(isinstance(v, bool) for v in values):
        return "BYTES"
    if all(isinstance(v, int) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        return "FP64"
    return "BYTES"


def tensor_metadata(signature: Mapping[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """The ``inputs`` and ``outputs`` of V2 model metadata, from the signature (empty without one)."""
    inputs = [
        {"name": item["name"], "datatype": DATATYPE_OF_TYPE[normalize_type(item.get("type"))], "shape": [-1]}
        for item in (signature or {}).get("inputs") or []
    ]
    declared = (signature or {}).get("outputs") or []
    outputs = [
        {
            "name": str(item.get("name") or (DEFAULT_OUTPUT if len(declared) == 1 else f"output-{i}")),
            "datatype": DATATYPE_OF_TYPE[normalize_type(item.get("type"))],
            "shape": [-1],
        }
        for i, item in enumerate(declared)
    ]
    return {"inputs": inputs, "outputs": outputs}
