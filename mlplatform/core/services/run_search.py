"""Run search: an MLflow-style filter and order grammar compiled to SQL joins.

Filter grammar (clauses joined by ``AND`` only, like MLflow)::

    filter  := clause ("AND" clause)*
    clause  := entity "." key op value  |  entity "." key ["NOT"] "IN" "(" value ("," value)* ")"
    entity  := metrics | params | tags | attributes     (singular forms and ``run`` also work)
    key     := bare word (letters, digits, _ - . / :)  |  `any text`  |  "any text"
    op      := = | != | < | <= | > | >= | LIKE | ILIKE
    value   := 'string' | "string" | number

    metrics.acc > 0.9 AND params.lr = '0.01' AND tags.team LIKE 'ml%'
    AND attributes.status = 'finished' AND metrics.`val loss` <= 0.2

Metrics compare numbers with the latest value (``latest_metrics``); params, tags and text
attributes compare strings (``LIKE`` is case-sensitive on every database, ``ILIKE`` is not;
``\\`` escapes ``%`` and ``_``); ``attributes.start_time``/``end_time`` take milliseconds since
the epoch or an ISO 8601 string. A clause on a key a run does not have excludes the run.
``order_by`` items are ``entity.key [ASC|DESC]``; runs without the key (or with NaN) sort
last either way, then ``start_time DESC, id``.

Each referenced metric, param or tag key adds exactly one join (inner for filters, outer
for an order key that is not filtered on); nothing is filtered in Python. A page is two
queries: the runs (Core rows, no ORM objects), then their params, tags and latest metrics. A syntax error is
``InvalidInput`` whose message and ``errors[field]["position"]`` give the character offset.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, select
from sqlalchemy.orm import Session

from mlplatform.core import storable
from mlplatform.core.db.tracking import Experiment, Run
from mlplatform.core.errors import InvalidInput
from mlplatform.core.services import access
from mlplatform.core.services.pagination import MAX_PAGE_SIZE, Page, decode_token, encode_token
from mlplatform.core.services.tracking_runs import RUN_RECORD_COLUMNS, RunRecord, RunView, run_views
from mlplatform.core.services.tracking_writes import latest_table, params_table, projects_table, tags_table

ENTITIES = {
    "metrics": "metrics",
    "metric": "metrics",
    "params": "params",
    "param": "params",
    "parameters": "params",
    "parameter": "params",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
TEXT_ATTRIBUTES = {
    "status": Run.status,
    "name": Run.name,
    "run_name": Run.name,
    "run_id": Run.id,
    "id": Run.id,
    "user": Run.user,
    "parent_run_id": Run.parent_run_id,
    "source_git_commit": Run.source_git_commit,
    "source_entry_point": Run.source_entry_point,
    "entry_point": Run.source_entry_point,
    "lifecycle_stage": Run.lifecycle_stage,
}
TIME_ATTRIBUTES = {"start_time": Run.start_time, "end_time": Run.end_time}
NUMBER_ATTRIBUTES = {"experiment_id": Run.experiment_id}
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
TEXT_OPERATORS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
NUMBER_OPERATORS = (*COMPARISONS, "IN", "NOT IN")
RUN_VIEWS = ("active", "deleted", "all")

TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.])
      | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
      | (?P<backtick>`[^`]*`)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),.])
      | (?P<word>[A-Za-z_][\w\-/:]*)
      | (?P<bare>[\w\-/:]+)
    """,
    re.VERBOSE,
)


class FilterSyntaxError(InvalidInput):
    """A filter or order_by that does not parse; ``position`` is the character offset."""

    def __init__(self, field: str, text: str, position: int, detail: str) -> None:
        found = repr(text[position : position + 20]) if position < len(text) else "the end"
        message = f"invalid {field} at position {position}: {detail}, found {found}"
        super().__init__(message, errors={field: {"position": position, "message": message}})
        self.position = position


@dataclass(frozen=True)
class Token:
    kind: str  # number | string | name | op | punct | word | end
    text: str
    value: Any
    pos: int


@dataclass(frozen=True)
class Clause:
    entity: str
    key: str
    op: str
    value: Any  # a scalar, or a tuple for IN / NOT IN
    pos: int


@dataclass(frozen=True)
class OrderKey:
    entity: str
    key: str
    descending: bool
    pos: int


def _unquote(text: str) -> str:
    """Strip the quotes; a doubled or backslashed quote is a quote. Other backslashes stay,
    so LIKE patterns keep their escapes (``'ml\\_%'``)."""
    quote, body = text[0], text[1:-1]
    return body.replace(quote * 2, quote).replace("\\" + quote, quote)


def tokenize(text: str, field: str = "filter") -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None:
            raise FilterSyntaxError(field, text, pos, "unexpected character")
        kind, raw = match.lastgroup or "", match.group()
        if kind == "number":
            tokens.append(Token("number", raw, float(raw) if any(c in raw for c in ".eE") else int(raw), pos))
        elif kind == "string":
            tokens.append(Token("string", raw, _unquote(raw), pos))
        elif kind == "backtick":
            tokens.append(Token("name", raw, raw[1:-1], pos))
        elif kind == "op":
            tokens.append(Token("op", raw, "!=" if raw == "<>" else raw, pos))
        elif kind in ("word", "bare"):
            tokens.append(Token("word", raw, raw, pos))
        elif kind == "punct":
            tokens.append(Token("punct", raw, raw, pos))
        pos = match.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, field: str) -> None:
        self.text, self.field = text, field
        self.tokens = tokenize(text, field)
        self.i = 0

    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, detail: str, token: Token | None = None) -> FilterSyntaxError:
        return FilterSyntaxError(self.field, self.text, (token or self.peek).pos, detail)

    def is_word(self, word: str) -> bool:
        return self.peek.kind == "word" and self.peek.text.upper() == word

    def identifier(self) -> tuple[str, str, int]:
        """``entity.key``; the key may be a bare word with dots, backticked or double-quoted."""
        start = self.take()
        if start.kind != "word" or start.text.lower() not in ENTITIES:
            raise self.fail("expected metrics., params., tags. or attributes.", start)
        if not (self.peek.kind == "punct" and self.peek.text == "."):
            raise self.fail(f"expected '.' after {start.text!r}")
        self.take()
        token = self.take()
        if token.kind == "name" or (token.kind == "string" and token.text.startswith('"')):
            key = token.value
        elif token.kind in ("word", "number"):
            key = token.text
            # A bare key may contain dots: metrics.val.loss
            while (
                self.peek.kind == "punct"
                and self.peek.text == "."
                and self.tokens[self.i + 1].kind in ("word", "number")
            ):
                self.take()
                key += "." + self.take().text
        else:
            raise self.fail('expected a key (a word, `backticked` or "quoted")', token)
        if not key:
            raise self.fail("the key is empty", token)
        return ENTITIES[start.text.lower()], key, start.pos

    def literal(self) -> Any:
        token = self.take()
        if token.kind not in ("string", "number"):
            raise self.fail("expected a value: a 'quoted string' or a number", token)
        return token.value

    def clause(self) -> Clause:
        entity, key, pos = self.identifier()
        token = self.peek
        if token.kind == "op":
            self.take()
            return Clause(entity, key, token.value, self.literal(), pos)
        negate = False
        if self.is_word("NOT"):
            self.take()
            negate = True
            if not self.is_word("IN"):
                raise self.fail("expected IN after NOT")
        if self.is_word("LIKE") or self.is_word("ILIKE"):
            if negate:
                raise self.fail("NOT is only supported before IN")
            op = self.take().text.upper()
            return Clause(entity, key, op, self.literal(), pos)
        if self.is_word("IN"):
            self.take()
            if not (self.peek.kind == "punct" and self.peek.text == "("):
                raise self.fail("expected '(' after IN")
            self.take()
            values = [self.literal()]
            while self.peek.kind == "punct" and self.peek.text == ",":
                self.take()
                values.append(self.literal())
            if not (self.peek.kind == "punct" and self.peek.text == ")"):
                raise self.fail("expected ',' or ')' in the IN list")
            self.take()
            return Clause(entity, key, "NOT IN" if negate else "IN", tuple(values), pos)
        raise self.fail("expected an operator (= != < <= > >= LIKE ILIKE IN)")

    def filter(self) -> list[Clause]:
        clauses = [self.clause()]
        while self.peek.kind != "end":
            if self.is_word("OR"):
                raise self.fail("OR is not supported: clauses are joined with AND only")
            if not self.is_word("AND"):
                raise self.fail("expected AND between clauses")
            self.take()
            clauses.append(self.clause())
        return clauses

    def order_key(self) -> OrderKey:
        entity, key, pos = self.identifier()
        descending = False
        if self.is_word("DESC") or self.is_word("ASC"):
            descending = self.take().text.upper() == "DESC"
        if self.peek.kind != "end":
            raise self.fail("expected ASC, DESC or the end of the order_by item")
        return OrderKey(entity, key, descending, pos)


def parse_filter(text: str | None) -> list[Clause]:
    if not text or not text.strip():
        return []
    clauses = _Parser(text, "filter").filter()
    for clause in clauses:
        _check_clause(text, clause)
    return clauses


def parse_order_by(items: Sequence[str] | None) -> list[OrderKey]:
    keys = []
    for item in items or []:
        key = _Parser(item, "order_by").order_key()
        if key.entity == "attributes" and key.key not in {**TEXT_ATTRIBUTES, **TIME_ATTRIBUTES, **NUMBER_ATTRIBUTES}:
            raise FilterSyntaxError("order_by", item, key.pos, f"unknown attribute {key.key!r}")
        keys.append(key)
    return keys


def _check_clause(text: str, clause: Clause) -> None:
    values = clause.value if isinstance(clause.value, tuple) else (clause.value,)
    numbers = all(isinstance(v, (int, float)) for v in values)
    strings = all(isinstance(v, str) for v in values)
    kind = None
    if clause.entity == "metrics":
        kind = "number"
    elif clause.entity in ("params", "tags"):
        kind = "text"
    elif clause.key in TEXT_ATTRIBUTES:
        kind = "text"
    elif clause.key in NUMBER_ATTRIBUTES:
        kind = "number"
    elif clause.key in TIME_ATTRIBUTES:
        kind = "time"
    else:
        known = ", ".join(sorted({**TEXT_ATTRIBUTES, **TIME_ATTRIBUTES, **NUMBER_ATTRIBUTES}))
        raise FilterSyntaxError("filter", text, clause.pos, f"unknown attribute {clause.key!r} (known: {known})")
    allowed = TEXT_OPERATORS if kind == "text" else NUMBER_OPERATORS
    if clause.op not in allowed:
        raise FilterSyntaxError(
            "filter",
            text,
            clause.pos,
            f"{clause.op} does not apply to {clause.entity}.{clause.key}; use {' '.join(allowed)}",
        )
    if kind == "number" and not numbers:
        raise FilterSyntaxError("filter", text, clause.pos, f"{clause.entity}.{clause.key} compares with numbers")
    huge = next((v for v in values if storable.problem(v)), None) if kind == "number" else None
    if huge is not None:
        raise FilterSyntaxError(
            "filter", text, clause.pos, f"{huge} is outside the 64-bit integer range (write a float, e.g. 1e30)"
        )
    if kind == "text" and not strings:
        raise FilterSyntaxError(
            "filter", text, clause.pos, f"{clause.entity}.{clause.key} compares with 'quoted strings'"
        )
    if kind == "time":
        for value in values:
            try:
                _as_time(value)
            except (ValueError, OverflowError, OSError):  # not a time, or past what datetime holds
                raise FilterSyntaxError(
                    "filter", text, clause.pos, f"{clause.key} takes milliseconds since the epoch or an ISO 8601 time"
                ) from None


def _as_time(value: Any) -> dt.datetime:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _like_to_glob(pattern: str) -> str:
    """A LIKE pattern as an SQLite GLOB (which, unlike SQLite's LIKE, is case-sensitive)."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            i += 1
            char = pattern[i]
            out.append(f"[{char}]" if char in "*?[" else char)
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            out.append(f"[{char}]" if char in "*?[" else char)
        i += 1
    return "".join(out)


def _condition(column: Any, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    if op == "IN":
        return column.in_(value)
    if op == "NOT IN":
        return column.not_in(value)
    if op == "LIKE":
        return column.op("GLOB")(_like_to_glob(value)) if dialect == "sqlite" else column.like(value, escape="\\")
    if op == "ILIKE":
        return column.ilike(value, escape="\\")
    return {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[op](value)


#: Distinct metric, param and tag keys one search may use (filter and order together): each is a
#: join, and SQLite joins at most 64 tables.
MAX_SEARCH_KEYS = 40


class _Joins:
    """One aliased join per (entity, key): inner for filters, outer for order-only keys."""

    TABLES = {"metrics": latest_table, "params": params_table, "tags": tags_table}

    def __init__(self) -> None:
        self.aliases: dict[tuple[str, str], Any] = {}
        self.outer: set[tuple[str, str]] = set()

    def column(self, entity: str, key: str, *, outer: bool = False) -> Any:
        if (entity, key) not in self.aliases:
            if len(self.aliases) >= MAX_SEARCH_KEYS:
                raise InvalidInput(
                    f"a search can use at most {MAX_SEARCH_KEYS} metric, param and tag keys (filter and order_by "
                    "together)",
                    errors={"filter": [f"more than {MAX_SEARCH_KEYS} keys"]},
                )
            self.aliases[(entity, key)] = self.TABLES[entity].alias()
            if outer:
                self.outer.add((entity, key))
        return self.aliases[(entity, key)].c.value

    def may_be_null(self, entity: str, key: str) -> bool:
        """Whether an order key can be NULL: only through an outer join, since every filter
        on a key (any comparison, LIKE or IN) is false for NULL and its join is inner."""
        return (entity, key) in self.outer

    def apply(self, query: Select[Any]) -> Select[Any]:
        for (entity, key), alias in self.aliases.items():
            on = and_(alias.c.run_id == Run.id, alias.c.key == key)
            query = query.outerjoin(alias, on) if (entity, key) in self.outer else query.join(alias, on)
        return query


def _attribute(key: str) -> Any:
    return {**TEXT_ATTRIBUTES, **TIME_ATTRIBUTES, **NUMBER_ATTRIBUTES}[key]


def build_query(
    project_id: Any,
    experiment_ids: Sequence[int] | None,
    clauses: Sequence[Clause],
    order: Sequence[OrderKey],
    run_view: str,
    dialect: str,
) -> Select[Any]:
    """The SELECT of matching runs (the ``RunRecord`` columns), ordered, without paging.
    ``project_id`` is an id or a scalar subquery.

    An order key that no NULL can reach (a filtered metric, param or tag) is ordered by its
    value alone, so PostgreSQL may walk ``ix_latest_metrics_key_value`` in order and stop at
    the page's end instead of sorting every match; other keys put NULLs last explicitly."""
    query = select(*RUN_RECORD_COLUMNS).where(Run.project_id == project_id)
    if experiment_ids:
        query = query.where(Run.experiment_id.in_(experiment_ids))
    else:
        live = select(Experiment.id).where(Experiment.project_id == project_id, Experiment.lifecycle_stage != "deleted")
        query = query.where(Run.experiment_id.in_(live))
    if run_view != "all":
        query = query.where(Run.lifecycle_stage == run_view)
    joins = _Joins()
    for clause in clauses:
        if clause.entity == "attributes":
            column = _attribute(clause.key)
            value = clause.value
            if clause.key in TIME_ATTRIBUTES:
                value = tuple(map(_as_time, value)) if isinstance(value, tuple) else _as_time(value)
            query = query.where(_condition(column, clause.op, value, dialect))
        else:
            query = query.where(_condition(joins.column(clause.entity, clause.key), clause.op, clause.value, dialect))
    ordering: list[Any] = []
    for key in order:
        if key.entity == "attributes":
            column, nullable = _attribute(key.key), True
        else:
            column = joins.column(key.entity, key.key, outer=True)
            nullable = joins.may_be_null(key.entity, key.key)
        ordering += [column.is_(None)] if nullable else []
        ordering.append(column.desc() if key.descending else column.asc())
    query = joins.apply(query)
    return query.order_by(*ordering, Run.start_time.desc(), Run.id)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def search_runs(
    session: Session,
    project_name: str,
    *,
    experiment_ids: Sequence[int] | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    run_view: str = "active",
    page_size: int = 100,
    page_token: str | None = None,
) -> Page[RunView]:
    """Runs of the project (or of ``experiment_ids``; default: every experiment not deleted)
    matching ``filter``, in ``order_by`` order, with params, tags and latest metrics.

    Page tokens carry an offset and a fingerprint of the query: a token is refused (400) if
    the filter, order or experiments changed between pages."""
    if run_view not in RUN_VIEWS:
        raise InvalidInput(
            f"unknown run_view {run_view!r}", errors={"run_view": [f"must be one of {', '.join(RUN_VIEWS)}"]}
        )
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"page_size must be between 1 and {MAX_PAGE_SIZE}", errors={"page_size": [f"1..{MAX_PAGE_SIZE}"]}
        )
    clauses = parse_filter(filter)
    order = parse_order_by(order_by)
    fingerprint = _fingerprint(sorted(experiment_ids or []), filter, list(order_by or []), run_view)
    offset = 0
    if page_token:
        token = decode_token(page_token)
        if not isinstance(token, dict) or token.get("q") != fingerprint or not isinstance(token.get("o"), int):
            raise InvalidInput(
                "page_token belongs to another search (filter, order or experiments changed)",
                errors={"page_token": ["invalid"]},
            )
        offset = token["o"]
    project_id = select(projects_table.c.id).where(projects_table.c.name == project_name).scalar_subquery()
    query = build_query(project_id, experiment_ids, clauses, order, run_view, session.get_bind().dialect.name)
    runs = [RunRecord(*row) for row in session.connection().execute(query.offset(offset).limit(page_size + 1)).all()]
    if not runs:
        access.get_project(session, project_name)  # NotFound if the project is missing
    more = len(runs) > page_size
    runs = runs[:page_size]
    next_token = encode_token({"o": offset + page_size, "q": fingerprint}) if more else None
    return Page(run_views(session, runs), next_token)
