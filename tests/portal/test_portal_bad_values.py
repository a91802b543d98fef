"""No query or form value makes a portal page answer 500.

Every portal page and form (its rules from the app's URL map, paths filled from a world with a
registered, deployed version) gets each query argument and form field the pages read, one at a
time, set to a value a person can type or a link can carry: numbers past 64 bits, negative and
fractional numbers, words where numbers go, non-finite and huge floats, lists of numbers. Each answer must be
below 500 (an error page, a redirect back to the form, or the page itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api_client import Api
from tests.portal.world import API, PROJECT, P, World, csrf, make_world

#: Query arguments and form fields the portal's pages read (request.args / request.form).
QUERY_ARGS = [
    "cols", "diff", "environment", "filter", "max_points", "metric", "model", "next", "order", "page_size",
    "page_token", "path", "q", "range", "run_id", "version", "view", "experiment", "key", "param", "run",
]  # fmt: skip
FORM_FIELDS = [
    "alias", "artifact_path", "bake_seconds", "environment", "model", "run_id", "steps", "strategy", "version",
    "weight", "approvals", "channels", "comparison", "enabled", "feature", "for_windows", "metric", "name",
    "promotion_only", "scope", "severity", "target", "threshold", "reason", "comment",
]  # fmt: skip
VALUES = [str(2**64), str(2**40), "-1", "1.5", "abc", "-inf", "1e308", "1,2,999999999999999999999"]


@pytest.fixture
def world(make_api: Callable[..., Api], db_kind: str, tmp_path: Path) -> World:
    world = make_world(make_api, db_kind, tmp_path)
    world.sign_in()
    world.register()
    world.deploy()
    return world


def pages(world: World) -> list[tuple[str, str]]:
    """(method, path) of every portal rule, with real values in its path."""
    promotion = world.api.post(
        f"{API}/models/churn/promotions", json={"version": 1, "environment": "production"}
    ).json.get("id", 1)
    values = {
        "project": PROJECT,
        "model": "churn",
        "version": "1",
        "environment": "staging",
        "alias": "champion",
        "run_id": world.run_id,
        "path": "model/model.joblib",
        "rule_id": "1",
        "alert_id": "1",
        "promotion_id": str(promotion),
    }
    found = []
    for rule in world.api.app.url_map.iter_rules():
        if not rule.endpoint.startswith("portal.") or rule.endpoint in ("portal.static", "portal.logout"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: values[m.group(1)], rule.rule)
        found += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


def test_no_query_or_form_value_gives_a_500(world: World) -> None:
    token = csrf(world.page(P))
    checked = 0
    for method, path in pages(world):
        if method == "GET":
            for name in QUERY_ARGS:
                for value in VALUES:
                    response = world.client.get(path, query_string={name: value})
                    response.close()  # a streamed download holds its request context until closed
                    assert response.status_code < 500, (path, name, value[:40], response.status_code)
                    checked += 1
        elif path != "/login":
            for name in FORM_FIELDS:
                for value in VALUES:
                    response = world.client.post(path, data={"csrf_token": token, name: value})
                    assert response.status_code < 500, (path, name, value[:40], response.status_code)
                    checked += 1
    assert checked > 3000
