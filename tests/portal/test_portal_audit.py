"""The portal's audit log: admins only, filters, pages, and the hash chain's status."""

from __future__ import annotations

import re

from sqlalchemy import delete, func, select, update

from mlplatform.core.db.models import AuditEvent
from tests.api.test_audit import tampering
from tests.api_client import Api
from tests.portal.test_portal_auth import sign_in


def text(response) -> str:  # noqa: ANN001
    return response.get_data(as_text=True)


def event_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr(?: class="broken")?>\s*<td class="num">(\d+)</td>', html)]


def make_events(api: Api) -> None:
    api.post("/api/v1/projects", json={"name": "p1"})
    api.post("/api/v1/projects", json={"name": "p2"})
    experiment = api.post("/api/v1/projects/p1/experiments", json={"name": "e"}).json["id"]
    api.post(f"/api/v1/projects/p1/experiments/{experiment}/runs", json={"name": "r"})


def test_admins_see_every_event_and_an_intact_chain(api: Api) -> None:
    make_events(api)
    sign_in(api, api.admin_token)
    page = api.client.get("/audit")
    html = text(page)
    assert page.status_code == 200
    assert "The chain is intact." in html and 'role="status"' in html
    assert "experiment.create" in html and "run.create" in html
    assert 'aria-current="page">Audit</a>' in html
    assert re.search(r'href="/projects/p1/runs/[0-9a-f]{32}">run', html)  # run events link to the run


def test_filters_narrow_the_log(api: Api) -> None:
    make_events(api)
    sign_in(api, api.admin_token)
    html = text(api.client.get("/audit?action=run.create"))
    assert "run.create" in html and "experiment.create" not in html
    assert 'value="run.create"' in html  # the form keeps what was typed
    html = text(api.client.get("/audit?resource_type=project&project=p2"))
    assert len(event_ids(html)) == 1
    html = text(api.client.get("/audit?actor=nobody"))
    assert "No events match these filters." in html
    html = text(api.client.get("/audit?start=2000-01-01T00:00&end=2000-01-02T00:00"))
    assert "No events match these filters." in html
    bad = api.client.get("/audit?start=yesterday")
    assert bad.status_code == 400 and "is not a time" in text(bad) and 'aria-invalid="true"' in text(bad)


def test_the_log_is_paged(api: Api) -> None:
    make_events(api)
    for i in range(55):
        api.post("/api/v1/projects", json={"name": f"x{i}"})
    sign_in(api, api.admin_token)
    first = text(api.client.get("/audit"))
    ids = event_ids(first)
    assert len(ids) == 50 and ids == sorted(ids)
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = text(api.client.get(next_url))
    assert event_ids(second)[0] == ids[-1] + 1 and "First page" in second


def test_a_broken_chain_is_reported(api: Api) -> None:
    make_events(api)
    with tampering(api) as conn:
        first = conn.scalar(select(func.min(AuditEvent.id)))
        conn.execute(update(AuditEvent).where(AuditEvent.id == first).values(actor="mallory"))
    sign_in(api, api.admin_token)
    html = text(api.client.get("/audit"))
    assert f"The chain is broken at event #{first}." in html and "was edited" in html
    assert '<tr class="broken">' in html


def test_the_audit_log_is_for_admins_only(api: Api) -> None:
    make_events(api)
    maintainer = api.user("mona", role="admin", project="p1")  # a project admin is not a platform admin
    sign_in(api, maintainer)
    response = api.client.get("/audit")
    assert response.status_code == 403 and "platform admin" in text(response)
    home = text(api.client.get("/projects/p1"))
    assert ">Audit</a>" not in home


def test_an_empty_log(api: Api) -> None:
    with tampering(api) as conn:
        conn.execute(delete(AuditEvent))  # bootstrap's events gone: an empty (and intact) chain
    sign_in(api, api.admin_token)
    html = text(api.client.get("/audit"))
    assert "The chain is intact." in html and "0 events verified" in html and "No audit events yet." in html
