"""Why an item got its outcome, the same everywhere: every kind of outcome rendered on the
console's item page and the API's explain route, and the request report's counts equal to the
outcomes API's, before and after review (issue #24, items 1 to 3).

One small request (120 generated items, plus a few edited so that each kind of outcome occurs)
is processed once per module and walked through review, release and a recall; each stage is
checked through the HTTP faces (FastAPI's TestClient on the real application)."""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import PASSWORD, Template, copy_template
from custodes.access import sessions
from custodes.services import decisions, matching, reports, requests, rules
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

PAGE_COOKIE = "__Host-custodes_session"
REVIEW_CHECK = "officer-review"  # the officer's review, among the checks that ran


@dataclass
class Flow:
    ws: Workspace
    people: Staff
    client: TestClient
    rid: str
    tokens: dict[str, str]
    edited: dict[str, str]  # what was done to an item -> its id
    root: Path

    def api(self, path: str, who: str = "officer", **params: Any) -> Any:
        r = self.client.get(
            f"/v1{path}", params=params, headers={"Authorization": f"Bearer {self.tokens[who]}"}
        )
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()

    def page(self, path: str, who: str = "officer") -> Any:
        token = self.tokens[f"console:{who}"]
        return self.client.get(path, headers={"Cookie": f"{PAGE_COOKIE}={token}"})


def _edit(folder: Path) -> dict[str, str]:
    """Edit four undamaged, TIN-less items: two with a date of birth a generation off (review),
    one with no date of birth (too few identifiers), one with no removal-order date (only the
    agreement's check fails)."""
    with open(folder / "truth.csv") as fh:
        truth = {r["item_id"]: r for r in csv.DictReader(fh)}
    with open(folder / "items.csv") as fh:
        rows = list(csv.DictReader(fh))
    plain = [r for r in rows if truth[r["item_id"]]["defect"] == "none" and not r["tin"]]
    edited = {
        "review-disclose": plain[0],
        "review-withhold": plain[1],
        "no-dob": plain[2],
        "no-removal-date": plain[3],
    }
    for key in ("review-disclose", "review-withhold"):
        r = edited[key]
        r["dob"] = f"{int(r['dob'][:4]) - 30}{r['dob'][4:]}"
    edited["no-dob"]["dob"] = ""
    edited["no-removal-date"]["removal_order_date"] = ""
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return {k: r["item_id"] for k, r in edited.items()}


@dataclass
class Processed:
    template: Template
    rid: str
    edited: dict[str, str]


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Processed:
    """The request, processed once (nothing resolved yet); each test works on a copy."""
    root = tmp_path_factory.mktemp("explain")
    ws, people = copy_template(_master_template, root)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests.generate(ws, people.admin, "irc-6103-i-2", 120, 3, root / "req")
    edited = _edit(root / "req")
    rid = requests.submit(ws, people["requester"], root / "req").request_id
    matching.train(ws, people["officer"], rid)
    decisions.process(ws, people["officer"], rid)
    ws.close()
    return Processed(Template(root / "master-ws", root / "master-ws.db", people), rid, edited)


@pytest.fixture
def flow(processed: Processed, tmp_path: Path) -> Iterator[Flow]:
    from custodes.app import create_app

    ws, people = copy_template(processed.template, tmp_path)
    tokens = {n: sessions.login(ws, n, PASSWORD) for n in ("officer", "auditor")}
    tokens |= {  # the console's own sessions (the API refuses them)
        f"console:{n}": sessions.login(ws, n, PASSWORD, kind="console")
        for n in ("officer", "auditor")
    }
    with TestClient(create_app(ws.home, str(ws.engine.url))) as client:
        yield Flow(ws, people, client, processed.rid, tokens, processed.edited, tmp_path)
    ws.close()


def _kind(x: dict[str, Any]) -> set[str]:
    """The kinds of outcome an explanation shows (an item may be of several)."""
    kinds = {x["outcome"]}
    by = {c["check"]: c for c in x["checks"]}
    for c in x["checks"]:
        if c["passed"] is False and c["decided"]:
            kinds.add(f"withheld on {c['source'] if c['source'] != 'statute' else c['phase']}")
    if x["match"]["status"] == "not_identified":
        kinds.add("not identified")
    if x["match"]["record_id"] is None:
        kinds.add("no candidate")
    if "insufficient_identifiers" in (x["match"]["reasons"] or []):
        kinds.add("insufficient identifiers")
    if x["resolution"]:
        kinds.add(f"resolved {x['resolution']['decision']}")
    if x.get("recall"):
        kinds.add("recalled")
    if by.get(REVIEW_CHECK, {}).get("passed", False) is None:
        kinds.add("awaiting officer")
    return kinds


def _check_item(f: Flow, item: str, page: Any = None) -> set[str]:
    """The API's explanation and the console's item page of one item (`page`, when it was
    just fetched) agree and explain it: the page renders (HTML, not a problem document), shows
    the outcome and every check that ran with the same verdict, and a withheld item shows at
    least one failing check it rests on."""
    x = f.api(f"/requests/{f.rid}/items/{item}")
    assert x["item_id"] == item
    r = page if page is not None else f.page(f"/requests/{f.rid}/items/{item}")
    assert r.status_code == 200, (item, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html"), (item, r.text[:300])
    checks = {c["check"]: c for c in x["checks"]}
    # every failing check the outcome names is in the list, failing and deciding
    for cid in x["failing_checks"]:
        assert cid in checks, (item, cid, "missing from checks[]")
        assert checks[cid]["passed"] is False and checks[cid]["decided"], (item, cid)
    assert {c for c, v in checks.items() if v["decided"]} == set(x["failing_checks"]), item
    if x["outcome"] in ("WITHHOLD", "NOT_CONFIRMED"):
        assert any(c["passed"] is False and c["decided"] for c in x["checks"]), (
            item,
            "withheld with no failing check shown",
        )
    if x["outcome"] in ("DISCLOSE", "CONFIRM"):
        assert not x["failing_checks"] or {checks[c]["severity"] for c in x["failing_checks"]} == {
            "review"
        }, item
    if x["outcome"] == "REVIEW":
        assert checks[REVIEW_CHECK]["passed"] is None, item
    text = html.unescape(r.text)
    assert f"Item {item}: {x['outcome']}" in text
    rows = dict(re.findall(r'<tr><th scope="row">([^<]+)</th><td>(.*?)</td>', text))
    for cid, c in checks.items():
        want = (
            "passes"
            if c["passed"]
            else "officer decides"
            if c["passed"] is None
            else "<strong>fails</strong>"
            if c["decided"]
            else "fails (not what decided)"
        )
        assert rows.get(cid) == want, (item, cid, rows.get(cid), want)
    if x.get("recall"):
        assert 'id="recalled"' in text
    return _kind(x)


def _every_item(f: Flow) -> dict[str, set[str]]:
    items = f.api(f"/requests/{f.rid}/outcomes", limit=1000)["items"]
    assert len(items) == 120
    # each page fetched once: all of them checked to render first, then each one read
    pages = {i["item_id"]: f.page(f"/requests/{f.rid}/items/{i['item_id']}") for i in items}
    broken = [i for i, r in pages.items() if not r.headers["content-type"].startswith("text/html")]
    assert not broken, f"{len(broken)} of {len(items)} item pages do not render: {broken[:5]}"
    return {i: _check_item(f, i, r) for i, r in pages.items()}


def _report_matches_outcomes(f: Flow) -> dict[str, dict[str, Any]]:
    """The request report's outcome counts and per-check counts equal the outcomes API's."""
    doc = reports.request(f.ws, f.people["auditor"], f.rid)["document"]
    tables = {t["title"]: t for t in doc["tables"]}
    for row in tables["Outcomes"]["rows"]:
        got = f.api(f"/requests/{f.rid}/outcomes", outcome=row["outcome"], limit=1)["total"]
        assert row["items"] == got, ("outcome", row["outcome"], row["items"], got)
    rows = {r["check"]: r for r in tables["Checks"]["rows"]}
    listed = f.api(f"/requests/{f.rid}/outcomes", limit=1000)["items"]
    in_outcomes = {c for i in listed for c in i["checks"]}
    assert in_outcomes <= set(rows), in_outcomes - set(rows)  # no deciding check left out
    for cid, row in rows.items():
        if row["level"] != "item":
            continue
        got = f.api(f"/requests/{f.rid}/outcomes", check=cid, limit=1)["total"]
        assert row["outcome_items"] == got, (cid, row["outcome_items"], got)
        assert row["items_failing"] >= row["outcome_items"], cid
        assert row["verdict"] == ("fails" if row["items_failing"] else row["verdict"]), cid
    return rows


def test_every_outcome_renders_and_is_explained_the_same_everywhere(flow: Flow) -> None:
    """Issue #24 items 1 and 2: before review, after review, after a release and a recall,
    every item's page renders and shows every check that ran (the agreement's, those after
    matching, the officer's review) with the verdict the API's explanation gives."""
    f = flow
    seen = {k for kinds in _every_item(f).values() for k in kinds}
    for kind in (
        "DISCLOSE",
        "WITHHOLD",
        "REVIEW",
        "withheld on before_matching",  # a rule of the provision
        "withheld on irs-ice-2025",  # the agreement's check
        "withheld on after_matching",  # identified / address-on-record
        "not identified",
        "no candidate",
        "insufficient identifiers",
        "awaiting officer",
    ):
        assert kind in seen, (kind, seen)
    e = f.edited
    assert "withheld on irs-ice-2025" in _check_item(f, e["no-removal-date"])
    assert "insufficient identifiers" in _check_item(f, e["no-dob"])
    officer = f.people["officer"]
    candidate = decisions.review_item(f.ws, officer, f.rid, e["review-disclose"])["candidate"]
    decisions.review_resolve(
        f.ws,
        officer,
        f.rid,
        "DISCLOSE",
        "date of birth checked against the case file",
        items=[e["review-disclose"]],
        records={e["review-disclose"]: candidate["record_id"]},
    )
    decisions.review_resolve(f.ws, officer, f.rid, "WITHHOLD", "not sure enough")
    seen = {k for kinds in _every_item(f).values() for k in kinds}
    assert {"resolved DISCLOSE", "resolved WITHHOLD", "withheld on review"} <= seen, seen
    withheld = f.api(f"/requests/{f.rid}/items/{e['review-withhold']}")
    assert withheld["failing_checks"] == [REVIEW_CHECK]
    decisions.prepare(f.ws, officer, f.rid)
    decisions.approve(f.ws, f.people["approver"], f.rid)
    decisions.release(f.ws, officer, f.rid, f.root / "response")
    with open(f.root / "response" / "response.csv") as fh:
        answers = {r["item_id"]: r for r in csv.DictReader(fh)}
    # the officer's withholding reveals nothing: the one answer for record-dependent refusals
    assert answers[e["review-withhold"]]["answer"] == "no information disclosed"
    assert not answers[e["review-withhold"]]["defects"]
    recall_file = f.root / "recall.csv"
    recall_file.write_text(f"request_id,item_id\n{f.rid},{e['review-disclose']}\n")
    decisions.recall(f.ws, officer, reason="court ruling", items_file=recall_file)
    assert {"recalled", "resolved DISCLOSE"} <= _check_item(f, e["review-disclose"])


def test_request_report_counts_equal_the_outcomes_api(flow: Flow) -> None:
    """Issue #24 item 3: the request report's outcome table and per-check counts are the
    outcomes API's counts for the same request, before review and after it; the agreement's
    check and the checks after matching are in the table with their counts."""
    f = flow
    rows = _report_matches_outcomes(f)
    assert rows["removal-order-date"]["source"] == "irs-ice-2025"
    assert rows["removal-order-date"]["outcome_items"] >= 1
    assert rows["identified"]["outcome_items"] >= 1
    assert rows["address-on-record"]["outcome_items"] >= 1
    assert rows[REVIEW_CHECK]["verdict"] == "officer decides"
    officer = f.people["officer"]
    decisions.review_resolve(f.ws, officer, f.rid, "WITHHOLD", "not sure enough")
    rows = _report_matches_outcomes(f)
    assert rows[REVIEW_CHECK]["outcome_items"] >= 1
