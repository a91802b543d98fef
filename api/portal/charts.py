"""Metric charts: one JSON endpoint the pages' script fetches, over the metric history service.

The page renders a chart config (which runs, which keys, the endpoint's URL) into a
``<script type="application/json">`` block; ``portal.js`` fetches every series in one call,
downsampled with ``max_points`` (bucketed min/max, so spikes survive), and draws one Chart.js
chart per key with one line per run. The endpoint answers errors as JSON, not as a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response, jsonify, request, url_for

from api.portal.views import bp, platform
from api.security import requires
from mlplatform.core.errors import InvalidInput, MLPlatformError
from mlplatform.core.services import access, metric_history
from mlplatform.core.services.tracking_batch import to_wire
from mlplatform.core.services.tracking_runs import RunView

DEFAULT_POINTS = 500
MAX_POINTS = 5000
MAX_RUNS = 10
MAX_KEYS = 50


def chart_config(project: str, views: Sequence[RunView], keys: Sequence[str]) -> dict[str, Any]:
    """What ``portal.js`` needs to draw ``keys`` for ``views``: rendered into the page as JSON."""
    return {
        "url": url_for("portal.history", project=project),
        "runs": [{"id": view.run.id, "name": view.run.name} for view in views],
        "keys": list(keys)[:MAX_KEYS],
        "max_points": DEFAULT_POINTS,
    }


@bp.route("/projects/<project>/portal-api/history")
@requires(access.project_role("viewer"))
def history(project: str) -> Response | tuple[Response, int]:
    """Downsampled series for every ``run`` x ``key`` asked for (both repeatable)."""
    try:
        runs = list(dict.fromkeys(request.args.getlist("run")))
        keys = list(dict.fromkeys(request.args.getlist("key")))
        if not runs or not keys or len(runs) > MAX_RUNS or len(keys) > MAX_KEYS:
            raise InvalidInput(f"give 1 to {MAX_RUNS} run= and 1 to {MAX_KEYS} key= parameters")
        max_points = min(
            max(request.args.get("max_points", DEFAULT_POINTS, type=int), metric_history.MIN_MAX_POINTS), MAX_POINTS
        )
        with platform().db.read() as session:
            series = metric_history.compare(session, project, runs, keys, max_points)
    except MLPlatformError as exc:
        return jsonify({"message": exc.message}), exc.status
    return jsonify(
        {
            "series": [
                {
                    "run_id": item["run_id"],
                    "key": item["key"],
                    "points": [[step, to_wire(value)] for step, _stamp, value in item["points"]],
                }
                for item in series
            ]
        }
    )
