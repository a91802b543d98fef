"""Keyset pagination with opaque page tokens: a stable order even while rows are added."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from mlplatform.core.errors import InvalidInput

T = TypeVar("T")
MAX_PAGE_SIZE = 1000


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_page_token: str | None


def encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_token(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidInput("page_token is not a token this server issued", errors={"page_token": ["invalid"]}) from None


def paginate(
    session: Session, query: Select[Any], key: InstrumentedAttribute[Any], page_size: int, page_token: str | None
) -> Page[Any]:
    """Rows of ``query`` ordered by the unique ``key``, ``page_size`` at a time."""
    if page_token:
        query = query.where(key > decode_token(page_token))
    rows = list(session.scalars(query.order_by(key).limit(page_size + 1)))
    more = len(rows) > page_size
    rows = rows[:page_size]
    token = encode_token(getattr(rows[-1], key.key)) if more and rows else None
    return Page(rows, token)
