"""Every state-changing form of the console is checked for its anti-forgery token before anything
else of its page runs: the test finds the console's POST routes in the application itself, so a
new one is covered (or named here as one that makes or ends a session) the day it is added."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import PASSWORD
from custodes.access import sessions
from custodes.app import create_app
from custodes.services import workspace as ws_svc
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

COOKIE = "__Host-custodes_session"
# The pages before a session (they check what they take themselves): no anti-forgery token
# exists before sign-in, and signing out without one ends nothing (below).
BEFORE_SESSION = {"/sign-in", "/enrol", "/sign-out"}


def _console_posts(app: FastAPI) -> list[str]:
    """The path of every POST route outside /v1 (through the routers the app includes)."""
    routes: list[Any] = []
    for r in app.routes:
        routes += r.effective_route_contexts() if hasattr(r, "effective_route_contexts") else [r]
    return sorted(
        {
            r.path
            for r in routes
            if not r.path.startswith("/v1")
            and "POST" in (getattr(getattr(r, "original_route", r), "methods", None) or ())
        }
    )


def _rows(ws: Workspace) -> dict[str, int]:
    """How many rows each table of the store holds."""
    with ws.engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
            for name in sa.inspect(conn).get_table_names()
        }


@pytest.fixture
def web(workspace: Workspace, staff: Staff) -> Iterator[tuple[TestClient, str, str]]:
    """The application on a staffed workspace, and an administrator's console session with
    its anti-forgery token."""
    token = sessions.login(workspace, "admin", PASSWORD, kind="console")
    csrf = ws_svc.csrf_token(workspace, token)
    with TestClient(create_app(workspace.home), base_url="https://testserver") as client:
        yield client, token, csrf


def test_every_console_post_refuses_a_form_without_the_sessions_token_before_any_work(
    workspace: Workspace, web: tuple[TestClient, str, str]
) -> None:
    client, token, csrf = web
    posts = _console_posts(client.app)  # type: ignore[arg-type]
    assert len(posts) >= 20 and set(posts) >= BEFORE_SESSION
    client.cookies.set(COOKIE, token)
    assert client.get("/").status_code == 200  # the session's first use, recorded once
    before = _rows(workspace)
    other = "0" * len(csrf)
    checked = [p for p in posts if p not in BEFORE_SESSION]
    for path in checked:
        url = re.sub(r"\{[^}]+\}", "x", path)
        # no cookie: the sign-in, whatever the form holds
        client.cookies.clear()
        r = client.post(url, data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/sign-in", (path, r.text)
        # a live session, and no token, another token, or another token beside a file
        client.cookies.set(COOKIE, token)
        for form in ({"data": {}}, {"data": {"csrf": other}}):
            r = client.post(url, follow_redirects=False, **form)
            assert r.status_code == 403, (path, form, r.status_code)
            assert "forbidden" in r.text and "anti-forgery" in r.text, path
        files = {"archive": ("x.zip", b"PK\x05\x06" + b"\0" * 18, "application/zip")}
        r = client.post(url, data={"csrf": other}, files=files, follow_redirects=False)
        assert r.status_code == 403 and "anti-forgery" in r.text, (path, r.status_code)
    assert _rows(workspace) == before  # nothing was touched, not even a refusal recorded
    # the check tells the session's own token from the others: with it, every page runs (and
    # answers for itself: an unknown id, a missing field)
    for path in checked:
        r = client.post(re.sub(r"\{[^}]+\}", "x", path), data={"csrf": csrf})
        assert "anti-forgery" not in r.text, path
    # signing out without the token ends nothing: the session still opens a page
    r = client.post("/sign-out", data={"csrf": other}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
    client.cookies.set(COOKIE, token)
    assert client.get("/", follow_redirects=False).status_code == 200
