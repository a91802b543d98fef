"""The Experiments page: a project's experiments and the runs table (filter, sort, columns, pages)."""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from api.portal.runs_table import (
    NAME_COLUMN,
    PAGE_SIZES,
    STARTED_COLUMN,
    STATUS_COLUMN,
    SearchError,
    TableState,
    choose_columns,
)
from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.errors import InvalidInput
from mlplatform.core.services import access, run_search
from mlplatform.core.services import tracking as tracking_service
from mlplatform.core.services.pagination import Page
from mlplatform.core.services.tracking_runs import RunView

MAX_EXPERIMENTS = 500
MAX_COMPARE = 10


@bp.route("/projects/<project>/experiments")
@requires(access.project_role("viewer"))
def experiments(project: str) -> Any:
    """Runs of the project's experiments: pick experiments and columns, filter, sort, page."""
    state = TableState.from_args(request.args)
    error: SearchError | None = None
    page: Page[RunView] = Page([], None)
    with platform().db.read() as session:
        listed = tracking_service.list_experiments(session, project, view="all", page_size=MAX_EXPERIMENTS).items
        try:
            page = run_search.search_runs(
                session,
                project,
                experiment_ids=list(state.experiment_ids) or None,
                filter=state.filter,
                order_by=[state.order] if state.order else None,
                run_view=state.view,
                page_size=state.page_size,
                page_token=state.page_token,
            )
        except InvalidInput as exc:
            error = SearchError.from_error(exc, state)
    shown = [view.experiment for view in listed if view.experiment.lifecycle_stage != "deleted"]
    names = {view.experiment.id: view.experiment.name for view in listed}
    body = render_template(
        "portal/experiments.html",
        state=state,
        experiments=shown,
        experiment_names=names,
        selected=set(state.experiment_ids),
        runs=page.items,
        next_page_token=page.next_page_token,
        columns=choose_columns(state, page.items),
        error=error,
        page_sizes=PAGE_SIZES,
        max_compare=MAX_COMPARE,
        name_column=NAME_COLUMN,
        status_column=STATUS_COLUMN,
        started_column=STARTED_COLUMN,
    )
    return body, 400 if error else 200
