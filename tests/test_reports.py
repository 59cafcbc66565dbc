"""The accounting of disclosures and the oversight reports (issue "Accounting of disclosures
and the oversight reports the law requires"): on a generated year with several agencies,
provisions, a review and a recall, every report row and total equals what the ledger says;
`report verify` passes on the export and names the figure when a disclosure event is removed;
the person's Privacy Act view omits law-enforcement disclosures; the incident clock runs on a
controlled clock; each report is a ledger event; and the refusals."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from conftest import PASSWORD, Template, copy_template, keyed_in, one_for_review
from custodes.access import enter, sessions
from custodes.cli import app
from custodes.errors import CustodesError
from custodes.ledger.events import item_commitment
from custodes.reports import incidents as inc
from custodes.services import audit, decisions, ledger, matching, reports, requests, rules
from custodes.store.tables import access_log, ledger_events
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

YEAR = dt.datetime.now(dt.UTC).year
# provision, items, seed: a bulk law-enforcement request and two smaller ones
PLAN = (("irc-6103-i-2", 150, 3), ("irc-6103-m-2", 60, 4), ("irc-6103-l-6", 80, 5))


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Template:
    root = tmp_path_factory.mktemp("year")
    ws, people = copy_template(_master_template, root)
    officer = people["officer"]
    rids = {}
    for provision, n, seed in PLAN:
        rules.register_parties(ws, people.admin, provision)
        requests.generate(ws, people.admin, provision, n, seed, root / provision)
        if provision.endswith("i-2"):
            one_for_review(root / provision)
        if provision.endswith("i-2"):  # from the agency's account
            rid = requests.submit(ws, people["requester"], root / provision).request_id
        else:  # received on paper: keyed in by the officer, confirmed by a second person
            rid = keyed_in(ws, officer, people["approver"], root / provision).request_id
        if not rids:
            matching.train(ws, officer, rid)
        decisions.process(ws, officer, rid)
        if provision.endswith("i-2"):
            decisions.review_resolve(ws, officer, rid, "WITHHOLD", "unsure of the person")
        decisions.prepare(ws, officer, rid)
        decisions.approve(ws, people["approver"], rid)
        decisions.release(ws, officer, rid, root / f"out-{provision}")
        rids[provision] = rid
    with open(root / "out-irc-6103-i-2" / "response.csv") as fh:
        item = next(r["item_id"] for r in csv.DictReader(fh) if r["answer"] == "disclosed")
    (root / "one.csv").write_text(f"request_id,item_id\n{rids['irc-6103-i-2']},{item}\n")
    rc = decisions.recall(ws, officer, reason="court ruling", items_file=root / "one.csv")
    decisions.acknowledge_recall(ws, people["requester"], rc["recall_id"])
    decisions.certify(
        ws, officer, rc["recall_id"], certified_by="R.O.", certified_on=dt.date.today()
    )
    opened = reports.incident_open(
        ws,
        officer,
        kind="disclosure",
        summary="list matched by a job nobody checked",
        request_id=rids["irc-6103-m-2"],
    )
    reports.incident_reported(ws, officer, opened["incident_id"])
    reports.incident_close(ws, people["auditor"], opened["incident_id"], finding="improper")
    (root / "rids.json").write_text(json.dumps(rids | {"recalled_item": item}))
    ws.close()
    return Template(root / "master-ws", root / "master-ws.db", people)


@pytest.fixture
def copy(year: Template, tmp_path: Path) -> Iterator[tuple[Workspace, Staff, dict[str, str]]]:
    ws, people = copy_template(year, tmp_path)
    yield ws, people, json.loads((year.home.parent / "rids.json").read_text())
    ws.close()


def _bodies(ws: Workspace, kind: str) -> list[dict]:
    with ws.engine.connect() as conn:
        rows = conn.execute(
            sa.select(ledger_events.c.idx, ledger_events.c.body)
            .where(ledger_events.c.type == kind)
            .order_by(ledger_events.c.idx)
        ).all()
    return [json.loads(r.body) | {"idx": r.idx} for r in rows]


def _last_report_event(ws: Workspace) -> dict:
    return _bodies(ws, "report.generated")[-1]


# --- the accounting and the annual table equal the ledger --------------------------------------


def test_accounting_has_one_row_per_disclosure_event(copy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, people, rids = copy
    res = reports.accounting(ws, people["auditor"], year=YEAR, out=tmp_path / "a.csv")
    with open(tmp_path / "a.csv") as fh:
        rows = list(csv.DictReader(fh))
    events = _bodies(ws, "disclosure")
    assert len(rows) == len(events) == res["document"]["figures"]["disclosures"] > 100
    by_index = {str(e["idx"]): e for e in events}
    received = {b["request_id"]: b for b in _bodies(ws, "request.received")}
    for r in rows:
        e = by_index[r["ledger_index"]]
        assert (r["request_id"], r["record_id"]) == (e["request_id"], e["record_id"])
        # the body holds the item's salted commitment; the row's id and salt open it
        assert "item_id" not in e and r["item_id"]
        assert item_commitment(bytes.fromhex(r["item_salt"]), r["item_id"]) == e["item_sha256"]
        assert r["agency"] == e["agency"] and r["provision"] == e["provision"]
        assert r["fields"] == ";".join(e["fields"])
        assert r["disclosed_on"] == e["time"][:10]
        assert r["requested_on"] == received[e["request_id"]]["time"][:10]
        assert r["bulk"] == ("yes" if received[e["request_id"]]["items"] > 100 else "no")
    # the reason is the request's own words (the ledger holds their hash)
    env = json.loads((ws.request_folder(rids["irc-6103-m-2"]) / "envelope.json").read_text())
    assert {r["reason"] for r in rows if r["request_id"] == rids["irc-6103-m-2"]} == {env["reason"]}
    # the recalled disclosure stays, marked with its recall
    recalled = [r for r in rows if r["recall_id"]]
    assert [(r["request_id"], r["item_id"]) for r in recalled] == [
        (rids["irc-6103-i-2"], rids["recalled_item"])
    ]
    assert recalled[0]["recalled_on"] == dt.date.today().isoformat()
    # filters
    ice = reports.accounting(ws, people["auditor"], provision="irc-6103-i-2")["document"]
    assert {r["provision"] for r in ice["tables"][0]["rows"]} == {"irc-6103-i-2"}
    # a year before this ledger began is not "0 disclosures": the ledger cannot say (#24)
    with pytest.raises(CustodesError) as exc:
        reports.accounting(ws, people["auditor"], year=YEAR - 1)
    assert exc.value.code == "bad_year"


def test_the_annual_table_totals_equal_the_ledger(copy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, people, rids = copy
    doc = reports.jct(ws, people["auditor"], year=YEAR, out=tmp_path / "j.json")["document"]
    events = _bodies(ws, "disclosure")
    counted = Counter((e["agency"], e["provision"]) for e in events)
    table = doc["tables"][0]
    assert len(table["rows"]) == len(counted) == 3
    for row in table["rows"]:
        agency = row["disclosure_to"].split(" [")[0]
        prov = next(p for (a, p) in counted if a == agency)
        assert row["total"] == row["bulk"] + row["other"] == counted[(agency, prov)]
        assert (
            row["subsection"]
            == {"irc-6103-i-2": "(i)(2)", "irc-6103-m-2": "(m)(2)", "irc-6103-l-6": "(l)(6)"}[prov]
        )
        assert (row["bulk"] > 0) == (prov == "irc-6103-i-2")  # only the 150-item list is bulk
    assert table["total"]["total"] == len(events)
    f = doc["figures"]
    assert f["requests"] == 3 and f["purposes"] == 3
    assert f["taxpayers"] == len({e["record_id"] for e in events})
    assert f["recalled"] == 1
    assert f["improper"] == sum(1 for e in events if e["request_id"] == rids["irc-6103-m-2"])
    notes = " ".join(doc["notes"])
    # the words of `recall` ("improper") and of an incident's finding, kept apart (#24)
    assert "1 of these disclosures were recalled as improper" in notes
    assert "incident's finding later declared improper" in notes
    # the footnote marks sit on the rows they are about
    marked = {r["disclosure_to"] for r in table["rows"] if "[" in r["disclosure_to"]}
    assert len(marked) == 2


# --- every figure checkable from an export -----------------------------------------------------


def test_verify_passes_on_the_export_and_names_what_a_removed_event_changes(
    copy, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ws, people, _ = copy
    aud = people["auditor"]
    reports.accounting(ws, aud, year=YEAR, out=tmp_path / "a.csv")
    reports.accounting(ws, aud, out=tmp_path / "a.json")
    reports.jct(ws, aud, year=YEAR, out=tmp_path / "j.csv")
    office = "Office of Governmental Liaison and Disclosure"  # named on it, and recomputed
    reports.jct(ws, aud, year=YEAR, office=office, out=tmp_path / "j.json")
    assert json.loads((tmp_path / "j.json").read_text())["parameters"]["office"] == office
    ledger.export_bodies(ws, aud, tmp_path / "export")
    for name in ("a.csv", "a.json", "j.csv", "j.json"):
        v = reports.verify(tmp_path / name, tmp_path / "export")
        assert v["ok"], (name, v["problems"])
        assert v["generated_by"] == "auditor"

    # an insider deletes one disclosure from the export they hand over
    gone = _bodies(ws, "disclosure")[5]["idx"]
    bodies = tmp_path / "export" / "bodies.jsonl"
    lines = bodies.read_text().splitlines()
    bodies.write_text("\n".join(x for x in lines if json.loads(x)["idx"] != gone) + "\n")
    for name in ("a.csv", "a.json"):
        v = reports.verify(tmp_path / name, tmp_path / "export")
        assert not v["ok"]
        assert f"ledger index {gone}: in the report, not in the ledger" in v["problems"]
    v = reports.verify(tmp_path / "a.json", tmp_path / "export")
    assert any(p.startswith("figure 'disclosures'") for p in v["problems"])
    v = reports.verify(tmp_path / "j.csv", tmp_path / "export")
    assert not v["ok"] and any("'Total'" in p or "total 'Total'" in p for p in v["problems"])

    # a report edited after it was written is not one the ledger recorded
    edited = tmp_path / "j2.csv"
    edited.write_text((tmp_path / "j.csv").read_text().replace(",", ",1", 1))
    with pytest.raises(CustodesError) as exc:
        reports.verify(edited, tmp_path / "export")
    assert exc.value.code == "bad_report"
    # an export without bodies cannot recompute anything
    ledger.export(ws, aud, tmp_path / "plain")
    with pytest.raises(CustodesError) as exc:
        reports.verify(tmp_path / "a.csv", tmp_path / "plain")
    assert exc.value.code == "no_bodies"


def test_verify_from_the_command_line_exits_1_naming_the_figure(copy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, _people, _ = copy
    env = {
        "CUSTODES_SESSION": sessions.login(ws, "auditor", PASSWORD),
        "CUSTODES_STORE_URL": ws.store_url,
    }
    home = ["--home", str(ws.home)]
    runner = CliRunner()
    r = runner.invoke(
        app,
        ["report", "jct", "--year", str(YEAR), "--out", str(tmp_path / "j.json"), *home],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert "Wrote the jct report" in r.output
    r = runner.invoke(app, ["ledger", "export", str(tmp_path / "e"), "--bodies", *home], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["report", "verify", str(tmp_path / "j.json"), "--export", str(tmp_path / "e")]
    )
    assert r.exit_code == 0 and "Every row and figure agrees" in r.output, r.output
    bodies = tmp_path / "e" / "bodies.jsonl"
    lines = bodies.read_text().splitlines()
    first = next(
        i for i, x in enumerate(lines) if json.loads(json.loads(x)["body"])["type"] == "disclosure"
    )
    del lines[first]
    bodies.write_text("\n".join(lines) + "\n")
    r = runner.invoke(
        app, ["report", "verify", str(tmp_path / "j.json"), "--export", str(tmp_path / "e")]
    )
    assert r.exit_code == 1 and "DISAGREES: figure 'disclosures'" in r.output, r.output
    # the screen view of a report, without --out
    r = runner.invoke(app, ["report", "jct", "--year", str(YEAR), *home], env=env)
    assert r.exit_code == 0 and "(i)(2)" in r.output and "Total" in r.output, r.output


# --- the person's accounting -------------------------------------------------------------------


def test_the_privacy_act_view_withholds_law_enforcement_and_says_so(copy) -> None:  # type: ignore[no-untyped-def]
    ws, people, _rids = copy
    events = _bodies(ws, "disclosure")
    provisions: dict[str, set[str]] = {}
    for e in events:
        provisions.setdefault(e["record_id"], set()).add(e["provision"])
    both = next(r for r, p in provisions.items() if "irc-6103-i-2" in p and len(p) > 1)
    aud = people["auditor"]
    full = reports.person(
        ws, aud, both, purpose="accounting requested by the taxpayer", request="PA-2026-0001"
    )["document"]
    pa_view = reports.person(
        ws,
        aud,
        both,
        purpose="accounting requested by the taxpayer",
        request="PA-2026-0001",
        privacy_act=True,
    )["document"]
    assert {r["provision"] for r in full["tables"][0]["rows"]} == provisions[both]
    assert "irc-6103-i-2" not in {r["provision"] for r in pa_view["tables"][0]["rows"]}
    assert len(pa_view["tables"][0]["rows"]) == len(full["tables"][0]["rows"]) - sum(
        1 for e in events if e["record_id"] == both and e["provision"] == "irc-6103-i-2"
    )
    assert any("552a(c)(3)" in n and "withheld" in n for n in pa_view["notes"])
    # an inspection: recorded with its purpose, and refused without one
    inspected = [b for b in _bodies(ws, "record.inspected") if b["record_id"] == both]
    assert len(inspected) == 2 and inspected[0]["what"] == "accounting_of_disclosures"
    # its purpose by the keyed commitment its access-log row's event carries, never by a plain
    # hash anyone holding the ledger could test a guess against
    shown = [
        b
        for b in _bodies(ws, "access")
        if b["action"] == "reports.person" and b["allowed"] and b["record_id"] == both
    ]
    assert [b["purpose_hmac"] for b in inspected] == [b["purpose_hmac"] for b in shown]
    assert all(b["purpose_hmac"] and "purpose_sha256" not in b for b in inspected)
    plain = hashlib.sha256(b"accounting requested by the taxpayer").hexdigest()
    with ws.engine.connect() as conn:
        bodies = conn.execute(sa.select(ledger_events.c.body)).scalars().all()
    assert not any(plain in body for body in bodies)
    with pytest.raises(CustodesError) as exc:
        reports.person(ws, aud, both, purpose="", request="PA-2026-0001")
    assert exc.value.code == "no_purpose"
    with ws.engine.connect() as conn:
        refused = conn.execute(
            sa.select(access_log).where(
                access_log.c.action == "reports.person", access_log.c.allowed.is_(False)
            )
        ).all()
    assert len(refused) == 1 and refused[0].reason == "no_purpose"


# --- reports are ledger events, in every format ------------------------------------------------


def test_each_report_is_a_ledger_event_with_the_files_hash(copy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    ws, people, rids = copy
    cases = {
        "a.html": lambda o: reports.accounting(ws, people["auditor"], out=o),
        "j.pdf": lambda o: reports.jct(ws, people["auditor"], year=YEAR, out=o),
        "r.html": lambda o: reports.request(ws, people["officer"], rids["irc-6103-i-2"], out=o),
        "r.pdf": lambda o: reports.request(ws, people["officer"], rids["irc-6103-i-2"], out=o),
        "c.json": lambda o: reports.recalls(ws, people["auditor"], out=o),
        "s.json": lambda o: reports.safeguards(ws, people["auditor"], year=YEAR, out=o),
    }
    for name, make in cases.items():
        make(tmp_path / name)
        ev = _last_report_event(ws)
        data = (tmp_path / name).read_bytes()
        assert ev["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert ev["format"] == Path(name).suffix and ev["actor"] in ("auditor", "officer")
        assert (tmp_path / name).stat().st_mode & 0o077 == 0, name
    assert (tmp_path / "j.pdf").read_bytes().startswith(b"%PDF")
    html = (tmp_path / "r.html").read_text()
    # charts carry a text alternative; nothing is fetched from elsewhere
    assert 'role="img" aria-label="Items by the match probability' in html
    assert "<svg" in html and not any(x in html for x in ('src="http', 'href="http', "<link"))
    assert "<script" not in html


def test_the_request_report_counts_match_the_ledger(copy) -> None:  # type: ignore[no-untyped-def]
    ws, people, rids = copy
    rid = rids["irc-6103-i-2"]
    doc = reports.request(ws, people["auditor"], rid)["document"]
    f = doc["figures"]
    decided = [b for b in _bodies(ws, "request.decided") if b["request_id"] == rid][-1]
    assert (
        f["items"] == 150
        and f["review_rate_percent"] == round(100 * decided["counts"].get("REVIEW", 0) / 150, 2) > 0
    )
    assert f["reviews_resolved_withhold"] == 1
    assert f["disclosed"] == sum(1 for b in _bodies(ws, "disclosure") if b["request_id"] == rid)
    assert f["wrong_person_bound_95"].startswith("≤ ")
    tables = {t["title"]: t for t in doc["tables"]}
    assert [r["stage"] for r in tables["Stages"]["rows"]] == [
        "received",
        "rules checked",
        "matched",
        "decided",
        "release prepared",
        "release approved",
        "released",
    ]
    checks = {r["check"]: r for r in tables["Checks"]["rows"]}
    assert checks["case-number"]["citation"] and checks["identified"]["level"] == "item"
    assert {("approver", "release.approved")} <= {
        (r["actor"], r["action"]) for r in tables["Who did what"]["rows"]
    }


def test_recalls_and_safeguards(copy) -> None:  # type: ignore[no-untyped-def]
    ws, people, _ = copy
    rc = reports.recalls(ws, people["auditor"])["document"]
    assert rc["figures"] == {"recalls": 1, "disclosures_recalled": 1, "certified": 1, "overdue": 0}
    assert rc["tables"][0]["rows"][0]["notice_to"]
    assert rc["tables"][0]["rows"][0]["acknowledged_by"] == [
        "U.S. Immigration and Customs Enforcement"
    ]
    sg = reports.safeguards(ws, people["auditor"], year=YEAR)["document"]["figures"]
    assert sg["disclosures"] == len(_bodies(ws, "disclosure"))
    assert sg["disclosures_recalled"] == 1 and sg["incidents"] == 1
    assert sg["actions_by_suspended_users"] == 0 and sg["users_with_role_officer"] == 1
    # a grant's last day is the day the administrator gave, not the midnight after it (#24)
    from custodes.services import users

    last = dt.date(YEAR + 1, 3, 31)
    users.add(ws, people.admin, "detailee", ["auditor"], basis="detail order 9", last_day=last)
    users.confirm(ws, people.second_admin, "detailee")
    doc = reports.safeguards(ws, people["auditor"], year=YEAR)["document"]
    grant = next(r for t in doc["tables"] for r in t["rows"] if r.get("user") == "detailee")
    assert grant["last_day"] == last.isoformat()


def test_a_year_the_ledger_cannot_hold_is_refused(copy) -> None:  # type: ignore[no-untyped-def]
    """`report jct --year 1850` says why instead of printing an empty table (#24)."""
    ws, people, _ = copy
    for year in (1850, YEAR + 5):
        for make in (reports.jct, reports.accounting, reports.safeguards):
            with pytest.raises(CustodesError) as exc:
                make(ws, people["auditor"], year=year)
            assert exc.value.code == "bad_year" and str(year) in exc.value.message


# --- incidents and their clock -----------------------------------------------------------------


def test_the_incident_clock_runs_24_hours(copy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, people, _rids = copy
    t0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    call = enter(ws, people["officer"], "incident.open")
    iid = inc.open_incident(
        call, kind="inspection", summary="a look at a neighbour's record", now=t0
    )["incident_id"]

    def status(at: dt.datetime) -> str:
        with ws.engine.connect() as conn:
            return next(i for i in inc.listing(conn, now=at) if i["incident_id"] == iid)["status"]

    assert status(t0 + dt.timedelta(hours=23, minutes=59)) == "open"
    assert status(t0 + dt.timedelta(hours=24, minutes=1)) == "overdue"
    # the audit report lists it (its clock ran out long ago in real time)
    found = audit.inspections(ws, people["auditor"])["incidents_overdue"]
    assert [i["incident_id"] for i in found] == [iid]
    with ws.engine.connect() as conn:
        draft = inc.draft(conn, iid, now=t0 + dt.timedelta(hours=3))
    assert draft["hours_left"] == 21.0 and draft["status"] == "open"
    assert "neighbour" not in json.dumps(draft)  # the staff's words stay in the store
    done = inc.mark_reported(call, iid, now=t0 + dt.timedelta(hours=30))
    assert done["late"] is True
    assert status(t0 + dt.timedelta(hours=31)) == "reported"
    # the draft as a file, recorded like every report
    reports.incident_draft(ws, people["auditor"], iid, out=tmp_path / "d.json")
    assert _last_report_event(ws)["report"] == "incident"


def test_incident_refusals(copy) -> None:  # type: ignore[no-untyped-def]
    ws, people, _rids = copy
    officer = people["officer"]
    cases = [
        (
            lambda: reports.incident_open(ws, officer, kind="rumour", summary="x" * 20),
            "bad_incident",
        ),
        (
            lambda: reports.incident_open(ws, officer, kind="disclosure", summary="short"),
            "bad_incident",
        ),
        (
            lambda: reports.incident_open(
                ws, officer, kind="disclosure", summary="x" * 20, request_id="req-000000000000"
            ),
            "unknown_request",
        ),
        (lambda: reports.incident_reported(ws, officer, "inc-nope"), "unknown_incident"),
    ]
    for run, code in cases:
        with pytest.raises(CustodesError) as exc:
            run()
        assert exc.value.code == code
    iid = reports.incident_open(ws, officer, kind="disclosure", summary="x" * 20)["incident_id"]
    with pytest.raises(CustodesError) as exc:  # closing needs the report first
        reports.incident_close(ws, people["auditor"], iid, finding="unfounded")
    assert exc.value.code == "incident_not_reported"
    with pytest.raises(CustodesError) as exc:  # an officer does not close an incident
        reports.incident_close(ws, officer, iid, finding="unfounded")
    assert exc.value.code == "forbidden"
    reports.incident_reported(ws, officer, iid)
    with pytest.raises(CustodesError) as exc:
        reports.incident_reported(ws, officer, iid)
    assert exc.value.code == "incident_done"


def test_report_refusals(copy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, people, _rids = copy
    for who in ("requester", "approver", "rule-steward"):
        with pytest.raises(CustodesError) as exc:
            reports.accounting(ws, people[who])
        assert exc.value.code == "forbidden", who
    with pytest.raises(CustodesError) as exc:
        reports.person(ws, people["requester"], "rec-x", purpose="p" * 20, request="PA-1")
    assert exc.value.code == "forbidden"
    aud = people["auditor"]
    with pytest.raises(CustodesError) as exc:
        reports.jct(ws, aud, year=YEAR, out=tmp_path / "j.xlsx")
    assert exc.value.code == "unsupported_file_type"
    (tmp_path / "there.csv").write_text("x")
    with pytest.raises(CustodesError) as exc:
        reports.jct(ws, aud, year=YEAR, out=tmp_path / "there.csv")
    assert exc.value.code == "output_exists" and (tmp_path / "there.csv").read_text() == "x"
    with pytest.raises(CustodesError) as exc:
        reports.request(ws, aud, "req-000000000000")
    assert exc.value.code == "unknown_request"
    with pytest.raises(CustodesError) as exc:
        reports.verify(tmp_path / "missing.csv", tmp_path)
    assert exc.value.code == "file_not_found"
    shutil.copy(tmp_path / "there.csv", tmp_path / "there.txt")
    with pytest.raises(CustodesError) as exc:
        reports.verify(tmp_path / "there.txt", tmp_path)
    assert exc.value.code == "unsupported_file_type"


def test_the_tin_view_is_an_inspection_of_every_record(copy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from custodes.records import master

    ws, people, _rids = copy
    aud = people["auditor"]
    with pytest.raises(CustodesError) as exc:
        reports.accounting(ws, aud, tins_for=("", "case-7"))
    assert exc.value.code == "no_purpose"
    (tmp_path / "taken.csv").write_text("x")
    with pytest.raises(CustodesError) as exc:
        reports.accounting(
            ws, aud, tins_for=("congressional inquiry 7", "case-7"), out=tmp_path / "taken.csv"
        )
    assert exc.value.code == "output_exists"
    assert not _bodies(ws, "record.inspected")  # nothing shown, nothing recorded as shown
    res = reports.accounting(
        ws,
        aud,
        provision="irc-6103-m-2",
        tins_for=("congressional inquiry 7", "case-7"),
        out=tmp_path / "t.csv",
    )
    with open(tmp_path / "t.csv") as fh:
        rows = list(csv.DictReader(fh))
    ids = {r["record_id"] for r in rows}
    assert {r["tin"] for r in rows} == set(master.tins(ws, ids).values())
    assert all(len(r["tin"]) == 11 for r in rows)
    inspected = _bodies(ws, "record.inspected")
    assert {b["record_id"] for b in inspected} == ids
    assert {b["what"] for b in inspected} == {"accounting_tin"}
    assert res["document"]["parameters"]["with_tins"] is True
    # no TIN reaches the ledger, and the file still checks against an export
    assert "tin" not in json.dumps(_last_report_event(ws)["parameters"]).replace("with_tins", "")
    ledger.export_bodies(ws, aud, tmp_path / "e")
    assert reports.verify(tmp_path / "t.csv", tmp_path / "e")["ok"]
    for tin in list(master.tins(ws, ids).values())[:5]:
        assert tin.replace("-", "") not in (tmp_path / "e" / "bodies.jsonl").read_text()


def test_an_accounting_too_long_for_a_pdf_is_refused_before_any_work_shows(  # type: ignore[no-untyped-def]
    copy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from custodes.reports import produce

    ws, people, _rids = copy
    aud = people["auditor"]
    monkeypatch.setattr(produce, "PDF_MAX_ROWS", 100)  # the year holds 290 disclosures
    events = len(_bodies(ws, "report.generated"))
    for kw in ({"out": tmp_path / "a.pdf"}, {"fmt": "pdf"}):
        with pytest.raises(CustodesError) as exc:
            reports.accounting(ws, aud, **kw)  # type: ignore[arg-type]
        assert exc.value.code == "too_many_rows" and "CSV or JSON" in exc.value.message
    with pytest.raises(CustodesError) as exc:  # refused before the TINs are looked up
        reports.accounting(
            ws, aud, tins_for=("congressional inquiry 7", "case-7"), out=tmp_path / "t.pdf"
        )
    assert exc.value.code == "too_many_rows"
    assert not (tmp_path / "a.pdf").exists() and not (tmp_path / "t.pdf").exists()
    assert not _bodies(ws, "record.inspected")
    assert len(_bodies(ws, "report.generated")) == events
    # the same accounting as CSV, and a narrower one as PDF, are written
    reports.accounting(ws, aud, out=tmp_path / "a.csv")
    res = reports.accounting(ws, aud, provision="irc-6103-m-2", out=tmp_path / "m.pdf")
    assert (tmp_path / "m.pdf").read_bytes().startswith(b"%PDF")
    assert 0 < len(res["document"]["tables"][0]["rows"]) <= 100


def test_the_streamed_reports_equal_the_ones_computed_from_every_event_held(  # type: ignore[no-untyped-def]
    copy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accounting and the JCT table read the disclosures page by page (`source.Paged`);
    with pages of 7 they give exactly the rows and figures of the same reports computed from
    the events held in a list (the way `verify` recomputes them from an export)."""
    from custodes.reports import produce, source

    ws, _people, _rids = copy
    monkeypatch.setattr(source, "PAGE", 7)
    size, held = produce.snapshot(ws)
    size2, led = produce.streamed(ws)
    assert size == size2
    assert [e.idx for e in led.disclosures] == [e.idx for e in held if e.type == "disclosure"]
    for kind, params in (
        ("accounting", {}),
        ("accounting", {"year": YEAR, "provision": "irc-6103-i-2"}),
        ("jct", {"year": YEAR}),
    ):
        streamed, listed = produce.compute(kind, params, led), produce.compute(kind, params, held)
        assert streamed.tables[0].rows == listed.tables[0].rows and streamed.tables[0].rows
        assert streamed.tables[0].total == listed.tables[0].total
        assert streamed.figures == listed.figures and streamed.notes == listed.notes
    assert produce.compute("jct", {"year": YEAR}, led).figures["recalled"] == 1
