"""Portal tracking pages: the runs table (columns, filter, sort, pages), compare, a run's page,
artifact downloads and the chart endpoint, with the same role checks as the API."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.api_client import Api
from tests.portal.test_portal_auth import sign_in


@dataclass
class Tracked:
    experiment_id: int
    runs: dict[str, str]  # name -> id


def log_runs(api: Api, project: str = "p1") -> Tracked:
    """A project with one experiment and three runs (params, metric history, tags) and an artifact."""
    assert api.post("/api/v1/projects", json={"name": project}).status_code == 201
    experiment = api.post(f"/api/v1/projects/{project}/experiments", json={"name": "baseline"}).json["id"]
    runs = {}
    for name, lr, accuracy in (("alpha", "0.1", 0.71), ("beta", "0.01", 0.93), ("gamma", "0.01", 0.85)):
        body = {
            "name": name,
            "params": {"lr": lr, "layers": "3"},
            "tags": {"team": "vision"},
            "metrics": [{"key": "accuracy", "value": accuracy * step / 4, "step": step} for step in range(1, 5)]
            + [{"key": "loss", "value": 1 / step, "step": step} for step in range(1, 5)],
        }
        response = api.post(f"/api/v1/projects/{project}/experiments/{experiment}/runs", json=body)
        assert response.status_code == 201, response.json
        runs[name] = response.json["id"]
    response = api.put(f"/api/v1/projects/{project}/runs/{runs['beta']}/artifacts/model/weights.bin", data=b"w" * 2048)
    assert response.status_code == 201, response.json
    api.put(f"/api/v1/projects/{project}/runs/{runs['beta']}/artifacts/report.html", data=b"<script>alert(1)</script>")
    api.put(f"/api/v1/projects/{project}/runs/{runs['beta']}/artifacts/model2/other.txt", data=b"x")
    return Tracked(experiment, runs)


def text(response) -> str:  # noqa: ANN001
    return response.get_data(as_text=True)


def row_names(html: str) -> list[str]:
    """Run names in the runs table, in order."""
    return re.findall(r'<td class="run-name"><a href="[^"]+">([^<]+)</a>', html)


@pytest.fixture
def tracked(api: Api) -> Tracked:
    data = log_runs(api)
    sign_in(api, api.admin_token)
    return data


def test_the_runs_table_shows_the_params_and_metrics_present(api: Api, tracked: Tracked) -> None:
    page = api.client.get("/projects/p1/experiments")
    html = text(page)
    assert page.status_code == 200
    assert sorted(row_names(html)) == ["alpha", "beta", "gamma"]
    for column in ("lr", "layers", "accuracy", "loss"):
        assert f'title="Sort by params.{column}"' in html or f'title="Sort by metrics.{column}"' in html
    assert 'aria-current="page">Experiments</a>' in html  # the nav marks the page
    assert "0.93" in html  # beta's latest accuracy


def test_the_user_picks_the_columns(api: Api, tracked: Tracked) -> None:
    html = text(api.client.get("/projects/p1/experiments?cols=1&param=lr&metric=loss"))
    assert 'title="Sort by params.lr"' in html and 'title="Sort by metrics.loss"' in html
    assert 'title="Sort by params.layers"' not in html and 'title="Sort by metrics.accuracy"' not in html
    # The chooser still offers the others, and links keep the choice.
    assert 'name="param" value="layers">' in html and 'name="param" value="lr" checked>' in html
    assert "cols=1" in html and "param=lr" in html


def test_a_filter_narrows_the_runs(api: Api, tracked: Tracked) -> None:
    html = text(
        api.client.get(
            "/projects/p1/experiments", query_string={"filter": "params.lr = '0.01' AND metrics.accuracy > 0.9"}
        )
    )
    assert row_names(html) == ["beta"]
    html = text(api.client.get("/projects/p1/experiments", query_string={"filter": "metrics.accuracy > 5"}))
    assert row_names(html) == [] and "No runs match this filter." in html and "Clear the filter" in html


def test_a_filter_syntax_error_is_shown_with_its_position(api: Api, tracked: Tracked) -> None:
    page = api.client.get("/projects/p1/experiments", query_string={"filter": "metrics.accuracy >> 0.9"})
    html = text(page)
    assert page.status_code == 400
    assert 'role="alert"' in html and "invalid filter at position 18" in html
    assert 'aria-invalid="true"' in html
    assert "metrics.accuracy &gt;&gt; 0.9\n" + " " * 18 + "^</pre>" in html  # the caret under the fault
    assert 'value="metrics.accuracy &gt;&gt; 0.9"' in html  # the text stays in the box to fix


def test_column_headers_sort_and_toggle(api: Api, tracked: Tracked) -> None:
    html = text(api.client.get("/projects/p1/experiments", query_string={"order": "metrics.accuracy ASC"}))
    assert row_names(html) == ["alpha", "gamma", "beta"]
    assert 'aria-sort="ascending"' in html
    assert "order=metrics.accuracy+DESC" in html  # clicking again sorts the other way
    html = text(api.client.get("/projects/p1/experiments", query_string={"order": "metrics.accuracy DESC"}))
    assert row_names(html) == ["beta", "gamma", "alpha"] and 'aria-sort="descending"' in html
    bad = api.client.get("/projects/p1/experiments", query_string={"order": "attributes.colour"})
    assert bad.status_code == 400 and "unknown attribute" in text(bad) and "Clear the sort order" in text(bad)


def test_pages_follow_the_search_token(api: Api, tracked: Tracked) -> None:
    first = text(
        api.client.get("/projects/p1/experiments", query_string={"page_size": 25, "order": "attributes.name ASC"})
    )
    assert row_names(first) == ["alpha", "beta", "gamma"] and 'rel="next"' not in first
    # Force small pages through the service's own size: add runs until a page overflows.
    experiment = tracked.experiment_id
    for i in range(25):
        api.post(f"/api/v1/projects/p1/experiments/{experiment}/runs", json={"name": f"run-{i:02d}"})
    first = text(
        api.client.get("/projects/p1/experiments", query_string={"page_size": 25, "order": "attributes.name ASC"})
    )
    assert len(row_names(first)) == 25
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = text(api.client.get(next_url))
    assert row_names(second) == ["run-22", "run-23", "run-24"] and "First page" in second
    # A token from another search is refused in place, with a way back.
    stale = api.client.get(next_url.replace("attributes.name+ASC", "attributes.name+DESC"))
    assert stale.status_code == 400 and "Go to the first page" in text(stale)


def test_experiments_in_the_sidebar_scope_the_table(api: Api, tracked: Tracked) -> None:
    other = api.post("/api/v1/projects/p1/experiments", json={"name": "other"}).json["id"]
    html = text(api.client.get(f"/projects/p1/experiments?experiment={other}"))
    assert "<h1>other</h1>" in html and "No runs here yet." in html
    html = text(api.client.get(f"/projects/p1/experiments?experiment={tracked.experiment_id}"))
    assert len(row_names(html)) == 3
    assert api.client.get("/projects/p1/experiments?experiment=abc").status_code == 400


def test_an_empty_project_says_how_to_start(api: Api) -> None:
    api.post("/api/v1/projects", json={"name": "empty"})
    sign_in(api, api.admin_token)
    html = text(api.client.get("/projects/empty/experiments"))
    assert "No experiments yet." in html and "start_run" in html


def test_compare_marks_the_params_that_differ(api: Api, tracked: Tracked) -> None:
    alpha, beta = tracked.runs["alpha"], tracked.runs["beta"]
    page = api.client.get(f"/projects/p1/compare?run={alpha}&run={beta}")
    html = text(page)
    assert page.status_code == 200 and "Compare 2 runs" in html
    lr_row = re.search(
        r'<tr class="diff">\s*<th scope="row">lr <span class="diff-mark">differs</span></th>(.*?)</tr>', html, re.S
    )
    assert lr_row and "0.1" in lr_row.group(1) and "0.01" in lr_row.group(1)
    assert re.search(r'<tr>\s*<th scope="row">layers</th>', html)  # the same in both: not marked
    assert '<figure class="chart" data-key="accuracy"' in html and 'id="chart-config"' in html
    only = text(api.client.get(f"/projects/p1/compare?run={alpha}&run={beta}&diff=1"))
    assert ">layers<" not in only and "lr <span" in only


def test_compare_needs_two_to_ten_runs(api: Api, tracked: Tracked) -> None:
    page = api.client.get(f"/projects/p1/compare?run={tracked.runs['alpha']}")
    assert page.status_code == 400 and "Pick 2 to 10 runs" in text(page)
    assert api.client.get(f"/projects/p1/compare?run={tracked.runs['alpha']}&run=nope").status_code == 404


def test_the_run_page_shows_params_metrics_tags_and_artifacts(api: Api, tracked: Tracked) -> None:
    beta = tracked.runs["beta"]
    page = api.client.get(f"/projects/p1/runs/{beta}")
    html = text(page)
    assert page.status_code == 200
    assert "<h1>beta" in html and beta in html
    assert '>lr</th><td class="wrap">0.01<' in html and '>team</th><td class="wrap">vision<' in html
    assert '<figure class="chart" data-key="loss"' in html
    assert ">model/</a>" in html and ">model2/</a>" in html and "report.html" in html
    assert 'aria-current="true">Experiments</a>' in html  # a run page is under Experiments
    folder = text(api.client.get(f"/projects/p1/runs/{beta}?path=model"))
    assert "weights.bin" in folder and "other.txt" not in folder and "report.html" not in folder
    assert "Up one folder" in folder
    bad = text(api.client.get(f"/projects/p1/runs/{beta}?path=../x"))
    assert "Cannot list these artifacts" in bad


def test_a_run_without_anything_logged_shows_empty_states(api: Api, tracked: Tracked) -> None:
    run = api.post(f"/api/v1/projects/p1/experiments/{tracked.experiment_id}/runs", json={"name": "bare"}).json["id"]
    html = text(api.client.get(f"/projects/p1/runs/{run}"))
    assert "No metrics logged." in html and "No params logged." in html and "No artifacts." in html
    assert "chart.umd.min.js" not in html  # no charts, no chart library
    assert api.client.get("/projects/p1/runs/nope").status_code == 404


def test_artifacts_download_as_attachments(api: Api, tracked: Tracked) -> None:
    beta = tracked.runs["beta"]
    response = api.client.get(f"/projects/p1/runs/{beta}/artifacts/model/weights.bin")
    assert response.status_code == 200 and response.data == b"w" * 2048
    assert response.headers["Content-Disposition"] == "attachment; filename=weights.bin"
    html = api.client.get(f"/projects/p1/runs/{beta}/artifacts/report.html")
    assert (
        html.headers["Content-Disposition"].startswith("attachment")
        and html.headers["X-Content-Type-Options"] == "nosniff"
    )
    assert html.headers["Content-Security-Policy"] == "sandbox"
    assert api.client.get(f"/projects/p1/runs/{beta}/artifacts/missing.bin").status_code == 404


def test_the_history_endpoint_downsamples_for_charts(api: Api, tracked: Tracked) -> None:
    alpha, beta = tracked.runs["alpha"], tracked.runs["beta"]
    response = api.client.get(f"/projects/p1/portal-api/history?run={alpha}&run={beta}&key=loss&max_points=4")
    assert response.status_code == 200
    series = response.json["series"]
    assert [s["run_id"] for s in series] == [alpha, beta]
    assert series[0]["points"][0] == [1, 1.0] and len(series[0]["points"]) <= 4
    bad = api.client.get("/projects/p1/portal-api/history?run=nope&key=loss")
    assert bad.status_code == 404 and "nope" in bad.json["message"]
    assert api.client.get("/projects/p1/portal-api/history").status_code == 400


def test_viewers_read_and_outsiders_are_refused(api: Api) -> None:
    tracked = log_runs(api)
    viewer = api.user("vera", role="viewer", project="p1")
    outsider = api.user("olga")
    beta = tracked.runs["beta"]
    pages = [
        "/projects/p1/experiments",
        f"/projects/p1/runs/{beta}",
        f"/projects/p1/compare?run={beta}&run={tracked.runs['alpha']}",
        f"/projects/p1/runs/{beta}/artifacts/model/weights.bin",
        f"/projects/p1/portal-api/history?run={beta}&key=loss",
    ]
    sign_in(api, viewer)
    for url in pages:
        assert api.client.get(url).status_code == 200, url
    html = text(api.client.get(pages[0]))
    assert ">Audit</a>" not in html  # not an admin: no audit link
    api.client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)})
    sign_in(api, outsider)
    for url in pages:
        response = api.client.get(url)
        assert response.status_code == 403, url
    assert "not a member" in text(api.client.get(pages[0]))


def test_signed_out_pages_go_to_sign_in(api: Api) -> None:
    log_runs(api)
    response = api.client.get("/projects/p1/experiments")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
