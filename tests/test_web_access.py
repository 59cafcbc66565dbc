"""The web console in a real browser, who gets in and what every page guards: a suspension
refusing the open browser's next click, the page security (cookie flags, CSP, no-store,
CSRF), the API docs' scripts, enrolment with a one-time code, two administrators adding a
staff member, and narrow screens."""

from __future__ import annotations

import re

import pytest

from conftest import PASSWORD
from shared_web import SHOTS, Console, Page, core, playwright_api

pytest.importorskip("playwright.sync_api")


def test_a_suspended_user_is_refused_at_the_next_click(console: Console) -> None:
    from custodes.store import jobs as job_rows

    c = console
    auditor = Page(c, "auditor")  # on the work queue
    # a second browser of the auditor's watches a job that has not ended (a row no worker
    # takes: it stays queued, and its page keeps refreshing)
    watching = Page(c, "auditor")
    with core(c) as (ws, _):
        waiting = job_rows.create(ws.engine, "process", c.rid, "officer")
    watching.goto(f"/jobs/{waiting}")
    watching.page.wait_for_selector("#job-status[hx-get]")
    admin = Page(c, "admin")
    admin.goto("/users", shot="users")
    # a suspension asks for its reason and a confirmation (#24): without the tick, nothing
    admin.page.click("summary:has-text('Suspend auditor…')")
    row = admin.page.locator("form[action='/users/auditor/suspend']")
    row.locator("input[name=reason]").fill("left the agency")
    row.locator("button").click()
    assert "done=suspended" not in admin.page.url  # the browser asks for the tick first
    row.locator("label.usa-checkbox__label").click()
    row.locator("button").click()
    admin.page.wait_for_url(re.compile(r".*done=suspended"))
    # the auditor's browser is still open on the queue: the next click is refused
    r = auditor.page.goto(c.url + "/")
    assert r.status in (401, 403) and "Your session has ended" in auditor.page.content()
    auditor.check("session-ended")
    assert not [x for x in auditor.ctx.cookies() if x["name"] == "custodes_session"]
    # the job page's next refresh is refused: the whole page reloads and says so, instead of
    # 'working…' for ever
    watching.page.wait_for_selector("h1:has-text('Your session has ended')", timeout=15_000)
    assert not [x for x in watching.ctx.cookies() if x["name"] == "custodes_session"]
    # reinstating takes two administrators: one asks, the other confirms
    admin.page.click("text=Reinstate auditor…")
    admin.page.wait_for_url(re.compile(r".*done=reinstate"))
    assert admin.page.locator("button:has-text('Confirm reinstating auditor')").is_disabled()
    deputy = Page(c, "admin2")
    deputy.goto("/users")
    deputy.page.click("text=Confirm reinstating auditor")
    deputy.page.wait_for_url(re.compile(r".*done=reinstated"))
    back = Page(c, "auditor")  # signs in again
    assert back.page.url == c.url + "/"
    for p in (auditor, watching, admin, deputy, back):
        p.close()


def test_page_security(console: Console) -> None:
    c = console
    anon = Page(c)
    r = anon.page.goto(c.url + "/")
    assert anon.page.url.endswith("/sign-in")
    anon.check("sign-in")
    headers = r.all_headers()
    assert headers["cache-control"] == "no-store"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    # a job page's refresh without a session: reload the page (to the sign-in), no redirect
    # followed into the fragment
    r = anon.ctx.request.get(c.url + "/jobs/job-0000000000000000/status", max_redirects=0)
    assert r.status == 401 and r.headers["hx-refresh"] == "true" and not r.body()
    # the icon every browser asks for is there (#24)
    icon = anon.ctx.request.get(c.url + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"
    # a wrong password: one message, no session
    anon.page.fill("#name", "officer")
    anon.page.fill("#password", "not the password")
    anon.page.click("button[type=submit]")
    assert "usa-alert--error" in anon.page.content() and not anon.ctx.cookies()
    anon.close()

    approver = Page(c, "approver")
    cookie = next(x for x in approver.ctx.cookies() if x["name"] == "custodes_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # a state-changing form without the session's anti-forgery token is refused
    r = approver.ctx.request.post(c.url + f"/requests/{c.rid}/approve", form={"csrf": "x"})
    assert r.status == 403 and "anti-forgery" in r.text()
    # a form the server cannot read (with this session's token: a form without it is refused
    # before its fields are read): a page naming the field, never its value
    token = approver.page.locator("input[name=csrf]").first.get_attribute("value")
    bad = {"csrf": token or "", "certified_by": "R.O.", "certified_on": "31/31/1999"}
    r = approver.ctx.request.post(c.url + "/recalls/rcl-000000000000/certify", form=bad)
    assert r.status == 422 and r.headers["content-type"].startswith("text/html")
    assert "certified_on" in r.text() and "31/31/1999" not in r.text()
    # a role without the action: refused by the core, shown with its code
    r = approver.page.goto(c.url + "/users")
    assert r.status == 403 and "forbidden" in approver.page.content()
    # in words (the code stays, for support): what was refused and which role it takes
    alert = approver.page.locator(".usa-alert__heading").inner_text()
    assert alert == "Not permitted" or "_" not in alert, alert
    assert "approver may not see users and access" in approver.page.content()
    approver.check("forbidden")
    # the navigation shows only what the user may do
    approver.goto("/")
    assert approver.page.locator("nav a[href='/users']").count() == 0
    approver.close()


def test_api_docs_run_only_custodes_own_scripts(console: Console) -> None:
    """Issue #22 item 9: /v1/docs loaded Swagger UI from a CDN onto the console's origin. It is
    now served from custodes' own copy of swagger-ui-dist under the console's CSP: it renders,
    every request the page makes goes to custodes, and the CSP refuses nothing."""
    c = console
    page = Page(c)
    fetched: list[str] = []
    page.page.on("request", lambda r: fetched.append(r.url))
    r = page.page.goto(c.url + "/v1/docs")
    assert r.status == 200
    assert "script-src 'self'" in r.all_headers()["content-security-policy"]
    page.page.wait_for_selector(".opblock", timeout=60_000)  # the operations are listed
    assert fetched and all(u.startswith(c.url + "/") for u in fetched), fetched
    assert not page.csp_errors, page.csp_errors
    page.page.screenshot(path=str(SHOTS / "api-docs.png"))
    page.close()


def test_a_new_user_enrols_with_a_one_time_code_then_signs_in(console: Console) -> None:
    from custodes.services import users

    with core(console) as (ws, sign_in):
        reset = users.reset(ws, sign_in("admin"), "rule-steward")
        second = users.confirm_change(ws, sign_in("admin2"), reset["change"])
    p = Page(console)
    p.goto("/enrol", shot="enrol")
    p.page.fill("#name", "rule-steward")
    p.page.fill("#code", reset["enrolment_code"])  # one administrator's half alone: refused
    p.page.fill("#password", "a long new password")
    p.page.click("button[type=submit]")
    assert "not valid for this user" in p.page.content()
    p.page.fill("#name", "rule-steward")
    p.page.fill("#code", reset["enrolment_code"])
    p.page.fill("#second", second["enrolment_code_second_half"])
    p.page.fill("#password", "a long new password")
    p.page.click("button[type=submit]")
    # the form posts and the answer is a new page: wait for it (read mid-navigation, the
    # content was empty on a loaded machine)
    p.page.wait_for_selector("text=Enrolled")
    p.goto("/sign-in")
    p.page.fill("#name", "rule-steward")
    p.page.fill("#password", "a long new password")
    p.page.click("button[type=submit]")
    p.page.wait_for_url(console.url + "/")
    assert "rule-steward" in p.page.content()
    p.close()


def test_two_administrators_add_a_staff_member_who_enrols(console: Console) -> None:
    """The administration page: one administrator adds an officer with the legal basis and
    sees the first half of the one-time code once; confirming their own change is refused; a
    second administrator confirms and sees the second half once; the new officer sets a
    password with both halves and signs in."""
    c = console
    first = Page(c, "admin")
    first.goto("/users", shot="users-admin")
    # the name's pattern is a valid expression under Chromium's v flag (invalid, it is
    # ignored and warned about), and it refuses what the core refuses
    valid = first.page.evaluate(
        """() => { const p = document.querySelector('#new-name').pattern;
                   try { new RegExp(p, 'v'); return true; } catch (e) { return false; } }"""
    )
    assert valid
    first.page.fill("#new-name", "Olga Q")
    assert first.page.evaluate("() => document.querySelector('#new-name').validity.patternMismatch")
    first.page.fill("#new-name", "olga")
    first.page.select_option("#new-role", "officer")
    first.page.fill("#new-basis", "detail order 7")
    first.page.click("text=Add, and show the one-time code")
    first.page.wait_for_selector("text=First half of the one-time code for olga")
    first.check("users-code")
    code = first.page.locator(".usa-alert strong code").inner_text().strip()
    assert "waiting for a second administrator" in first.page.content()
    assert "new user olga: role(s) officer" in first.page.content()  # the queue shows it
    assert code not in first.page.url
    first.page.click("text=Confirm for olga")
    assert "separation_of_duties" in first.page.content()
    first.close()
    second = Page(c, "admin2")
    second.goto("/users")
    second.page.click("text=Confirm for olga")
    second.page.wait_for_selector("text=Second half of the one-time code for olga")
    half = second.page.locator(".usa-alert strong code").inner_text().strip()
    assert "confirmed by admin2" in second.page.content() and half not in second.page.url
    second.close()
    olga = Page(c)
    olga.goto("/enrol")
    olga.page.fill("#name", "olga")
    olga.page.fill("#code", code)
    olga.page.fill("#second", half)
    olga.page.fill("#password", "olga's own long password")
    olga.page.click("button[type=submit]")
    assert "Enrolled" in olga.page.content()
    olga.goto("/sign-in")
    olga.page.fill("#name", "olga")
    olga.page.fill("#password", "olga's own long password")
    olga.page.click("button[type=submit]")
    olga.page.wait_for_url(c.url + "/")
    assert "olga (officer)" in olga.page.content()
    olga.close()


@pytest.mark.parametrize("width", [320, 640, 1000])
def test_narrow_screens_reach_the_navigation_and_never_scroll_sideways(
    console: Console, width: int
) -> None:
    """Issue #24 item 6 (WCAG 1.4.10, reflow): below the desktop width (a 1280 px screen at
    125 % zoom is 1024 px) a Menu button opens the navigation and Sign out; the page never
    scrolls sideways (a wide table scrolls inside the page). (A browser of its own, without
    axe: this is about the layout.)"""
    ctx = console.browser.new_context(viewport={"width": width, "height": 800})
    try:
        page = ctx.new_page()
        page.goto(console.url + "/sign-in")
        page.fill("#name", "officer")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(console.url + "/")
        for path in ("/", f"/requests/{console.rid}"):
            page.goto(console.url + path)
            page.wait_for_load_state("load")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (path, width, overflow)
            menu = page.locator("button.usa-menu-btn")
            signout = page.locator(".console-signout button[type=submit]")
            assert menu.is_visible(), (path, width, "no menu button")
            assert not signout.is_visible()  # behind the menu until it is opened
            menu.click()
            # the panel slides in: wait until Sign out and the links are on the screen
            playwright_api.expect(signout).to_be_in_viewport(timeout=5000)
            playwright_api.expect(
                page.locator(".usa-nav__primary .usa-nav-link").first
            ).to_be_in_viewport(timeout=5000)
            page.screenshot(path=str(SHOTS / f"narrow-{width}-{path.count('/')}.png"))
            page.locator("button.usa-nav__close").click()
            signout.wait_for(state="hidden", timeout=5000)
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(console.url + "/")
        assert not page.locator("button.usa-menu-btn").is_visible()
        assert page.locator(".console-signout button[type=submit]").is_visible()
    finally:
        ctx.close()
