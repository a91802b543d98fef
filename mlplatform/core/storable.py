"""Values no database here can store, found before they reach a transaction.

A NUL character (PostgreSQL refuses it in text), a lone UTF-16 surrogate (it has no UTF-8
encoding) and an integer outside 64 bits (neither database has a column for it) each fail deep
in the driver. The API looks for them at its edge, so the caller gets a 422 naming the field.
"""

from __future__ import annotations

import re
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
# In JSON text a NUL or a surrogate can only arrive as a \u escape (raw control characters and
# invalid UTF-8 do not parse), and a huge integer as a long run of digits or an exponent: a body
# without any of these holds nothing to find.
_SUSPECT_JSON = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})|[0-9]{19}|[eE]\+?[0-9]{2}")


def json_needs_check(raw: bytes) -> bool:
    """Whether the JSON text ``raw`` could hold an unstorable value (``False``: it cannot)."""
    return _SUSPECT_JSON.search(raw) is not None


def problem(value: Any) -> str | None:
    """Why ``value`` (one string or integer) cannot be stored, or ``None``."""
    if isinstance(value, str):
        match = _BAD_TEXT.search(value)
        if match is None:
            return None
        return "contains a NUL character" if match.group() == "\x00" else "contains a lone surrogate (not Unicode text)"
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        return "is outside the 64-bit integer range"
    return None


def find(value: Any, path: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...], str] | None:
    """``(path, problem)`` of the first unstorable string, key or integer in ``value``, or ``None``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if (found := problem(key)) is not None:
                return (*path, key), f"key {found}"
            if (hit := find(item, (*path, key))) is not None:
                return hit
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if (hit := find(item, (*path, index))) is not None:
                return hit
        return None
    found = problem(value)
    return (path, found) if found is not None else None
