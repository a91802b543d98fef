"""Pieces every blueprint uses: the platform, the caller, pagination arguments and pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import flask_smorest
from flask import Response, current_app, g, stream_with_context
from marshmallow import Schema, fields, validate
from webargs.flaskparser import FlaskParser

from mlplatform.core import storable, wire_json
from mlplatform.core.backends import Identity
from mlplatform.core.db.models import Project
from mlplatform.core.errors import Unprocessable
from mlplatform.core.services.pagination import MAX_PAGE_SIZE

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

API_PREFIX = "/api/v1"


def refuse_unstorable(data: Any, location: str = "json") -> None:
    """422 naming the field if ``data`` holds a value no database can store (``core.storable``)."""
    hit = storable.find(data)
    if hit is None:
        return
    path, found = hit
    errors: Any = [found]
    for part in reversed(path):
        errors = {str(part): errors}
    name = ".".join(map(str, path)) or "the body"
    raise Unprocessable(f"{name} {found}", errors={location: errors})


class Parser(FlaskParser):
    """webargs' Flask parser that also refuses values no database can store, after the schema
    has loaded them (so an integer field given ``1e300`` is caught too)."""

    def parse(self, argmap: Any, req: Any = None, *, location: str | None = None, **kwargs: Any) -> Any:
        parsed = super().parse(argmap, req, location=location, **kwargs)
        refuse_unstorable(parsed, location or self.location)
        return parsed


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with each ``arguments`` schema built once, where the route is
    declared (given a class, webargs would build a schema, copying every field, per request),
    parsed by ``Parser``."""

    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)


def platform() -> Platform:
    return current_app.extensions["mlplatform"]


def caller() -> Identity:
    identity = g.identity
    assert identity is not None, "view reached without an identity: its permission is public"
    return identity


def authorized_project() -> Project:
    """The project the route's permission check loaded (project-scoped routes only)."""
    project = g.project
    assert project is not None, "view reached without a project: its permission is not project-scoped"
    return project


class PageArgs(Schema):
    page_size = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))
    page_token = fields.String(load_default=None)


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    """A ``{"items": [...], "next_page_token": ...}`` schema for ``item``."""
    return Schema.from_dict(
        {"items": fields.List(fields.Nested(item)), "next_page_token": fields.String(allow_none=True)},
        name=name,
    )


def page_body(page: Any) -> dict[str, Any]:
    return {"items": page.items, "next_page_token": page.next_page_token}


def download_response(download: Any, chunk_size: int = 1024 * 1024) -> Response:
    """A streamed response for a ``services.artifacts.Download``: chunks, type and length."""

    def chunks() -> Iterator[bytes]:
        with download.stream as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    response = Response(stream_with_context(chunks()), content_type=download.content_type)
    response.content_length = download.size
    return response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response built without a schema pass (``wire_json``: orjson, numpy, NaN as null)."""
    return Response(wire_json.dumps(body), status=status, headers=headers, mimetype="application/json")
