"""URL converters that match only what the databases can hold, so anything else is a plain 404.

``<int:...>`` ids stop at the 64-bit maximum, and ``<name>`` / ``<path:...>`` segments cannot
contain a NUL character (a ``%00`` in the URL), which PostgreSQL refuses in text.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map, PathConverter, UnicodeConverter

from mlplatform.core.storable import INT64_MAX


class Int64Converter(IntegerConverter):
    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", INT64_MAX)
        super().__init__(map, *args, **kwargs)


class NameConverter(UnicodeConverter):
    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, *args, **kwargs)
        self.regex = self.regex.replace("[^/]", "[^/\\x00]", 1)


class NulFreePathConverter(PathConverter):
    regex = "[^/\\x00][^\\x00]*?"


def install(app: Flask) -> None:
    """Use these converters for every rule added to ``app`` from now on."""
    app.url_map.converters.update(
        default=NameConverter, string=NameConverter, int=Int64Converter, path=NulFreePathConverter
    )
