"""Model signatures: what columns a model takes, inferred once and checked on every request.

A signature is plain JSON, stored on the model version::

    {"inputs":  [{"name": "age", "type": "integer", "nullable": false}, ...],
     "outputs": [{"name": "prediction", "type": "number", "nullable": false}] or None}

Types are ``integer | number | boolean | string | datetime``. ``infer_signature`` builds one
from an input example; ``validate_inputs`` checks a prediction request body against one and
returns the DataFrame to predict on. Validation runs on the gateway's hot path, so it checks
plain Python values row by row and builds the frame once at the end (no pandas inference per
column). Signatures written by hand in ``mlplatform-model.json`` may use MLflow's names
(``double``, ``long``, ``bool``, ``str``); they are read as the types above.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mlplatform.core.errors import InvalidInput, Unprocessable

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

TYPES = ("integer", "number", "boolean", "string", "datetime")
_ALIASES = {
    "int": "integer",
    "long": "integer",
    "int32": "integer",
    "int64": "integer",
    "double": "number",
    "float": "number",
    "float32": "number",
    "float64": "number",
    "bool": "boolean",
    "str": "string",
}
MAX_REPORTED_ERRORS = 50  # stop collecting after this many: a bad 10,000-row batch fails fast
OUTPUT_NAME = "prediction"


# --- inference ----------------------------------------------------------------------------------


def infer_signature(example: pd.DataFrame | list[dict[str, Any]], outputs: Any = None) -> dict[str, Any]:
    """The signature of ``example`` (a DataFrame or a list of records) and, if given, ``outputs``.

    A column is ``nullable`` when the example holds a null (None / NaN / NaT) in it. ``outputs``
    may be a DataFrame (one entry per column), a Series, an array or a list (one entry named
    ``prediction``). Raises ``InvalidInput`` naming the column when a type cannot be told:
    every value null, or values of types that do not mix (e.g. numbers and strings).
    """
    return {"inputs": _infer_columns(example, "input_example"), "outputs": infer_outputs(outputs)}


def _infer_columns(example: Any, what: str) -> list[dict[str, Any]]:
    import pandas as pd  # type: ignore[import-untyped]

    if isinstance(example, pd.DataFrame):
        return [_infer_series(str(name), example[name]) for name in example.columns]
    if not isinstance(example, list) or not example or not all(isinstance(row, Mapping) for row in example):
        raise InvalidInput(
            f"{what} must be a non-empty list of records (objects) or a DataFrame",
            errors={what: ["not a list of records"]},
        )
    names: dict[str, None] = {}
    for row in example:
        names.update(dict.fromkeys(str(key) for key in row))
    if not names or "" in names:
        raise InvalidInput(
            f"{what} records need named columns", errors={what: ["no columns" if not names else "empty column name"]}
        )
    # A key absent from some records counts as null there.
    return [_infer_values(name, [row.get(name) for row in example]) for name in names]


def infer_outputs(outputs: Any) -> list[dict[str, Any]] | None:
    """The ``outputs`` part of a signature for model outputs (see ``infer_signature``); None for None."""
    if outputs is None:
        return None
    import pandas as pd  # type: ignore[import-untyped]

    if isinstance(outputs, pd.DataFrame):
        return _infer_columns(outputs, "outputs")
    if isinstance(outputs, pd.Series):
        return [_infer_series(str(outputs.name) if outputs.name is not None else OUTPUT_NAME, outputs)]
    values = outputs.tolist() if hasattr(outputs, "tolist") else list(outputs)
    if values and isinstance(values[0], Mapping):
        return _infer_columns(values, "outputs")
    return [_infer_values(OUTPUT_NAME, values)]


def _infer_series(name: str, series: pd.Series) -> dict[str, Any]:
    kind = getattr(series.dtype, "kind", "O")
    nullable = bool(series.isna().any())
    by_kind = {"i": "integer", "u": "integer", "f": "number", "b": "boolean", "M": "datetime"}
    if kind in by_kind:
        return {"name": name, "type": by_kind[kind], "nullable": nullable}
    return _infer_values(name, series.tolist())


def _infer_values(name: str, values: list[Any]) -> dict[str, Any]:
    present = [v for v in values if not _is_null(v)]
    if not present:
        raise InvalidInput(
            f"cannot infer the type of column {name!r}: every example value is null", errors={name: ["all null"]}
        )
    kinds = {_kind_of(v) for v in present}
    if kinds == {"integer", "number"}:
        kinds = {"number"}
    if len(kinds) != 1 or None in kinds:
        seen = sorted(type(v).__name__ for v in {type(v): v for v in present}.values())
        raise InvalidInput(
            f"cannot infer the type of column {name!r}: it mixes {', '.join(seen)}", errors={name: ["mixed types"]}
        )
    return {"name": name, "type": kinds.pop(), "nullable": len(present) != len(values)}


def _kind_of(value: Any) -> str | None:
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, np.integer)):
        return "integer"
    if isinstance(value, (float, np.floating)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (dt.datetime, dt.date, np.datetime64)):
        return "datetime"
    return None


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    # pandas.NA, NaT, numpy NaN: compared without importing pandas on the hot path
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


# --- validation ---------------------------------------------------------------------------------


def validate_inputs(signature: Mapping[str, Any] | None, body: Mapping[str, Any]) -> pd.DataFrame:
    """The request ``body`` as a DataFrame with the signature's columns, in signature order.

    ``body`` is ``{"instances": [{column: value}, ...]}`` (records) or
    ``{"columns": [...], "data": [[...], ...]}`` (split), or MLflow's equivalents (see
    ``BODY_SHAPES``). Each value is checked against its
    column's type: ``integer`` takes whole numbers (``3.0`` too), ``number`` any number,
    ``boolean`` true/false, ``string`` a string, ``datetime`` an ISO 8601 string. A nullable
    column may be null or left out. With ``signature`` None the body is only checked for shape.

    Raises ``Unprocessable`` (422) with ``errors={column: [problem, ...]}`` where a problem is
    ``"missing"``, ``"null not allowed"``, ``"wrong type: expected number, got 'abc'"`` or
    ``"unknown column"``; the message names the first bad column and its row index.
    """
    columns, rows = _rows_of(body)
    spec = _input_spec(signature)
    if spec is None:
        return _frame(columns, rows, {})
    known = {name for name, _, _ in spec}
    unknown = [name for name in columns if name not in known]
    if unknown:
        raise Unprocessable(
            f"unknown column {unknown[0]!r}: the model takes {', '.join(repr(n) for n, _, _ in spec)}",
            errors={name: ["unknown column"] for name in unknown},
        )
    errors: dict[str, list[str]] = {}
    first: tuple[int, str, str] | None = None
    count = 0
    positions = {name: i for i, name in enumerate(columns)}
    out_columns: list[list[Any]] = []
    datetimes: dict[str, None] = {}
    for name, check, nullable in spec:
        index = positions.get(name)
        values = [None] * len(rows) if index is None else [row[index] for row in rows]
        for row_number, value in enumerate(values):
            if value is None or value is _ABSENT or (value.__class__ is float and value != value):
                problem = None if nullable else ("missing" if index is None or value is _ABSENT else "null not allowed")
                if value is _ABSENT:
                    values[row_number] = None
            else:
                problem = check(value)
            if problem is not None:
                count += 1
                if first is None:
                    first = (row_number, name, problem)
                problems = errors.setdefault(name, [])
                if problem not in problems:
                    problems.append(problem)
                if count >= MAX_REPORTED_ERRORS:
                    break
        if count >= MAX_REPORTED_ERRORS:
            break
        if check is _check_datetime:
            datetimes[name] = None
        out_columns.append(values)
    if first is not None:
        row_number, name, problem = first
        more = f" ({count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        raise Unprocessable(f"invalid input at row {row_number}, column {name!r}: {problem}{more}", errors=errors)
    if all(check is _check_number for _, check, _ in spec):
        return _number_frame([name for name, _, _ in spec], out_columns)
    return _frame_from_columns(
        {name: values for (name, _, _), values in zip(spec, out_columns, strict=True)}, datetimes
    )


class _Absent:
    """A key a record left out (told apart from an explicit null for the error message)."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


#: The body shapes ``validate_inputs`` reads: ours, and MLflow's scoring protocol (``mlflow models
#: serve``), so a client written for MLflow sends what it always sent.
BODY_SHAPES = ("instances", "columns", "dataframe_split", "dataframe_records", "records", "inputs")


def _our_shape(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """``body`` as ``{"instances"}`` or ``{"columns", "data"}``: MLflow's ``dataframe_split``
    (its ``index`` is not needed), ``dataframe_records`` and ``inputs`` (an object of columns or
    a list of records) and our model server's ``records`` are the same data."""
    given = [key for key in BODY_SHAPES if key in body or (key == "columns" and "data" in body)]
    if len(given) > 1:
        raise Unprocessable(
            f"the body gives rows as both {given[0]!r} and {given[1]!r}: send one",
            errors={key: ["only one of " + ", ".join(BODY_SHAPES)] for key in given},
        )
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        if not isinstance(split, Mapping):
            raise Unprocessable(
                "'dataframe_split' must be an object with 'columns' and 'data'",
                errors={"dataframe_split": ["not an object"]},
            )
        return {"columns": split.get("columns"), "data": split.get("data")}
    for records in ("dataframe_records", "records"):
        if records in body:
            return {"instances": body[records]}
    if "inputs" in body:
        inputs = body["inputs"]
        if not isinstance(inputs, Mapping):
            return {"instances": inputs}
        values = list(inputs.values())
        if not values or not all(isinstance(v, list) for v in values) or len({len(v) for v in values}) != 1:
            raise Unprocessable(
                "'inputs' as an object must map each column to a list of values, all of one length",
                errors={"inputs": ["not columns of equal length"]},
            )
        return {"columns": list(inputs), "data": [list(row) for row in zip(*values, strict=True)]}
    return body


def body_from_csv(signature: Mapping[str, Any] | None, text: str) -> dict[str, Any]:
    """A CSV request (MLflow's ``text/csv``: a header row of column names, then one line per
    row) as ``{"columns", "data"}`` for ``validate_inputs``.

    CSV carries only text, so each cell is read as its signature column's type: an empty cell
    is null, ``integer`` and ``number`` cells are parsed as numbers, ``boolean`` takes
    ``true``/``false`` (any case) and ``1``/``0``. A cell that does not parse stays text, and
    ``validate_inputs`` reports it as the wrong type. Without a signature, numbers are read
    as numbers and the rest stays text.
    """
    import csv

    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header or not any(name.strip() for name in header):
        raise Unprocessable("the CSV body needs a header row of column names", errors={"body": ["no header row"]})
    columns = [name.strip() for name in header]
    readers = [_CSV_READERS.get(kind, _csv_any) for kind in _csv_types(signature, columns)]
    data = []
    for number, cells in enumerate(reader, start=1):
        if not cells:
            continue
        if len(cells) != len(columns):
            raise Unprocessable(
                f"CSV line {number + 1} has {len(cells)} cells; the header names {len(columns)} columns",
                errors={"data": [f"row {number - 1} has the wrong length"]},
            )
        data.append([None if cell == "" else read(cell) for read, cell in zip(readers, cells, strict=True)])
    return {"columns": columns, "data": data}


def _csv_types(signature: Mapping[str, Any] | None, columns: list[str]) -> list[str | None]:
    types = {item["name"]: normalize_type(item.get("type")) for item in (signature or {}).get("inputs") or []}
    return [types.get(name) if types else None for name in columns]


def _csv_number(cell: str) -> Any:
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def _csv_boolean(cell: str) -> Any:
    return {"true": True, "false": False, "1": True, "0": False}.get(cell.strip().lower(), cell)


def _csv_any(cell: str) -> Any:
    value = _csv_number(cell)
    return cell if isinstance(value, float) and not math.isfinite(value) else value


_CSV_READERS: dict[str | None, Callable[[str], Any]] = {
    "integer": _csv_number,
    "number": _csv_number,
    "boolean": _csv_boolean,
    "string": str,
    "datetime": str,
}


def _rows_of(body: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows as lists) from any of ``BODY_SHAPES``; absent record keys become ``_ABSENT``."""
    if not isinstance(body, Mapping):
        raise Unprocessable(
            "the body must be a JSON object with 'instances' or 'columns' and 'data'",
            errors={"body": ["not an object"]},
        )
    body = _our_shape(body)
    if "instances" in body:
        records = body["instances"]
        if not isinstance(records, list) or not records:
            raise Unprocessable(
                "'instances' must be a non-empty list of objects", errors={"instances": ["not a non-empty list"]}
            )
        names: dict[str, None] = {}
        for number, record in enumerate(records):
            if not isinstance(record, dict):
                raise Unprocessable(
                    f"instances[{number}] is not an object", errors={"instances": [f"row {number} is not an object"]}
                )
            names.update(dict.fromkeys(record))
        columns = list(names)
        return columns, [[record.get(name, _ABSENT) for name in columns] for record in records]
    if "columns" in body or "data" in body:
        names_given, data = body.get("columns"), body.get("data")
        if (
            not isinstance(names_given, list)
            or not all(isinstance(c, str) for c in names_given)
            or len(set(names_given)) != len(names_given)
        ):
            raise Unprocessable(
                "'columns' must be a list of distinct column names",
                errors={"columns": ["not a list of distinct names"]},
            )
        if not isinstance(data, list) or not data:
            raise Unprocessable("'data' must be a non-empty list of rows", errors={"data": ["not a non-empty list"]})
        for number, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(names_given):
                raise Unprocessable(
                    f"data[{number}] must be a list of {len(names_given)} values, one per column",
                    errors={"data": [f"row {number} has the wrong length"]},
                )
        return list(names_given), data
    raise Unprocessable(
        "the body needs 'instances' (records) or 'columns' and 'data'", errors={"instances": ["missing"]}
    )


def _frame(columns: list[str], rows: list[list[Any]], datetimes: Mapping[str, None]) -> pd.DataFrame:
    """A frame from unchecked rows (no signature): absent record keys become None."""
    data = {name: [None if row[i] is _ABSENT else row[i] for row in rows] for i, name in enumerate(columns)}
    return _frame_from_columns(data, datetimes)


def _number_frame(names: list[str], columns: list[list[Any]]) -> pd.DataFrame:
    """All-number columns as one float64 block (nulls as NaN): ~20x cheaper than pandas' per-column inference."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped]

    block = np.array(columns, dtype=np.float64).T  # None becomes NaN
    return pd.DataFrame(block, columns=pd.Index(names, dtype=object), copy=False)


def _frame_from_columns(data: dict[str, list[Any]], datetimes: Mapping[str, None]) -> pd.DataFrame:
    import pandas as pd  # type: ignore[import-untyped]

    frame = pd.DataFrame(data, columns=list(data))
    for name in datetimes:
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame


# --- per-type checks: return None when the value fits, else the problem ---------------------------


def _wrong(expected: str, value: Any) -> str:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"wrong type: expected {expected}, got {shown}"


def _check_integer(value: Any) -> str | None:
    cls = value.__class__
    if cls is int or (cls is float and value.is_integer()):
        return None
    return _wrong("integer", value)


def _check_number(value: Any) -> str | None:
    cls = value.__class__
    if cls is float or cls is int:
        return None
    return _wrong("number", value)


def _check_boolean(value: Any) -> str | None:
    return None if value.__class__ is bool else _wrong("boolean", value)


def _check_string(value: Any) -> str | None:
    return None if value.__class__ is str else _wrong("string", value)


def _check_datetime(value: Any) -> str | None:
    if value.__class__ is str:
        try:
            dt.datetime.fromisoformat(value)
            return None
        except ValueError:
            pass
    return _wrong("datetime (ISO 8601)", value)


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "integer": _check_integer,
    "number": _check_number,
    "boolean": _check_boolean,
    "string": _check_string,
    "datetime": _check_datetime,
}


def normalize_type(name: Any) -> str:
    """A signature type name as one of ``TYPES`` (MLflow's ``double``, ``long``... accepted)."""
    value = _ALIASES.get(str(name).lower(), str(name).lower())
    if value not in TYPES:
        raise InvalidInput(
            f"unknown signature type {name!r}; use one of {', '.join(TYPES)}",
            errors={"signature": [f"unknown type {name!r}"]},
        )
    return value


def check_signature(signature: Any) -> dict[str, Any]:
    """``signature`` checked and normalised (types from ``TYPES``, ``nullable`` present).

    Raises ``InvalidInput`` naming the problem. Used when a signature is given at registration.
    """
    if not isinstance(signature, Mapping) or not isinstance(signature.get("inputs"), list) or not signature["inputs"]:
        raise InvalidInput(
            "signature must be an object with a non-empty 'inputs' list", errors={"signature": ["no inputs"]}
        )
    result: dict[str, Any] = {}
    for part in ("inputs", "outputs"):
        items = signature.get(part)
        if items is None:
            result[part] = None
            continue
        if not isinstance(items, list):
            raise InvalidInput(f"signature.{part} must be a list", errors={"signature": [f"{part} is not a list"]})
        seen: set[str] = set()
        cleaned = []
        for item in items:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
                raise InvalidInput(
                    f"every signature.{part} entry needs a 'name'",
                    errors={"signature": [f"{part} entry without a name"]},
                )
            if item["name"] in seen:
                raise InvalidInput(
                    f"signature.{part} names {item['name']!r} twice", errors={"signature": ["duplicate name"]}
                )
            seen.add(item["name"])
            if not isinstance(item.get("nullable", False), bool):
                raise InvalidInput(
                    f"signature.{part} {item['name']!r}: nullable must be true or false",
                    errors={"signature": ["nullable is not a boolean"]},
                )
            cleaned.append(
                {
                    "name": item["name"],
                    "type": normalize_type(item.get("type")),
                    "nullable": bool(item.get("nullable", False)),
                }
            )
        result[part] = cleaned
    return result


def _input_spec(signature: Mapping[str, Any] | None) -> list[tuple[str, Callable[[Any], str | None], bool]] | None:
    inputs = (signature or {}).get("inputs") if signature else None
    if not inputs:
        return None
    return [
        (item["name"], _CHECKS[normalize_type(item.get("type"))], bool(item.get("nullable", False))) for item in inputs
    ]
