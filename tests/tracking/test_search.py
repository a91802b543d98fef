"""Run search: the grammar (each operator, backticks, IN, errors with positions), ordering and pages."""

from __future__ import annotations

from typing import Any

import pytest

from mlplatform.core.services.run_search import Clause, FilterSyntaxError, parse_filter, parse_order_by
from tests.api_client import Api
from tests.tracking.conftest import P, experiment, run


def test_parse_filter() -> None:
    clauses = parse_filter(
        "metrics.acc > 0.9 AND params.lr = '0.01' and tags.team LIKE 'ml%' AND attributes.status = \"finished\" "
        "AND metrics.`val loss` <= -1e-3 AND params.opt IN ('adam', 'sgd') AND tags.x != 'it''s' AND metric.a.b >= 2 "
        "AND run.name NOT IN ('x') AND tags.\"my tag\" ILIKE '%A%'"
    )
    assert [(c.entity, c.key, c.op, c.value) for c in clauses] == [
        ("metrics", "acc", ">", 0.9),
        ("params", "lr", "=", "0.01"),
        ("tags", "team", "LIKE", "ml%"),
        ("attributes", "status", "=", "finished"),
        ("metrics", "val loss", "<=", -1e-3),
        ("params", "opt", "IN", ("adam", "sgd")),
        ("tags", "x", "!=", "it's"),
        ("metrics", "a.b", ">=", 2),
        ("attributes", "name", "NOT IN", ("x",)),
        ("tags", "my tag", "ILIKE", "%A%"),
    ]
    assert parse_filter("") == [] and parse_filter("   ") == []
    assert parse_filter("metrics.m<1")[0] == Clause("metrics", "m", "<", 1, 0)
    order = parse_order_by(["metrics.m0 DESC", "params.`a b`", "attributes.start_time asc"])
    assert [(o.entity, o.key, o.descending) for o in order] == [
        ("metrics", "m0", True),
        ("params", "a b", False),
        ("attributes", "start_time", False),
    ]


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("metrics.acc >", 13, "expected a value"),
        ("metrics.acc 0.9", 12, "expected an operator"),
        ("metrics.acc > 0.9 OR params.a = '1'", 18, "OR is not supported"),
        ("metrics.acc > 0.9 params.a = '1'", 18, "expected AND"),
        ("foo.acc > 1", 0, "expected metrics."),
        ("metrics acc > 1", 8, "expected '.'"),
        ("params.lr = 0.01", 0, "compares with 'quoted strings'"),
        ("metrics.acc = 'high'", 0, "compares with numbers"),
        ("metrics.acc LIKE '1%'", 0, "LIKE does not apply"),
        ("attributes.colour = 'red'", 0, "unknown attribute"),
        ("params.a IN 'x'", 12, "expected '('"),
        ("params.a IN ('x' 'y')", 17, "expected ',' or ')'"),
        ("params.a = 'x' AND tags.b = 'unterminated", 28, "unexpected character"),
        ("attributes.start_time > 'yesterday'", 0, "milliseconds since the epoch"),
        ("metrics.`` > 1", 8, "the key is empty"),
    ],
)
def test_syntax_errors_name_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(FilterSyntaxError) as raised:
        parse_filter(text)
    assert raised.value.position == position, raised.value.message
    assert f"position {position}" in raised.value.message and words in raised.value.message


@pytest.fixture
def runs(tracked: Api) -> dict[str, Any]:
    """Six runs in experiment e1 (and one in e2) with varied metrics, params, tags and statuses."""
    api = tracked
    e1, e2 = experiment(api, "e1"), experiment(api, "e2")
    specs = [
        (
            "r0",
            {"acc": 0.95, "m0": 3},
            {"lr": "0.01", "opt": "adam"},
            {"team": "ml-core", "my tag": "Alpha"},
            "finished",
        ),
        ("r1", {"acc": 0.85, "m0": 1}, {"lr": "0.1", "opt": "sgd"}, {"team": "ML-ops"}, "running"),
        ("r2", {"acc": 0.91}, {"lr": "0.01", "opt": "sgd"}, {"team": "data"}, "finished"),
        ("r3", {"m0": 2}, {"lr": "0.001"}, {}, "failed"),
        ("r4", {"acc": "NaN", "m0": 5}, {"lr": "0.01"}, {"team": "ml_x"}, "running"),
        ("r5", {}, {}, {"team": "m%l"}, "killed"),
    ]
    ids: dict[str, str] = {}
    for i, (name, metrics, params, tags, status) in enumerate(specs):
        body = run(
            api,
            e1,
            name=name,
            start_time=f"2026-01-01T00:00:{i:02d}+00:00",
            params=params,
            tags=tags,
            metrics=[{"key": k, "value": v, "step": 0} for k, v in metrics.items()],
        )
        ids[name] = body["id"]
        if status != "running":
            api.patch(f"{P}/runs/{body['id']}", json={"status": status})
    ids["other"] = run(api, e2, name="other", params={"lr": "0.01"}, metrics=[{"key": "acc", "value": 0.99}])["id"]
    return {"api": api, "e1": e1, "e2": e2, "ids": ids}


def names(data: dict[str, Any], filter: str = "", order_by: list[str] | None = None, **body: Any) -> list[str]:
    body = {"experiment_ids": [data["e1"]], "filter": filter, "order_by": order_by or [], **body}
    response = data["api"].post(f"{P}/runs/search", json=body, token="viewer")
    assert response.status_code == 200, response.json
    return [r["name"] for r in response.json["items"]]


def test_each_operator(runs: dict[str, Any]) -> None:
    d = runs
    assert names(d, "metrics.acc > 0.9") == ["r2", "r0"]  # default order: newest first
    assert names(d, "metrics.acc >= 0.91") == ["r2", "r0"]
    assert names(d, "metrics.acc < 0.9") == ["r1"]  # NaN and missing never match
    assert names(d, "metrics.acc <= 0.85") == ["r1"]
    assert names(d, "metrics.m0 = 2") == ["r3"]
    assert names(d, "metrics.m0 != 2") == ["r4", "r1", "r0"]
    assert names(d, "metrics.m0 IN (1, 5)") == ["r4", "r1"]
    assert names(d, "params.lr = '0.01'") == ["r4", "r2", "r0"]
    assert names(d, "params.lr != '0.01'") == ["r3", "r1"]
    assert names(d, "params.opt IN ('adam', 'sgd')") == ["r2", "r1", "r0"]
    assert names(d, "params.lr NOT IN ('0.01', '0.1')") == ["r3"]
    assert names(d, "tags.team LIKE 'ml%'") == ["r4", "r0"]  # case-sensitive on both databases
    assert names(d, "tags.team ILIKE 'ml%'") == ["r4", "r1", "r0"]
    assert names(d, "tags.team LIKE 'ml_%'") == ["r4", "r0"]
    assert names(d, r"tags.team LIKE 'ml\_%'") == ["r4"]  # escaped wildcard
    assert names(d, r"tags.team LIKE 'm\%l'") == ["r5"]
    assert names(d, "tags.`my tag` = 'Alpha'") == ["r0"]
    assert names(d, "attributes.status = 'finished'") == ["r2", "r0"]
    assert names(d, "attributes.status IN ('failed', 'killed')") == ["r5", "r3"]
    assert names(d, "attributes.name LIKE 'r%' AND attributes.status != 'running'") == ["r5", "r3", "r2", "r0"]
    assert names(
        d, "metrics.acc > 0.8 AND params.lr = '0.01' AND tags.team LIKE 'ml%' AND attributes.status = 'finished'"
    ) == ["r0"]
    assert names(d, "metrics.acc > 0.9 AND metrics.acc < 0.93") == ["r2"]  # one join for both clauses
    start = "2026-01-01T00:00:03+00:00"
    assert names(d, f"attributes.start_time >= '{start}'") == ["r5", "r4", "r3"]
    assert names(d, "attributes.start_time < 1767225602000") == ["r1", "r0"]  # milliseconds since the epoch
    assert names(d, f"attributes.run_id = '{d['ids']['r3']}'") == ["r3"]


def test_ordering_puts_missing_and_nan_last(runs: dict[str, Any]) -> None:
    d = runs
    assert names(d, order_by=["metrics.m0 DESC"]) == ["r4", "r0", "r3", "r1", "r5", "r2"]
    assert names(d, order_by=["metrics.m0"]) == ["r1", "r3", "r0", "r4", "r5", "r2"]
    assert names(d, order_by=["metrics.acc DESC"]) == ["r0", "r2", "r1", "r5", "r4", "r3"]  # NaN (r4) with the missing
    assert names(d, order_by=["params.lr ASC", "attributes.name DESC"]) == ["r3", "r4", "r2", "r0", "r1", "r5"]
    assert names(d, "metrics.acc > 0", order_by=["metrics.acc ASC"]) == ["r1", "r2", "r0"]
    assert names(d, order_by=["attributes.start_time"]) == ["r0", "r1", "r2", "r3", "r4", "r5"]


def test_a_filtered_order_key_breaks_ties_by_start_time(tracked: Api) -> None:
    """An order key that is also filtered on is ordered by its value alone (no NULL can
    reach it); ties still go newest first, then by id, and pages follow the same order."""
    api = tracked
    eid = experiment(api)
    for i, (name, value) in enumerate([("a", 1.0), ("b", 2.0), ("c", 1.0), ("d", 1.0), ("e", "NaN"), ("f", 0.5)]):
        run(
            api,
            eid,
            name=name,
            start_time=f"2026-02-01T00:00:{i:02d}+00:00",
            params={"p": "x"},
            metrics=[{"key": "m", "value": value}],
        )
    search = {"experiment_ids": [eid], "filter": "metrics.m > 0.7 AND params.p = 'x'"}

    def order(direction: str, page_size: int = 100) -> list[str]:
        seen, token = [], None
        while True:
            body = {**search, "order_by": [f"metrics.m {direction}"], "page_size": page_size, "page_token": token}
            page = api.post(f"{P}/runs/search", json=body).json
            seen += [r["name"] for r in page["items"]]
            token = page["next_page_token"]
            if token is None:
                return seen

    assert order("DESC") == ["b", "d", "c", "a"] == order("DESC", page_size=1)
    assert order("ASC") == ["d", "c", "a", "b"] == order("ASC", page_size=3)


def test_pages_scope_and_views(runs: dict[str, Any]) -> None:
    d = runs
    api = d["api"]
    seen, token = [], None
    while True:
        body = {"experiment_ids": [d["e1"]], "order_by": ["metrics.m0 DESC"], "page_size": 4, "page_token": token}
        page = api.post(f"{P}/runs/search", json=body).json
        seen += [r["name"] for r in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == ["r4", "r0", "r3", "r1", "r5", "r2"]
    first = api.post(f"{P}/runs/search", json={"page_size": 2}).json
    wrong = api.post(
        f"{P}/runs/search", json={"page_size": 2, "filter": "metrics.acc > 0", "page_token": first["next_page_token"]}
    )
    assert wrong.status_code == 400 and "page_token" in wrong.json["errors"]
    everything = api.post(f"{P}/runs/search", json={"filter": "params.lr = '0.01'"}).json["items"]
    assert sorted(r["name"] for r in everything) == ["other", "r0", "r2", "r4"]  # every live experiment
    item = next(r for r in everything if r["name"] == "r0")
    assert item["params"] == {"lr": "0.01", "opt": "adam"} and item["metrics"]["acc"]["value"] == 0.95
    assert next(r for r in everything if r["name"] == "r4")["metrics"]["acc"]["value"] == "NaN"
    api.delete(f"{P}/runs/{d['ids']['r0']}")
    assert names(d, "params.lr = '0.01'") == ["r4", "r2"]
    assert names(d, "params.lr = '0.01'", run_view="deleted") == ["r0"]
    assert len(names(d, "params.lr = '0.01'", run_view="all")) == 3
    api.delete(f"{P}/experiments/{d['e2']}")
    remaining = api.post(f"{P}/runs/search", json={"filter": "params.lr = '0.01'"}).json["items"]
    assert sorted(r["name"] for r in remaining) == ["r2", "r4"]


def test_search_errors_are_400_with_position(runs: dict[str, Any]) -> None:
    api = runs["api"]
    response = api.post(f"{P}/runs/search", json={"filter": "metrics.acc > 0.9 AND params.lr ~ '1'"})
    assert response.status_code == 400
    assert response.json["errors"]["filter"]["position"] == 32
    assert "position 32" in response.json["message"]
    bad_order = api.post(f"{P}/runs/search", json={"order_by": ["metrics.acc DOWN"]})
    assert bad_order.status_code == 400 and bad_order.json["errors"]["order_by"]["position"] == 12
    assert api.post(f"{P}/runs/search", json={"order_by": ["attributes.nope"]}).status_code == 400


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"filter": "attributes.start_time > 99999999999999999999"}, "milliseconds since the epoch"),
        ({"filter": "attributes.start_time > -99999999999999999999"}, "milliseconds since the epoch"),
        ({"filter": "attributes.end_time < 1e999"}, "milliseconds since the epoch"),
        ({"filter": "metrics.acc = 99999999999999999999999"}, "64-bit integer range"),
        ({"filter": "attributes.experiment_id IN (1, 99999999999999999999999)"}, "64-bit integer range"),
        ({"filter": " AND ".join(f"metrics.m{i} > 0" for i in range(41))}, "at most 40"),
        (
            {
                "filter": " AND ".join(f"metrics.m{i} > 0" for i in range(36)),
                "order_by": [f"params.p{i}" for i in range(5)],
            },
            "at most 40",
        ),
    ],
)
def test_values_past_what_the_databases_hold_are_400(runs: dict[str, Any], body: dict[str, Any], words: str) -> None:
    """Before: a 500 (time_t overflow, bigint out of range, SQLite's 64-table join limit)."""
    response = runs["api"].post(f"{P}/runs/search", json=body)
    assert response.status_code == 400, response.json
    assert words in response.json["message"]


def test_forty_keys_still_search(runs: dict[str, Any]) -> None:
    body = {
        "filter": " AND ".join(f"metrics.m{i} > 0" for i in range(35)),
        "order_by": [f"params.p{i}" for i in range(5)],
    }
    assert runs["api"].post(f"{P}/runs/search", json=body).status_code == 200
