"""The web console in a real browser, along the main job: each role works the request through
to release (axe-core on every page, keyboard-only approval, the separation of duties shown
before the click), then recalls, the ledger, the audit and reports, the candidate masked
beside the list, and the stewards' registries, grants, exports and a recall."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import PASSWORD, keyed_in
from custodes.services import decisions, requests
from shared_web import Console, Page, core

pytest.importorskip("playwright.sync_api")


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
