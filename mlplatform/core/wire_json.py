"""The JSON the platform writes on the wire: one encoder for the API, the gateway and the model server.

orjson, compact: numpy arrays and scalars become lists and numbers, datetimes ISO 8601, non-string
keys strings (as the standard library does), anything else with ``tolist()`` or ``isoformat()``
is converted through it. A NaN or infinite float becomes ``null``: JSON has no literal for it,
and the ``NaN`` the standard library writes breaks strict parsers (browsers, Go, Java). Bodies
that must keep non-finite values say so themselves (run metrics are sent as strings).
"""

from __future__ import annotations

from typing import Any

import orjson

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_plain, option=OPTIONS)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
