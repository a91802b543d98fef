"""Portal sign-in: session cookie, CSRF on every form, the same role checks as the API."""

from __future__ import annotations

import re

from tests.api_client import Api


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(api: Api, token: str) -> None:
    page = api.client.get("/login")
    response = api.client.post("/login", data={"token": token, "csrf_token": csrf(page.get_data(as_text=True))})
    assert response.status_code == 302, response.get_data(as_text=True)


def test_pages_need_a_session_and_redirect_to_sign_in(api: Api) -> None:
    response = api.client.get("/projects/p1")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    assert api.client.get("/login").status_code == 200


def test_sign_in_sets_a_safe_cookie_and_shows_projects(api: Api) -> None:
    api.post("/api/v1/projects", json={"name": "p1", "description": "first"})
    api.post("/api/v1/projects", json={"name": "p2"})
    page = api.client.get("/login")
    response = api.client.post(
        "/login", data={"token": api.admin_token, "csrf_token": csrf(page.get_data(as_text=True))}
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert api.admin_token not in cookie  # the cookie is signed; it carries the token only inside the signed payload
    index = api.client.get("/").get_data(as_text=True)
    assert "p1" in index and "p2" in index
    home = api.client.get("/projects/p1")
    assert home.status_code == 200 and "No runs yet" in home.get_data(as_text=True)


def test_a_bad_token_is_refused(api: Api) -> None:
    page = api.client.get("/login")
    response = api.client.post("/login", data={"token": "mlp_wrong", "csrf_token": csrf(page.get_data(as_text=True))})
    assert response.status_code == 401 and "invalid token" in response.get_data(as_text=True)


def test_forms_without_the_csrf_token_are_refused(api: Api) -> None:
    api.client.get("/login")
    response = api.client.post("/login", data={"token": api.admin_token})
    assert response.status_code == 403 and "CSRF" in response.get_data(as_text=True)


def test_roles_apply_to_pages(api: Api) -> None:
    api.post("/api/v1/projects", json={"name": "p1"})
    outsider = api.user("olga")
    sign_in(api, outsider)
    response = api.client.get("/projects/p1")
    assert response.status_code == 403 and "not a member" in response.get_data(as_text=True)


def test_sign_out(api: Api) -> None:
    sign_in(api, api.admin_token)
    page = api.client.get("/")
    api.client.post("/logout", data={"csrf_token": csrf(page.get_data(as_text=True))})
    assert api.client.get("/").status_code == 302


def test_static_files_are_public(api: Api) -> None:
    assert api.client.get("/static/vendor/chart.umd.min.js").status_code == 200
