"""Window arithmetic: lengths such as ``5m``, ``1h``, ``1d``, aligned to the Unix epoch in UTC.

A window is ``[start, start + length)``. Windows are aligned, so ``1h`` windows start on the
hour and ``1d`` windows at midnight UTC; any timestamp belongs to exactly one window.
"""

from __future__ import annotations

import datetime as dt
import re

from mlplatform.core.errors import InvalidInput

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_length(text: str) -> dt.timedelta:
    """``"5m"`` -> 5 minutes. Raises ``InvalidInput`` for anything else than ``<n><s|m|h|d>``
    with a positive length that divides a day evenly (so windows align across days)."""
    match = re.fullmatch(r"(\d+)([smhd])", text or "")
    if not match:
        raise InvalidInput(f"window length {text!r} must look like 5m, 1h or 1d")
    seconds = int(match.group(1)) * UNITS[match.group(2)]
    if seconds <= 0 or (seconds < 86400 and 86400 % seconds) or (seconds >= 86400 and seconds % 86400):
        raise InvalidInput(f"window length {text!r} must divide a day evenly, or be whole days")
    return dt.timedelta(seconds=seconds)


def as_utc(value: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def window_start(at: dt.datetime, length: dt.timedelta) -> dt.datetime:
    """The start of the window holding ``at``."""
    seconds = int(length.total_seconds())
    offset = int((as_utc(at) - EPOCH).total_seconds()) // seconds * seconds
    return EPOCH + dt.timedelta(seconds=offset)


def check_aligned(start: dt.datetime, length: dt.timedelta) -> dt.datetime:
    """``start`` in UTC if it starts a window, else ``InvalidInput`` naming the nearest start."""
    start = as_utc(start)
    aligned = window_start(start, length)
    if aligned != start or start.microsecond:
        raise InvalidInput(
            f"{start.isoformat()} does not start a {int(length.total_seconds())}s window; the window holding it starts {aligned.isoformat()}",
            errors={"start": ["not aligned to the window length"]},
        )
    return start


def hours_between(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every whole UTC hour that overlaps ``[start, end)``, as the hour's start."""
    hour = dt.timedelta(hours=1)
    current = window_start(start, hour)
    hours = []
    while current < end:
        hours.append(current)
        current += hour
    return hours
