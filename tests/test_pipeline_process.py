"""The main job through the services, up to review: outcomes that respect the rules and the
truth, review and its refusals, processing idempotent, the statute refusing a request, a
disclosure after review, review groups resolved in bulk, and each authority cited once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import Template, keyed_in
from custodes.access.credentials import item_key
from custodes.decisions import effective, pipeline
from custodes.errors import (
    ConflictError,
    InputError,
    NotFound,
)
from custodes.ledger.events import item_sha256
from custodes.records import master
from custodes.services import decisions as svc
from custodes.services.requests import generate as generate_request
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from shared_pipeline import _events, _truth, state_of


@pytest.fixture
def ws(copied: tuple[Workspace, Staff]) -> Workspace:
    return copied[0]


@pytest.fixture
def who(copied: tuple[Workspace, Staff]) -> Staff:
    return copied[1]


@pytest.fixture
def rid(processed: Template) -> str:
    return (processed.home.parent / "rid").read_text()


def test_outcomes_respect_rules_and_truth(ws: Workspace, rid: str, processed: Template) -> None:
    truth = _truth(processed)
    rows = effective.effective_outcomes(ws, rid).to_pylist()
    assert len(rows) == 400
    outcomes = {r["outcome"] for r in rows}
    assert "DISCLOSE" in outcomes and "WITHHOLD" in outcomes
    for r in rows:
        t = truth[r["item_id"]]
        if r["outcome"] == "DISCLOSE":
            assert r["checks"] == []  # zero disclosures for items whose rules fail
            assert r["record_id"] == t["record_id"]  # zero disclosures to the wrong person
            assert t["defect"] not in ("tin_only", "placeholder_address", "absent_relative")
            assert r["last_known_address"]
        else:
            assert r["last_known_address"] is None  # masked until disclosed
        if r["outcome"] == "REVIEW":  # only what an officer could still disclose
            assert not [c for c in r["checks"] if c != "official-caseload"]
            assert not {"tin_conflict", "suffix_conflict", "namesake_risk"} & set(r["flags"] or [])
        assert r["ruleset_sha256"] and r["model_sha256"]


def test_review_refusals(ws: Workspace, who: Staff, rid: str) -> None:
    assert state_of(ws, rid) == "in_review"
    officer = who["officer"]
    open_ = svc.review_list(ws, officer, rid)
    with pytest.raises(InputError) as exc:
        svc.review_resolve(ws, officer, rid, "WITHHOLD", "  ")
    assert exc.value.code == "bad_argument"
    with pytest.raises(NotFound) as exc:
        svc.review_resolve(ws, officer, rid, "WITHHOLD", "r", items=["item-nope"])
    assert exc.value.code == "not_in_review"
    first = open_[0]["item_id"]
    for records, why in (
        (None, "name the record"),
        ({first: "rec-someone-else"}, "not the candidate"),
    ):
        with pytest.raises(ConflictError) as exc:
            svc.review_resolve(ws, officer, rid, "DISCLOSE", "r", items=[first], records=records)
        assert exc.value.code == "rules_fail" and why in exc.value.message
    n = svc.review_resolve(ws, officer, rid, "WITHHOLD", "r", items=[first])["resolved"]
    assert n == 1
    with pytest.raises(NotFound):  # already resolved
        svc.review_resolve(ws, officer, rid, "WITHHOLD", "r", items=[first])
    info = svc.explain(ws, officer, rid, first)
    assert info["outcome"] == "WITHHOLD" and info["resolution"]["decision"] == "WITHHOLD"


def test_process_is_idempotent_and_refuses(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    officer = who["officer"]
    before = pq.read_table(pipeline.outcomes_path(ws, rid))
    again = svc.process(ws, officer, rid)
    assert again.counts and pq.read_table(pipeline.outcomes_path(ws, rid)).equals(before)
    with pytest.raises(NotFound) as exc:
        svc.explain(ws, officer, rid, "item-nope")
    assert exc.value.code == "unknown_item"
    with pytest.raises(InputError) as exc:
        svc.outcomes(ws, officer, rid, tmp_path / "x.xlsx")
    assert exc.value.code == "unsupported_file_type"
    for ext in (".csv", ".parquet", ".json"):
        info = svc.outcomes(ws, officer, rid, tmp_path / f"o{ext}")
        assert info["rows"] == 400
    with open(tmp_path / "o.csv") as fh:
        head = next(csv.reader(fh))
    assert head == ["item_id", "outcome", "checks", "record_id", "last_known_address"]
    written = [json.loads(e.body) for e in _events(ws, "file.written")]
    outcomes = [w for w in written if w["what"] == "outcomes"]
    assert len(outcomes) == 3 and all(
        w["rows"] == 400 and w["actor"] == "officer" for w in outcomes
    )
    with pytest.raises(ConflictError) as exc:  # never over an existing file
        svc.outcomes(ws, officer, rid, tmp_path / "o.csv")
    assert exc.value.code == "output_exists"
    page = svc.outcomes_page(ws, officer, rid, outcome="WITHHOLD", check="identified", limit=5)
    assert page["total"] > 0 and len(page["items"]) <= 5
    assert all("identified" in r["checks"] for r in page["items"])


def test_a_request_that_fails_the_statute_is_refused(
    ws: Workspace, who: Staff, tmp_path: Path
) -> None:
    generate_request(ws, who.admin, "irc-6103-i-2", 20, 8, tmp_path / "bad")
    env = json.loads((tmp_path / "bad" / "envelope.json").read_text())
    env["signer"]["role"] = "special_agent"  # not a role (i)(2) allows
    (tmp_path / "bad" / "envelope.json").write_text(json.dumps(env))
    rid = keyed_in(ws, who["officer"], who["approver"], tmp_path / "bad").request_id
    res = svc.process(ws, who["officer"], rid)
    assert res.refused and state_of(ws, rid) == "refused"
    assert "signer-authorized" in [c["check"] for c in res.failing_request_checks]
    with pytest.raises(ConflictError):
        svc.process(ws, who["officer"], rid)
    assert not pipeline.outcomes_path(ws, rid).exists()
    assert master.current(ws).exists


def test_disclosure_after_review_names_the_record_and_carries_its_value(
    ws: Workspace, who: Staff, processed: Template, tmp_path: Path
) -> None:
    """The same filer twice, with a date of birth thirty years off and no TIN (so the match
    goes to review): at their own address an officer may disclose, naming the record, and the
    response carries the address; at an address they never filed from, the item never enters
    review."""
    truth = _truth(processed)
    with open(processed.home.parent / "req" / "items.csv") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if truth[r["item_id"]]["defect"] == "none" and r["tin"] == "")
    own = row | {"item_id": "own-address", "dob": f"{int(row['dob'][:4]) - 30}{row['dob'][4:]}"}
    other = own | {"item_id": "never-lived-there", "street": "1 NOWHERE RD", "unit": ""}
    folder = tmp_path / "req"
    folder.mkdir()
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        w.writeheader()
        w.writerows([own, other])
    env = json.loads((processed.home.parent / "req" / "envelope.json").read_text())
    (folder / "envelope.json").write_text(json.dumps(env))
    officer = who["officer"]
    rid = keyed_in(ws, who["dual"], who["officer"], folder).request_id
    svc.process(ws, officer, rid)
    review = {r["item_id"]: r for r in svc.review_list(ws, officer, rid)}
    assert set(review) == {"own-address"}
    outcome = {r["item_id"]: r for r in effective.effective_outcomes(ws, rid).to_pylist()}
    assert outcome["never-lived-there"]["outcome"] == "WITHHOLD"
    assert "address-on-record" in outcome["never-lived-there"]["checks"]
    candidate = review["own-address"]["candidate"]
    svc.review_resolve(
        ws,
        officer,
        rid,
        "DISCLOSE",
        "same person, DOB checked by phone",
        items=["own-address"],
        records={"own-address": candidate},
    )
    svc.prepare(ws, officer, rid)
    svc.approve(ws, who["approver"], rid)
    svc.release(ws, officer, rid, tmp_path / "out")
    with open(tmp_path / "out" / "response.csv") as fh:
        answers = {r["item_id"]: r for r in csv.DictReader(fh)}
    assert answers["own-address"]["answer"] == "disclosed"
    assert answers["own-address"]["last_known_address"]  # never an empty disclosure
    leaf = next(e for e in _events(ws, "disclosure") if e.request_id == rid)
    assert leaf.record_id == candidate
    info = svc.explain(ws, officer, rid, "never-lived-there")
    verdicts = {c["check"]: c["passed"] for c in info["checks"]}
    assert verdicts["address-on-record"] is False


def test_review_groups_resolve_in_bulk_recorded_per_item(
    ws: Workspace, who: Staff, processed: Template, tmp_path: Path
) -> None:
    """Review items come grouped by reason with what the reason means and a sample; a group
    is resolved with one justification, each item to its own candidate, one ledger event per
    item; a group that does not exist, or items and a group at once, are refused. Items that
    give only a name and an address (no date of birth, no TIN) never enter review: nothing an
    officer could look at tells them from a relative at the house."""
    truth = _truth(processed)
    with open(processed.home.parent / "req" / "items.csv") as fh:
        rows = list(csv.DictReader(fh))
    filers = [r for r in rows if truth[r["item_id"]]["defect"] == "none" and r["tin"] == ""][:3]
    # a date of birth thirty years off (a generation: never read as a typo without a TIN)
    items = [
        r | {"item_id": f"dob-off-{i}", "dob": f"{int(r['dob'][:4]) - 30}{r['dob'][4:]}"}
        for i, r in enumerate(filers)
    ] + [r | {"item_id": f"no-dob-{i}", "dob": ""} for i, r in enumerate(filers)]
    folder = tmp_path / "req"
    folder.mkdir()
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(items)
    env = json.loads((processed.home.parent / "req" / "envelope.json").read_text())
    (folder / "envelope.json").write_text(json.dumps(env))
    officer = who["officer"]
    rid = keyed_in(ws, who["dual"], who["officer"], folder).request_id
    svc.process(ws, officer, rid)
    candidates = {r["item_id"]: r["candidate"] for r in svc.review_list(ws, officer, rid)}
    n = len(candidates)
    assert n >= 2  # a filer whose address is withheld for another reason never enters review
    assert all(i.startswith("dob-off-") for i in candidates)
    for i in range(len(filers)):
        info = svc.explain(ws, officer, rid, f"no-dob-{i}")
        assert info["outcome"] != "REVIEW"
        assert "insufficient_identifiers" in info["match"]["reasons"]
        assert "date of birth or a TIN" in info["match"]["meaning"]["insufficient_identifiers"]
    groups = svc.review_groups(ws, officer, rid)
    assert [(g["group"], g["items"], g["disclosable"]) for g in groups] == [
        ("dob_differs+tin_missing", n, n)
    ]
    assert "date of birth" in groups[0]["meaning"][0] and "TIN" in groups[0]["meaning"][1]
    assert {s["item_id"] for s in groups[0]["sample"]} <= {i["item_id"] for i in items}
    with pytest.raises(NotFound) as nf:
        svc.review_resolve(ws, officer, rid, "WITHHOLD", "r", group="tin_conflict")
    assert nf.value.code == "unknown_review_group"
    with pytest.raises(InputError) as both:
        svc.review_resolve(
            ws, officer, rid, "WITHHOLD", "r", items=["dob-off-0"], group=groups[0]["group"]
        )
    assert both.value.code == "bad_argument"
    done = svc.review_resolve(
        ws, officer, rid, "DISCLOSE", "DOBs checked against the case files",
        group="dob_differs+tin_missing",
    )  # fmt: skip
    assert done["resolved"] == n
    assert svc.review_groups(ws, officer, rid) == []
    resolved = [json.loads(e.body) for e in _events(ws, "review.resolved") if e.request_id == rid]
    key = item_key(ws)  # a body names its item by the id's salted commitment, never the id
    assert {(e["item_sha256"], e["record_id"]) for e in resolved} == {
        (item_sha256(key, rid, i), r) for i, r in candidates.items()
    }
    assert not any("item_id" in e for e in resolved)
    assert {e["group"] for e in resolved} == {"dob_differs+tin_missing"}
    outcome = {r["item_id"]: r for r in effective.effective_outcomes(ws, rid).to_pylist()}
    assert {outcome[i]["outcome"] for i in candidates} == {"DISCLOSE"}


def test_a_response_cites_each_authority_once() -> None:
    """Two failing checks that cite the same provision give the citation once, in order (#24)."""
    import pyarrow as pa

    from custodes.decisions.response import _rows

    table = pa.table(
        {
            "item_id": ["item-1"],
            "outcome": ["WITHHOLD"],
            "checks": [["case-number", "item-reason", "signer"]],
        }
    )
    cites = {"case-number": "6103(i)(2)(A)", "item-reason": "6103(i)(2)(A)", "signer": "6103(a)"}
    row = _rows(table, [], cites).to_pylist()[0]
    assert row["citations"] == "6103(i)(2)(A); 6103(a)"
    assert row["defects"] == "case-number;item-reason;signer"
