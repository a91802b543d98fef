"""Comparing 2 to 10 runs: params side by side with differences marked, metrics overlaid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import g, render_template, request

from api.portal.charts import chart_config
from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.services import access
from mlplatform.core.services import tracking as tracking_service
from mlplatform.core.services import tracking_runs as run_service
from mlplatform.core.services.tracking_runs import RunView

MIN_RUNS, MAX_RUNS = 2, 10


@dataclass(frozen=True)
class Row:
    """One key across the compared runs; ``None`` where a run does not have it (a metric
    whose latest value is NaN is the string ``"NaN"``, so two NaNs compare equal)."""

    key: str
    values: tuple[Any, ...]

    @property
    def differs(self) -> bool:
        return len(set(self.values)) > 1


def rows(views: Sequence[RunView], attribute: str) -> list[Row]:
    """A row per key of ``params``/``tags`` (values) or ``metrics`` (latest values) of ``views``."""
    keys = sorted({key for view in views for key in getattr(view, attribute)})
    if attribute == "metrics":
        return [Row(key, tuple(_latest(v, key) for v in views)) for key in keys]
    return [Row(key, tuple(getattr(v, attribute).get(key) for v in views)) for key in keys]


def _latest(view: RunView, key: str) -> float | str | None:
    if key not in view.metrics:
        return None
    value = view.metrics[key]["value"]
    return "NaN" if value is None else value


@bp.route("/projects/<project>/compare")
@requires(access.project_role("viewer"))
def compare(project: str) -> Any:
    """``?run=<id>&run=<id>...``: 2 to 10 runs side by side."""
    run_ids = list(dict.fromkeys(request.args.getlist("run")))
    if not MIN_RUNS <= len(run_ids) <= MAX_RUNS:
        message = f"Pick {MIN_RUNS} to {MAX_RUNS} runs to compare; {len(run_ids)} {'was' if len(run_ids) == 1 else 'were'} given."
        return render_template("portal/compare.html", views=[], error=message), 400
    with platform().db.read() as session:
        loaded = [tracking_service.load_run(session, g.project, run_id) for run_id in run_ids]
        views = run_service.run_views(session, loaded)
        experiment_ids = sorted({run.experiment_id for run in loaded})
        names = {i: tracking_service.load_experiment(session, g.project, i).name for i in experiment_ids}
    param_rows, metric_rows = rows(views, "params"), rows(views, "metrics")
    return render_template(
        "portal/compare.html",
        views=views,
        experiment_names=names,
        param_rows=param_rows,
        metric_rows=metric_rows,
        tag_rows=rows(views, "tags"),
        only_differences=request.args.get("diff") == "1",
        charts=chart_config(project, views, [row.key for row in metric_rows]),
        error=None,
    )
