"""``mlplatform.core.storable``: what no database can store, and where it is."""

from __future__ import annotations

import json

from mlplatform.core import storable


def test_find_names_the_first_bad_value_with_its_path() -> None:
    assert storable.find({"a": [1, "ok", {"b": "x\x00"}]}) == (("a", 2, "b"), "contains a NUL character")
    assert storable.find({"k\ud800": 1}) == (("k\ud800",), "key contains a lone surrogate (not Unicode text)")
    assert storable.find([2**63]) == ((0,), "is outside the 64-bit integer range")
    assert storable.find("\udfff") == ((), "contains a lone surrogate (not Unicode text)")


def test_storable_values_pass() -> None:
    value = {"emoji": "\U0001f600", "max": 2**63 - 1, "min": -(2**63), "flag": True, "f": 1e308, "none": None}
    assert storable.find(value) is None


def test_json_needs_check_only_when_a_bad_value_could_be_there() -> None:
    assert not storable.json_needs_check(json.dumps({"a": "plain", "n": 123456, "f": 1.5e3}).encode())
    for bad in ("x\x00", "\ud800", 2**63, 1e300):
        assert storable.json_needs_check(json.dumps({"a": bad}).encode()), bad
    assert storable.json_needs_check(b'{"a": "\\uD83D\\uDE00"}')  # a valid pair is walked, and passes
