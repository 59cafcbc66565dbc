"""The web console in a real browser: Playwright driving Debian's chromium (installed by `make
browser`) against `custodes serve`'s application on loopback. Each role's main path end to end,
axe-core on every page (no serious or critical violation), keyboard-only approval, the
separation of duties shown before the click, a suspension refusing the open browser's next
click, and the page security (cookie flags, CSP, no-store, CSRF). Screenshots of every page go
to test-artefacts/console/ (not committed)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import PASSWORD, Template, copy_template, keyed_in, one_for_review
from custodes.services import decisions, requests, rules
from servers import bound_socket, wait_started

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "test-artefacts" / "console"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Console:
    url: str
    rid: str
    browser: Any
    home: Path
    store_url: str


@contextlib.contextmanager
def core(c: Console) -> Iterator[tuple[Any, Callable[[str], Any]]]:
    """The console's workspace through the services, and a way to sign staff in by name."""
    from custodes.access import sessions
    from custodes.services import workspace as ws_svc

    ws = ws_svc.open_workspace(c.home, c.store_url)
    try:
        yield ws, lambda name: ws_svc.caller(ws, sessions.login(ws, name, PASSWORD))
    finally:
        ws.close()


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, _master_template: Template
) -> Iterator[Console]:
    import uvicorn

    from custodes.app import create_app

    assert Path(CHROMIUM).exists(), "chromium is missing: run 'make browser'"
    assert AXE.exists(), "axe-core is missing: run 'make assets'"
    root = tmp_path_factory.mktemp("console")
    ws, people = copy_template(_master_template, root)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests.generate(ws, people.admin, "irc-6103-i-2", 80, 3, root / "req")
    one_for_review(root / "req", n=3)
    rid = requests.submit(ws, people["requester"], root / "req").request_id
    home, url = ws.home, str(ws.engine.url)
    ws.close()
    os.environ["CUSTODES_INSECURE_COOKIES"] = "1"  # plain HTTP on loopback in the tests
    sock = bound_socket()  # bound here and handed over: no other process can take the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(home, url), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_started(server, thread)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield Console(f"http://127.0.0.1:{port}", rid, browser, home, url)
        finally:
            browser.close()
            server.should_exit = True
            thread.join(timeout=10)
            os.environ.pop("CUSTODES_INSECURE_COOKIES", None)


class Page:
    """One user's browser (its own cookies), with the checks every page gets."""

    def __init__(self, c: Console, user: str | None = None) -> None:
        self.c = c
        self.ctx = c.browser.new_context(accept_downloads=True)
        self.page = self.ctx.new_page()
        self.csp_errors: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.csp_errors.append(m.text) if "Content Security Policy" in m.text else None
            ),
        )
        if user:
            self.sign_in(user)

    def sign_in(self, user: str) -> None:
        self.goto("/sign-in", shot=None)
        self.page.fill("#name", user)
        self.page.fill("#password", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.c.url + "/")

    def goto(self, path: str, *, shot: str | None = None) -> Any:
        r = self.page.goto(self.c.url + path)
        self.check(shot)
        return r

    def check(self, shot: str | None) -> None:
        """axe-core on the page: no serious or critical violation; a screenshot."""
        self.page.evaluate(AXE.read_text())
        found = self.page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
                 .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))"""
        )
        bad = [v for v in found if v["impact"] in ("serious", "critical")]
        assert not bad, (self.page.url, bad)
        assert not self.csp_errors, self.csp_errors
        if shot:
            self.page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)

    def close(self) -> None:
        self.ctx.close()

    def job_ends(self, says: str, timeout_s: int = 300) -> None:
        """On a job's page: wait until the job has ended (its page stops refreshing) and check it
        succeeded with `says`; a failed or stuck job fails the test with its problem and its
        progress as the store holds them (a slow machine must say what it was doing)."""
        from custodes.store import jobs as job_rows

        page = self.page
        page.wait_for_url(re.compile(r".*/jobs/job-"))
        job_id = page.url.rsplit("/", 1)[-1]

        def stored() -> dict[str, Any] | None:
            with core(self.c) as (ws, _):
                return job_rows.get(ws.engine, job_id)

        ended = "#job-status .usa-alert, #job-status:has-text('Cancelled')"
        try:
            page.wait_for_selector(ended, timeout=timeout_s * 1000)
        except playwright_api.TimeoutError:
            # the server runs in this process: where its job thread is, for the failure report
            stacks = {t.ident: t.name for t in threading.enumerate()}
            where = "".join(
                f"\n--- {stacks.get(ident)}\n" + "".join(traceback.format_stack(frame))
                for ident, frame in sys._current_frames().items()
                if str(stacks.get(ident, "")).startswith("custodes-job")
            )
            pytest.fail(f"job {job_id} has not ended after {timeout_s} s: {stored()}{where}")
        text = page.locator("#job-status").inner_text()
        if says not in text:
            pytest.fail(f"job {job_id} ended without '{says}': {text!r}; {stored()}")


def test_each_role_works_the_request_through_to_release(console: Console) -> None:
    c, rid = console, console.rid
    officer = Page(c, "officer")
    officer.check("queue")
    page = officer.page
    assert page.locator("caption", has_text="Waiting for you").count() == 1
    page.click(f"text={rid}")
    # the officer trains the model (when none is) and processes: jobs with a progress page
    if page.locator("#train").count():
        page.click("#train")
        officer.job_ends("Model trained")
        page.click(f"text=Back to request {rid}")
    # a refresh that fails (a server busy for a moment) does not stop the page refreshing
    refused: list[str] = []

    def busy_once(route: Any) -> None:
        if refused:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.fulfill(status=503, body="busy")

    status_url = re.compile(r".*/jobs/job-[0-9a-f]+/status$")
    page.route(status_url, busy_once)
    page.click("#process")
    officer.job_ends("Every item has its outcome")
    page.unroute(status_url)
    assert refused, "the process job had ended before its page was served: nothing refreshed"
    officer.check("process-job")  # once it has ended: no swap under axe's feet
    page.click(f"text=Back to request {rid}")
    page.wait_for_url(re.compile(rf".*/requests/{rid}$"))
    officer.check("request")
    # codes read as words: the state, the provision, who acts next (#24, console wording)
    assert page.locator(".console-facts .usa-tag").text_content() == "in review"
    facts = page.locator(".console-facts").inner_text()
    assert "§6103(i)(2)" in facts and "irc-6103-i-2" not in facts
    assert "by a disclosure officer" in page.content() and "by a officer" not in page.content()

    # the outcomes filter updates the table in place (htmx), the URL unchanged
    page.select_option("#outcome", "WITHHOLD")
    page.click("text=Filter")
    page.wait_for_selector("#outcomes caption:has-text('with outcome WITHHOLD')")
    assert page.url.endswith(f"/requests/{rid}")
    # the check filter is a choice of the checks that decided items, each with its count (#24)
    options = page.locator("#check option").all_inner_texts()
    counted = [o for o in options if re.fullmatch(r"\S+ \([\d,]+\)", o)]
    assert counted and len(counted) == len(options) - 1, options
    name, n = re.fullmatch(r"(\S+) \(([\d,]+)\)", counted[0]).groups()  # type: ignore[union-attr]
    page.select_option("#outcome", "")
    page.select_option("#check", name)
    page.click("text=Filter")
    page.wait_for_selector(f"#outcomes caption:has-text('{n} item(s) resting on {name}')")

    officer.goto(f"/requests/{rid}/review", shot="review")
    headings = page.locator("h2.usa-card__heading").all_inner_texts()
    assert headings and all("_" not in h and "+" not in h for h in headings), headings
    assert page.locator(".console-group li").count() >= len(headings)  # one reason a line
    # an item in review: the list beside the masked candidate, and the weights drawn
    samples = page.locator("text=Sample to inspect").locator("a")
    hrefs = [samples.nth(i).get_attribute("href") for i in range(samples.count())]
    # the first sample with a candidate record (an item may have none to show)
    for href in hrefs:
        officer.goto(str(href))
        if page.locator("#inspect").count():
            break
    else:
        pytest.fail("no sampled item in review has a candidate to inspect")
    officer.check("review-item")
    assert "The list beside the candidate" in page.content()
    assert page.locator("svg[role=img] title", has_text="Match weight per field").count() == 1
    assert "•••-••-" in page.content()
    # seeing the whole record is an inspection with a purpose, recorded; shown on that answer
    page.click("text=See the whole candidate record…")
    page.fill("#purpose", "to compare the date of birth the list gives")
    page.click("#inspect")
    page.wait_for_selector("#inspected")
    officer.check("review-inspected")
    assert "/inspect" in page.url and "purpose" not in page.url
    # withhold this one item with its justification; the rest go by group below
    page.fill("#reason", "the date of birth is a generation off and the list gives no TIN")
    page.check("#d-withhold")
    page.click("#resolve")
    page.wait_for_url(re.compile(r".*done=resolved"))
    officer.goto(f"/requests/{rid}/review")
    groups = page.locator("form[action$='/review']")
    assert groups.count() >= 1
    # keyboard only: tab to the first group's justification, type it, tab to its button, Enter
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName") == "TEXTAREA":
            break
    else:
        pytest.fail("no justification field is reachable with the keyboard")
    page.keyboard.type("identity not established from the list")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Withhold this group"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*done=withheld"))
    while page.locator("form[action$='/review']").count():
        form = page.locator("form[action$='/review']").first
        form.locator("textarea").fill("identity not established from the list")
        form.locator("button").click()
        page.wait_for_load_state()
    assert "withheld" in page.content()

    officer.goto(f"/requests/{rid}/prepare", shot="prepare")
    assert "What will be released" in page.content()
    page.click("#confirm")
    page.wait_for_url(re.compile(r".*done=prepared"))
    assert "A second person" in page.content()
    # the preparer sees why they may not approve, before any click
    officer.goto(f"/requests/{rid}/approve")
    assert "You may not approve" in page.content() and page.locator("#confirm").count() == 0

    approver = Page(c, "approver")
    approver.goto(f"/requests/{rid}/approve", shot="approve")
    ap = approver.page
    assert "Prepared by: officer" in ap.content()
    # keyboard only: tab to the button and press Enter
    for _ in range(60):
        ap.keyboard.press("Tab")
        if ap.evaluate("document.activeElement && document.activeElement.id") == "confirm":
            break
    else:
        pytest.fail("the approve button is not reachable with the keyboard")
    ap.keyboard.press("Enter")
    ap.wait_for_url(re.compile(r".*done=approved"))
    approver.close()

    officer.goto(f"/requests/{rid}/release", shot="release")
    assert f"Release the response to {rid}" in page.content()
    assert "Release the release" not in page.content()
    page.click("#confirm")
    # a release is a job: its page refreshes itself (htmx) until the work is done
    officer.job_ends("Every disclosure is in the ledger")
    officer.check("release-job")
    page.click(f"text=Back to request {rid}")
    page.wait_for_url(re.compile(rf".*/requests/{rid}$"))
    officer.check("released")
    with page.expect_download() as dl:
        page.click("text=Download the response (CSV)")
    assert Path(dl.value.path()).read_text().startswith('"item_id"')
    officer.close()


def test_recalls_ledger_audit_and_reports(console: Console, tmp_path: Path) -> None:
    """After the release above: the officer records a recipient's certification of
    destruction; the auditor proves a disclosure from the ledger page and downloads the JCT
    table, which is the file the ledger recorded."""
    import hashlib

    c = console
    with core(c) as (ws, sign_in):
        page = decisions.outcomes_page(ws, sign_in("officer"), c.rid, outcome="DISCLOSE")
        chosen = page["items"][0]["item_id"]
    # Issue #24 item 7: the officer recalls one chosen item from the request's page; the
    # recalls page shows the request, the agency, the reason and the notice to download
    officer = Page(c, "officer")
    officer.goto(f"/requests/{c.rid}")
    officer.page.click("text=Recall this release…")
    officer.page.fill("#recall-reason", "court ruling on one person")
    officer.page.fill("#recall-items", "item-not-disclosed")
    officer.page.click(f"text=Recall the disclosures of {c.rid}")
    # refused, nothing recalled: the error is shown at the field it is about, on the same page
    # (#24: errors at the field, not on a page of their own)
    error = officer.page.locator("#recall-items-error")
    assert "not_disclosed" in error.inner_text() and officer.page.url.endswith("/recall")
    assert "recall-items-error" in str(
        officer.page.get_attribute("#recall-items", "aria-describedby")
    )
    officer.check("recall-refused")
    officer.page.fill("#recall-reason", "court ruling on one person")
    officer.page.fill("#recall-items", chosen)
    officer.page.click(f"text=Recall the disclosures of {c.rid}")
    officer.page.wait_for_url(re.compile(r".*done=recalled"))
    officer.check("recalls")
    card = officer.page.locator("section.usa-card").first
    text = card.inner_text()
    assert c.rid in text and "U.S. Immigration and Customs Enforcement" in text
    assert "court ruling on one person" in text and "not yet" in text
    # one date format on every page (#24): the return-by date as the issue time is written
    assert re.search(r"Return or destroy by\s+\d\d/\d\d/\d{4}", text), text
    assert not re.search(r"\d{4}-\d\d-\d\d", text), text
    with officer.page.expect_download() as dl:
        card.locator("text=Download the notice").click()
    notice = Path(dl.value.path()).read_text()
    assert notice.startswith("NOTICE TO RETURN OR DESTROY") and f"Items (1): {chosen}" in notice
    with core(c) as (ws, sign_in):  # one item recalled: the request stays released
        assert requests.status(ws, sign_in("officer"), c.rid)["state"] == "released"
    form = officer.page.locator("form[action$='/certify']").first
    form.locator("input[name=certified_by]").fill("Records Officer, recipient agency")
    form.locator("input[name=certified_on]").fill(dt.date.today().isoformat())
    form.locator("button").click()
    officer.page.wait_for_url(re.compile(r".*done=certified"))
    assert "certified" in officer.page.content()
    officer.close()

    auditor = Page(c, "auditor")
    auditor.goto("/ledger", shot="ledger")
    assert "Signed checkpoint" in auditor.page.content()
    auditor.page.fill("#index", "3")
    auditor.page.click("text=Show the receipt")
    auditor.page.wait_for_selector("text=c2sp.org/tlog-proof@v1")
    auditor.check("ledger-receipt")
    receipt = auditor.page.locator("pre.console-pre").nth(1).inner_text()
    auditor.page.fill("#receipt", receipt)
    auditor.page.click("button:text-is('Check')")
    auditor.page.wait_for_selector("text=The receipt holds")
    auditor.check("ledger-check")
    auditor.page.fill("#receipt", receipt.replace("index 3", "index 4"))
    auditor.page.click("button:text-is('Check')")
    auditor.page.wait_for_selector("text=The receipt does not hold")
    # an incident: opened by the auditor, its draft downloaded, reported, closed
    auditor.goto("/incidents", shot="incidents")
    auditor.page.select_option("#kind", "inspection")
    auditor.page.fill("#summary", "a record looked at without a case")
    auditor.page.click("text=Open: the 24-hour clock starts")
    auditor.page.wait_for_url(re.compile(r".*done=opened"))
    auditor.check("incident-opened")
    with auditor.page.expect_download() as dl:
        auditor.page.click("text=Draft report (PDF)")
    draft = Path(dl.value.path()).read_bytes()
    assert draft.startswith(b"%PDF")  # its content: test_reports (no description in it)
    auditor.page.locator("form[action$='/reported'] button").first.click()
    auditor.page.wait_for_url(re.compile(r".*done=reported"))
    auditor.page.select_option("select[name=finding]", "unfounded")
    auditor.page.locator("form[action$='/close'] button").first.click()
    auditor.page.wait_for_url(re.compile(r".*done=closed"))
    assert "unfounded" in auditor.page.content()
    auditor.goto("/audit", shot="audit")
    auditor.page.select_option("#kind", "jct")
    auditor.page.select_option("#format", "csv")
    with auditor.page.expect_download() as dl:
        auditor.page.click("text=Download")
    data = Path(dl.value.path()).read_bytes()
    assert data.startswith(b'"disclosure_to"')
    import json as _json

    import sqlalchemy as sa

    from custodes.store.tables import ledger_events

    with core(c) as (ws, _), ws.engine.connect() as conn:
        bodies = [
            _json.loads(b)
            for (b,) in conn.execute(
                sa.select(ledger_events.c.body).where(ledger_events.c.type == "report.generated")
            )
        ]
    assert hashlib.sha256(data).hexdigest() in {b["sha256"] for b in bodies}
    auditor.close()


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


def test_the_candidate_is_masked_beside_the_list(console: Console) -> None:
    """The core's side-by-side view (what the review page shows) never carries the candidate's
    full name, date of birth, TIN or street; an administrator may not see it at all."""
    from custodes.errors import CustodesError
    from custodes.records import master

    with core(console) as (ws, sign_in):
        officer = sign_in("approver")
        page = decisions.outcomes_page(ws, officer, console.rid, limit=1000)["items"]
        shown = same = 0
        for item in page:
            side = decisions.review_item(ws, officer, console.rid, item["item_id"])
            cand = side["candidate"]
            if cand is None:
                continue
            rec = master.lookup(ws, cand["record_id"])
            assert rec is not None
            assert cand["tin"].endswith(rec["tin"][-4:]) and rec["tin"][:5] not in cand["tin"]
            assert len(str(rec["dob"])) > len(cand["dob"].rstrip("•-"))
            # the street is never shown, only whether it is the one listed (#24: a "—" for a
            # street that matched read as "no street")
            street = rec["addresses"][0]["street"]
            assert street not in str(cand.values())
            listed = side["listed"]["street"] or ""

            def norm(v: str) -> list[str]:
                return re.sub(r"[^\w ]", " ", v.upper()).split()

            same_street = norm(listed) == norm(street)
            assert cand["street"] == ("same as listed" if same_street else "not the one listed")
            same += cand["street"] == "same as listed"
            if len(rec["first_name"]) > 2:
                assert cand["first_name"] != rec["first_name"]
            shown += 1
        assert shown > 10 and same > 0
        with pytest.raises(CustodesError) as exc:
            decisions.review_item(ws, officer, "req-000000000000", "item-1")
        assert exc.value.code == "unknown_request"
        with pytest.raises(CustodesError) as exc:  # an administrator reviews nothing
            decisions.review_item(ws, sign_in("admin"), console.rid, page[0]["item_id"])
        assert exc.value.code == "forbidden"


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


def _staff(console: Console, name: str, role: str) -> None:
    """A confirmed, enrolled staff member whose password is PASSWORD (made through the core)."""
    from custodes.services import users
    from custodes.services import workspace as ws_svc

    with core(console) as (ws, sign_in):
        made = users.add(ws, sign_in("admin"), name, [role], basis="test detail")
        second = users.confirm(ws, sign_in("admin2"), name)["enrolment_code_second_half"]
        ws_svc.enrol(ws, name, f"{made['enrolment_code']} {second}", PASSWORD)


def test_stewards_registries_grants_exports_and_a_recall(console: Console, tmp_path: Path) -> None:
    """What the console added last: one rule steward uploads a rule set and is told a second
    must approve, the second approves; an administrator registers an agency, an official and
    an agreement and grants a further role; an officer checks an uploaded export of the
    ledger (whole, then altered) and recalls a released request from its page."""
    import zipfile

    from custodes.rules.provisions import REFERENCE
    from custodes.services import ledger

    c = console
    _staff(c, "steward-a", "rule_steward")
    _staff(c, "steward-b", "rule_steward")
    folder = tmp_path / "rules"
    shutil.copytree(REFERENCE, folder)
    (folder / "ruleset.yaml").write_text(
        (folder / "ruleset.yaml").read_text().replace('version: "', 'version: "8', 1)
    )
    archive = tmp_path / "rules.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, Path("rules") / f.relative_to(folder))
    a = Page(c, "steward-a")
    a.goto("/rules", shot="rules")
    a.page.set_input_files("#ruleset-archive", str(archive))
    a.page.click("button:text-is('Propose')")
    a.page.wait_for_url(re.compile(r".*done=proposed"))
    a.check("rules-proposed")
    assert "You proposed it" in a.page.content()
    a.close()
    b = Page(c, "steward-b")
    b.goto("/rules")
    b.page.locator("form[action$='/approve'] button").click()
    b.page.wait_for_url(re.compile(r".*done=activated"))
    assert b.page.locator("td .usa-tag", has_text="active").count() == 1
    b.close()

    admin, deputy = Page(c, "admin"), Page(c, "admin2")

    def second_administrator_confirms(what: str) -> None:
        """What the gate trusts takes two: the other administrator confirms the change."""
        deputy.goto("/users")
        row = deputy.page.locator("tr", has_text=what)
        row.locator("button:has-text('Confirm change')").click()
        deputy.page.wait_for_url(re.compile(r".*done=confirmed"))

    admin.goto("/registries", shot="registries")
    admin.page.fill("#agency-name", "Bureau of Examples")
    admin.page.click("label[for=agency-current]")
    admin.page.click("text=Register the agency")
    admin.page.wait_for_url(re.compile(r".*done=agency"))
    assert "second administrator" in admin.page.content()
    second_administrator_confirms("agency Bureau of Examples")
    admin.goto("/registries")
    admin.page.fill("#off-agency", "Bureau of Examples")
    admin.page.fill("#off-name", "E. Xample")
    admin.page.fill("#off-title", "Director")
    admin.page.select_option("#off-role", "head_of_agency")
    admin.page.fill("#off-from", "2026-01-01")
    admin.page.click("text=Register the official")
    admin.page.wait_for_url(re.compile(r".*done=official"))
    second_administrator_confirms("official E. Xample")
    agreement = tmp_path / "agreement.yaml"
    agreement.write_text(
        "id: examples-2026\nprovision: irc-6103-i-2\nagency: Bureau of Examples\n"
        "citation: Example agreement\n"
    )
    admin.page.set_input_files("#agreement-file", str(agreement))
    admin.page.click("text=Register the agreement")
    admin.page.wait_for_url(re.compile(r".*done=agreement"))
    second_administrator_confirms("agreement examples-2026")
    deputy.close()
    admin.goto("/registries")
    admin.check("registries-added")
    content = admin.page.content()
    assert "Bureau of Examples" in content and "E. Xample" in content
    assert "examples-2026" in content
    # the same agreement again: refused by the core, with its code
    admin.goto("/registries")
    admin.page.set_input_files("#agreement-file", str(agreement))
    admin.page.click("text=Register the agreement")
    assert "agreement_exists" in admin.page.content()
    admin.goto("/users")
    admin.page.select_option("#grant-user", "steward-b")
    admin.page.select_option("#grant-role", "auditor")
    admin.page.fill("#grant-basis", "audit plan 2027")
    admin.page.click("button:text-is('Grant')")
    admin.page.wait_for_url(re.compile(r".*done=granted"))
    assert "audit plan 2027" in admin.page.content()
    admin.close()

    with core(c) as (ws, sign_in):
        ledger.export(ws, sign_in("officer"), tmp_path / "export")
    whole, altered = tmp_path / "export.zip", tmp_path / "altered.zip"
    files = sorted(p for p in (tmp_path / "export").rglob("*") if p.is_file())
    names = [str(f.relative_to(tmp_path / "export")) for f in files]
    victim = next(n for n in names if n.startswith("tile/0/"))  # a tile of leaf hashes
    for target, tamper in ((whole, False), (altered, True)):
        with zipfile.ZipFile(target, "w") as zf:
            for f, name in zip(files, names, strict=True):
                data = f.read_bytes()
                if tamper and name == victim:
                    data = bytes([data[0] ^ 1]) + data[1:]
                zf.writestr(name, data)
    officer = Page(c, "officer")
    officer.goto("/ledger")
    officer.page.set_input_files("#export-archive", str(whole))
    officer.page.click("text=Check the export")
    officer.page.wait_for_selector("text=The export holds")
    officer.check("ledger-export")
    assert "consistent with this log" in officer.page.content()
    officer.page.set_input_files("#export-archive", str(altered))
    officer.page.click("text=Check the export")
    officer.page.wait_for_selector("text=The export does not hold")

    # a request not released yet: the officer withdraws it with its reason
    with core(c) as (ws, sign_in):
        requests.generate(ws, sign_in("admin"), "irc-6103-i-2", 12, 9, tmp_path / "req2")
        other = keyed_in(ws, sign_in("officer"), sign_in("approver"), tmp_path / "req2").request_id
    officer.goto(f"/requests/{other}")
    officer.page.click("text=Withdraw this request…")
    officer.page.fill("#withdraw-reason", "sent twice by the agency")
    officer.page.click(f"text=Withdraw {other}")
    officer.page.wait_for_url(re.compile(r".*done=withdrawn"))
    officer.check("withdrawn")
    assert officer.page.locator(".usa-tag", has_text="withdrawn").count() >= 1
    # the history gives each move's justification (#24)
    history = officer.page.locator("table", has_text="Every move").inner_text()
    assert "sent twice by the agency" in history and "Why" in history

    officer.goto(f"/requests/{c.rid}")
    officer.page.click("text=Recall this release…")
    officer.page.fill("#recall-reason", "the court found the whole request unlawful")
    officer.page.click(f"text=Recall the disclosures of {c.rid}")
    officer.page.wait_for_url(re.compile(r".*done=recalled"))
    officer.check("recalled")
    assert officer.page.locator("h2", has_text=": open").count() >= 1
    officer.close()


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
