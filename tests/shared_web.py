"""What the browser tests of the web console share: the console (`custodes serve`'s
application on loopback with Debian's chromium driven by Playwright, built once per module)
and `Page`, one user's browser with the checks every page gets (axe-core, screenshots to
test-artefacts/console/)."""

from __future__ import annotations

import contextlib
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

from conftest import PASSWORD, Template, copy_template, one_for_review
from custodes.services import requests, rules
from servers import bound_socket, wait_started

try:
    from playwright import sync_api as playwright_api
except ImportError:  # the browser test modules skip themselves (pytest.importorskip)
    playwright_api = None
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
