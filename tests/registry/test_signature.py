"""Signature inference and request validation (pure functions: no database)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from mlplatform.core.errors import InvalidInput, Unprocessable
from mlplatform.core.signature import check_signature, infer_signature, validate_inputs

SIG = {
    "inputs": [
        {"name": "age", "type": "integer", "nullable": False},
        {"name": "income", "type": "number", "nullable": False},
        {"name": "city", "type": "string", "nullable": True},
        {"name": "vip", "type": "boolean", "nullable": False},
    ],
    "outputs": None,
}


def test_infer_from_records_and_frame_agree() -> None:
    records = [
        {"age": 31, "income": 52000.5, "city": "Lyon", "vip": True, "seen": "2024-01-01T00:00:00"},
        {"age": 45, "income": 61000, "city": None, "vip": False, "seen": "2024-02-01T00:00:00"},
    ]
    from_records = infer_signature(records, outputs=np.array([0.2, 0.7]))
    assert from_records["inputs"] == [
        {"name": "age", "type": "integer", "nullable": False},
        {"name": "income", "type": "number", "nullable": False},
        {"name": "city", "type": "string", "nullable": True},
        {"name": "vip", "type": "boolean", "nullable": False},
        {"name": "seen", "type": "string", "nullable": False},
    ]
    assert from_records["outputs"] == [{"name": "prediction", "type": "number", "nullable": False}]
    frame = pd.DataFrame(records)
    frame["seen"] = pd.to_datetime(frame["seen"])
    from_frame = infer_signature(frame)
    assert [c["type"] for c in from_frame["inputs"]] == ["integer", "number", "string", "boolean", "datetime"]
    assert from_frame["inputs"][2]["nullable"] is True and from_frame["outputs"] is None


def test_infer_refuses_columns_it_cannot_type() -> None:
    with pytest.raises(InvalidInput, match="'x'.*every example value is null"):
        infer_signature([{"x": None}])
    with pytest.raises(InvalidInput, match="'x'.*mixes"):
        infer_signature([{"x": 1}, {"x": "a"}])
    with pytest.raises(InvalidInput):
        infer_signature([])
    for rows, problem in (([{}], "no columns"), ([{"": 1}], "empty column name")):  # were signatures with no inputs
        with pytest.raises(InvalidInput) as caught:
            infer_signature(rows)
        assert caught.value.errors == {"input_example": [problem]}


def test_check_signature_names_the_problem() -> None:
    for signature, problem in (
        ({"inputs": [{"name": "a", "type": "double", "nullable": "yes"}]}, "nullable is not a boolean"),
        ({"inputs": [{"name": "a", "type": "weird"}]}, "unknown type 'weird'"),
        ({"inputs": [{"name": "a", "type": "double"}, {"name": "a", "type": "long"}]}, "duplicate name"),
    ):
        with pytest.raises(InvalidInput) as caught:
            check_signature(signature)
        assert caught.value.errors == {"signature": [problem]}, signature


def test_validate_records_and_split_give_the_same_frame_in_signature_order() -> None:
    records = validate_inputs(SIG, {"instances": [{"vip": True, "city": "Lyon", "income": 3, "age": 30.0}]})
    split = validate_inputs(SIG, {"columns": ["vip", "age", "income", "city"], "data": [[True, 30, 3, "Lyon"]]})
    assert list(records.columns) == ["age", "income", "city", "vip"]
    pd.testing.assert_frame_equal(records, split, check_dtype=False)
    # a nullable column may be null or left out
    frame = validate_inputs(
        SIG,
        {"instances": [{"age": 1, "income": 1.5, "vip": False}, {"age": 2, "income": 2, "vip": True, "city": None}]},
    )
    assert frame["city"].isna().all() and len(frame) == 2


def test_mlflow_scoring_shapes_give_the_same_frame() -> None:
    """What an MLflow client sends to ``mlflow models serve`` validates to the frame ours do."""
    row = {"vip": True, "city": "Lyon", "income": 3, "age": 30}
    ours = validate_inputs(SIG, {"instances": [row, {**row, "age": 31}]})
    split = {"columns": list(row), "data": [list(row.values()), [True, "Lyon", 3, 31]], "index": [7, 8]}
    for body in (
        {"dataframe_split": split},
        {"dataframe_records": [row, {**row, "age": 31}]},
        {"inputs": [row, {**row, "age": 31}]},
        {"inputs": {name: [value, 31 if name == "age" else value] for name, value in row.items()}},
        {"records": [row, {**row, "age": 31}]},
    ):
        pd.testing.assert_frame_equal(validate_inputs(SIG, body), ours, check_dtype=False)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"instances": [{"age": 1}], "dataframe_records": [{"age": 1}]}, {"instances", "dataframe_records"}),
        ({"columns": ["age"], "data": [[1]], "inputs": {"age": [1]}}, {"columns", "inputs"}),
        ({"dataframe_split": [[1]]}, {"dataframe_split"}),
        ({"inputs": {"age": [1, 2], "income": [1]}}, {"inputs"}),
        ({"inputs": {"age": 1}}, {"inputs"}),
        ({"inputs": {}}, {"inputs"}),
    ],
)
def test_mlflow_shapes_that_do_not_hold_rows_are_422(body: dict, errors: set[str]) -> None:
    with pytest.raises(Unprocessable) as caught:
        validate_inputs(SIG, body)
    assert set(caught.value.errors) == errors


@pytest.mark.parametrize(
    ("body", "column", "problem", "row"),
    [
        ({"instances": [{"age": 1, "vip": True}]}, "income", "missing", 0),
        (
            {"instances": [{"age": 1, "income": 1, "vip": True}, {"age": 1, "income": "abc", "vip": True}]},
            "income",
            "wrong type: expected number, got 'abc'",
            1,
        ),
        ({"instances": [{"age": None, "income": 1, "vip": True}]}, "age", "null not allowed", 0),
        ({"instances": [{"age": 1.5, "income": 1, "vip": True}]}, "age", "wrong type: expected integer, got 1.5", 0),
        (
            {"instances": [{"age": 1, "income": True, "vip": True}]},
            "income",
            "wrong type: expected number, got True",
            0,
        ),
        ({"columns": ["age", "income"], "data": [[1, 2]]}, "vip", "missing", 0),
    ],
)
def test_validate_names_the_column_and_the_problem(body: dict, column: str, problem: str, row: int) -> None:
    with pytest.raises(Unprocessable) as caught:
        validate_inputs(SIG, body)
    assert caught.value.errors[column] == [problem]
    assert f"row {row}" in caught.value.message and repr(column) in caught.value.message


def test_unknown_columns_are_rejected() -> None:
    with pytest.raises(Unprocessable, match="unknown column 'zip'") as caught:
        validate_inputs(SIG, {"instances": [{"age": 1, "income": 1, "vip": True, "zip": "69000"}]})
    assert caught.value.errors == {"zip": ["unknown column"]}


def test_malformed_bodies_are_422() -> None:
    for body in (
        {},
        {"instances": []},
        {"instances": [1]},
        {"columns": ["a"], "data": [[1, 2]]},
        {"columns": "a", "data": [[1]]},
    ):
        with pytest.raises(Unprocessable):
            validate_inputs(SIG, body)


def test_without_a_signature_the_body_is_only_shaped() -> None:
    frame = validate_inputs(None, {"instances": [{"a": 1}, {"b": "x"}]})
    assert list(frame.columns) == ["a", "b"] and frame["b"][1] == "x" and frame["a"].isna()[1]


def test_datetimes_and_mlflow_type_names() -> None:
    sig = check_signature({"inputs": [{"name": "at", "type": "datetime"}, {"name": "x", "type": "double"}]})
    assert sig["inputs"][1] == {"name": "x", "type": "number", "nullable": False}
    frame = validate_inputs(sig, {"instances": [{"at": "2024-05-01T10:00:00Z", "x": 1}]})
    assert frame["at"][0] == pd.Timestamp(dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC))
    with pytest.raises(Unprocessable, match="expected datetime"):
        validate_inputs(sig, {"instances": [{"at": "yesterday", "x": 1}]})
    with pytest.raises(InvalidInput, match="unknown signature type"):
        check_signature({"inputs": [{"name": "x", "type": "tensor"}]})


def test_nan_counts_as_null() -> None:
    with pytest.raises(Unprocessable, match="null not allowed"):
        validate_inputs(SIG, {"instances": [{"age": 1, "income": math.nan, "vip": True}]})


def test_all_number_signatures_give_one_float_block_with_nulls_as_nan() -> None:
    sig = check_signature(
        {"inputs": [{"name": "b", "type": "double"}, {"name": "a", "type": "number", "nullable": True}]}
    )
    frame = validate_inputs(sig, {"instances": [{"a": 1, "b": 2.5}, {"b": -1}, {"a": None, "b": 3}]})
    assert list(frame.columns) == ["b", "a"]
    assert list(frame.dtypes) == [np.float64, np.float64]
    assert frame["b"].tolist() == [2.5, -1.0, 3.0]
    assert frame["a"][0] == 1.0 and math.isnan(frame["a"][1]) and math.isnan(frame["a"][2])
    split = validate_inputs(sig, {"columns": ["a", "b"], "data": [[1, 2.5], [None, -1], [None, 3]]})
    pd.testing.assert_frame_equal(frame, split)
