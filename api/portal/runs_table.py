"""The runs table's state in the URL: experiments, filter, sort, columns, page.

Everything the table shows is in the query string, so a view can be bookmarked, shared and
reloaded, and the filter box works without JavaScript. Column headers link to the same
page sorted by that column (``order_by``); the Next link carries the search's page token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from werkzeug.datastructures import MultiDict

from mlplatform.core import storable
from mlplatform.core.errors import InvalidInput
from mlplatform.core.services import run_search
from mlplatform.core.services.tracking_runs import RunView

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
DEFAULT_COLUMNS = 10  # per kind, when the user has not chosen
BARE_KEY = re.compile(r"^[A-Za-z_][\w\-/:]*(\.[A-Za-z_][\w\-/:]*)*$")


def quote_key(key: str) -> str:
    """A key as the search grammar reads it: bare if it can be, else backticked or double-quoted."""
    if BARE_KEY.match(key):
        return key
    if "`" not in key:
        return f"`{key}`"
    return '"' + key.replace('"', '""') + '"'


@dataclass(frozen=True)
class Column:
    """A sortable column: its header and the ``entity.key`` it orders by."""

    label: str
    order_key: str
    kind: str = "attribute"  # attribute | param | metric
    key: str = ""


NAME_COLUMN = Column("Run", "attributes.name")
STATUS_COLUMN = Column("Status", "attributes.status")
STARTED_COLUMN = Column("Started", "attributes.start_time")


@dataclass(frozen=True)
class TableState:
    """What the runs table shows, parsed from (and written back to) the query string."""

    experiment_ids: tuple[int, ...] = ()
    filter: str = ""
    order: str = ""  # one order_by item, e.g. "metrics.acc DESC"
    view: str = "active"
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = None
    chosen: bool = False  # the user picked the columns (else: the keys present)
    params: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: MultiDict[str, str]) -> TableState:
        try:
            experiment_ids = tuple(int(value) for value in args.getlist("experiment") if value)
            if any(storable.problem(number) for number in experiment_ids):
                raise ValueError("past 64 bits")
        except ValueError:
            raise InvalidInput(
                "experiment must be an experiment id (a number)", errors={"experiment": ["not a number"]}
            ) from None
        view = args.get("view", "active")
        size = args.get("page_size", type=int) or DEFAULT_PAGE_SIZE
        return cls(
            experiment_ids=experiment_ids,
            filter=args.get("filter", "").strip(),
            order=args.get("order", "").strip(),
            view=view if view in run_search.RUN_VIEWS else "active",
            page_size=size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE,
            page_token=args.get("page_token") or None,
            chosen=args.get("cols") == "1",
            params=tuple(dict.fromkeys(k for k in args.getlist("param") if k)),
            metrics=tuple(dict.fromkeys(k for k in args.getlist("metric") if k)),
        )

    def query(self, **changes: Any) -> dict[str, list[Any]]:
        """``url_for`` arguments for this state with ``changes``; a change resets the page unless it sets one."""
        changes.setdefault("page_token", None)
        state = replace(self, **changes)
        items: list[tuple[str, Any]] = [("experiment", e) for e in state.experiment_ids]
        for name, value, default in (
            ("filter", state.filter, ""),
            ("order", state.order, ""),
            ("view", state.view, "active"),
            ("page_size", state.page_size, DEFAULT_PAGE_SIZE),
            ("page_token", state.page_token, None),
        ):
            if value != default:
                items.append((name, value))
        if state.chosen:
            items += [("cols", "1"), *(("param", k) for k in state.params), *(("metric", k) for k in state.metrics)]
        return MultiDict(items).to_dict(flat=False)

    # sorting

    def sort_direction(self, column: Column) -> str | None:
        """ "ascending" or "descending" if the table is sorted by ``column`` (for ``aria-sort``)."""
        try:
            keys = run_search.parse_order_by([self.order]) if self.order else []
        except InvalidInput:
            return None
        if not keys:
            return None
        key = keys[0]
        entity, _, name = column.order_key.partition(".")
        if key.entity == entity and key.key == (column.key or name):
            return "descending" if key.descending else "ascending"
        return None

    def sort_query(self, column: Column) -> dict[str, list[Any]]:
        """The query that sorts by ``column``: ascending first, then descending, then back."""
        direction = "DESC" if self.sort_direction(column) == "ascending" else "ASC"
        return self.query(order=f"{column.order_key} {direction}")


def param_column(key: str) -> Column:
    return Column(key, f"params.{quote_key(key)}", "param", key)


def metric_column(key: str) -> Column:
    return Column(key, f"metrics.{quote_key(key)}", "metric", key)


@dataclass
class Columns:
    """The param and metric columns shown, and every key the chooser offers."""

    params: list[str]
    metrics: list[str]
    available_params: list[str]
    available_metrics: list[str]
    hidden: int = 0  # keys present but left out of the default choice

    @property
    def param_columns(self) -> list[Column]:
        return [param_column(key) for key in self.params]

    @property
    def metric_columns(self) -> list[Column]:
        return [metric_column(key) for key in self.metrics]


def _keys(views: Iterable[RunView], attribute: str) -> list[str]:
    found: dict[str, None] = {}
    for view in views:
        found.update(dict.fromkeys(getattr(view, attribute)))
    return sorted(found)


def choose_columns(state: TableState, views: Sequence[RunView]) -> Columns:
    """The user's choice, or by default the keys present in the runs shown (the first
    ``DEFAULT_COLUMNS`` of each kind, so a run with 200 params does not flood the table)."""
    present_params, present_metrics = _keys(views, "params"), _keys(views, "metrics")
    if state.chosen:
        params, metrics, hidden = list(state.params), list(state.metrics), 0
    else:
        params, metrics = present_params[:DEFAULT_COLUMNS], present_metrics[:DEFAULT_COLUMNS]
        hidden = len(present_params) + len(present_metrics) - len(params) - len(metrics)
    return Columns(
        params,
        metrics,
        sorted({*present_params, *state.params}),
        sorted({*present_metrics, *state.metrics}),
        hidden,
    )


@dataclass(frozen=True)
class SearchError:
    """A search the service refused: the message and, for a syntax error, where it is."""

    field: str
    message: str
    text: str = ""
    position: int | None = None

    @property
    def caret(self) -> str:
        """Spaces then ``^`` under the offending character of ``text``."""
        return " " * (self.position or 0) + "^"

    @classmethod
    def from_error(cls, error: InvalidInput, state: TableState) -> SearchError:
        field_name = next(iter(error.errors), "")
        if isinstance(error, run_search.FilterSyntaxError):
            text = state.filter if field_name == "filter" else state.order
            return cls(field_name, error.message, text, error.position)
        return cls(field_name, error.message)
