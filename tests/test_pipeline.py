"""The main job end to end through the services: process, review, two-person release, the
response, the refusals, and the integrity of what is released."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import PASSWORD, Template, copy_template, keyed_in, one_for_review
from custodes.access import sessions
from custodes.access.credentials import item_key
from custodes.decisions import effective, pipeline
from custodes.decisions.response import NO_INFORMATION
from custodes.errors import (
    AccessDenied,
    ConflictError,
    CustodesError,
    InputError,
    IntegrityError,
    NotFound,
)
from custodes.ledger import audit
from custodes.ledger.events import item_sha256
from custodes.records import master
from custodes.requests.lifecycle import current_state
from custodes.services import decisions as svc
from custodes.services import matching as matching_svc
from custodes.services.requests import generate as generate_request
from custodes.services.rules import register_parties
from custodes.store.tables import disclosures, ledger_events, releases, requests
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Template:
    """A registered workspace with a 400-item (i)(2) request submitted by 'dual' (an officer
    who also approves), trained and processed once by 'officer'; two of its items are made to
    go to review (`one_for_review`), so the tests below always meet an open review."""
    root = tmp_path_factory.mktemp("pipeline")
    ws, people = copy_template(_master_template, root)
    register_parties(ws, people.admin, "irc-6103-i-2")
    staff_mod.add(people, "dual", ["officer", "approver"])
    generate_request(ws, people.admin, "irc-6103-i-2", 400, 3, root / "req")
    one_for_review(root / "req", 2)
    rid = keyed_in(ws, people["dual"], people["officer"], root / "req").request_id
    matching_svc.train(ws, people["officer"], rid)
    svc.process(ws, people["officer"], rid)
    assert state_of(ws, rid) == "in_review"
    (root / "rid").write_text(rid)
    ws.close()
    return Template(root / "master-ws", root / "master-ws.db", people)


@pytest.fixture
def copied(processed: Template, tmp_path: Path) -> Iterator[tuple[Workspace, Staff]]:
    ws, people = copy_template(processed, tmp_path)
    yield ws, people
    ws.close()


@pytest.fixture
def ws(copied: tuple[Workspace, Staff]) -> Workspace:
    return copied[0]


@pytest.fixture
def who(copied: tuple[Workspace, Staff]) -> Staff:
    return copied[1]


@pytest.fixture
def rid(processed: Template) -> str:
    return (processed.home.parent / "rid").read_text()


def _truth(processed: Template) -> dict[str, dict[str, str]]:
    with open(processed.home.parent / "req" / "truth.csv") as fh:
        return {r["item_id"]: r for r in csv.DictReader(fh)}


def state_of(ws: Workspace, rid: str) -> str:
    with ws.engine.connect() as conn:
        return current_state(conn, rid)


def _release(ws: Workspace, who: Staff, rid: str, out: Path) -> object:
    assert state_of(ws, rid) == "in_review"
    svc.review_resolve(ws, who["officer"], rid, "WITHHOLD", "not sure enough")
    svc.prepare(ws, who["officer"], rid)
    svc.approve(ws, who["approver"], rid)
    return svc.release(ws, who["officer"], rid, out)


def _events(ws: Workspace, kind: str) -> list[object]:
    with ws.engine.connect() as conn:
        return conn.execute(
            sa.select(ledger_events)
            .where(ledger_events.c.type == kind)
            .order_by(ledger_events.c.idx)
        ).all()


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


def test_release_end_to_end(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path, processed: Template
) -> None:
    done = _release(ws, who, rid, tmp_path / "out")
    with open(tmp_path / "out" / "response.csv") as fh:
        rows = list(csv.DictReader(fh))
    header = json.loads((tmp_path / "out" / "response.json").read_text())
    assert list(rows[0]) == ["item_id", "answer", "defects", "citations", "last_known_address"]
    assert header["request_id"] == rid and header["provision"] == "irc-6103-i-2"
    assert header["recipients"] and header["use_limits"]
    assert header["checkpoint"].startswith("custodes.test/ledger\n")
    assert done.disclosed == sum(r["answer"] == "disclosed" for r in rows) > 0
    truth = _truth(processed)
    for r in rows:
        if r["answer"] == NO_INFORMATION:
            # Record-dependent refusals are indistinguishable: nothing but the answer.
            assert r["defects"] == "" and r["citations"] == "" and r["last_known_address"] == ""
        if r["answer"] == "disclosed":
            assert r["last_known_address"]  # a disclosure always carries its value
        if truth[r["item_id"]]["defect"] in ("absent_relative", "absent_stranger"):
            assert r["answer"] in (NO_INFORMATION, "not processed: defect in the request")
    # Exactly one ledger leaf and one disclosures row per disclosed item.
    with ws.engine.connect() as conn:
        n_disc = conn.execute(sa.select(sa.func.count()).select_from(disclosures)).scalar()
    assert n_disc == len(_events(ws, "disclosure")) == done.disclosed
    # Delivering again (e.g. after a crash) discloses nothing twice, and is recorded.
    again = svc.release(ws, who["officer"], rid, tmp_path / "out2")
    assert again.resumed and again.disclosed == done.disclosed
    assert (tmp_path / "out2" / "response.csv").read_bytes() == (
        tmp_path / "out" / "response.csv"
    ).read_bytes()
    assert len(_events(ws, "release.delivered")) == 1 and len(_events(ws, "release.done")) == 1
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(disclosures)).scalar() == n_disc
    with pytest.raises(ConflictError) as exc:  # never over existing files
        svc.release(ws, who["officer"], rid, tmp_path / "out2")
    assert exc.value.code == "output_exists"


def test_interrupted_release_finishes_once(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    assert state_of(ws, rid) == "in_review"
    svc.review_resolve(ws, who["officer"], rid, "WITHHOLD", "r")
    svc.prepare(ws, who["officer"], rid)
    svc.approve(ws, who["approver"], rid)
    # The intent is recorded but the process died before writing anything.
    with ws.engine.begin() as conn:
        conn.execute(sa.update(releases).values(intent_at=dt.datetime.now(dt.UTC)))
    done = svc.release(ws, who["officer"], rid, tmp_path / "out")
    assert done.resumed and state_of(ws, rid) == "released"
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(disclosures)).scalar() == (
            done.disclosed
        )


def test_two_person_rules(ws: Workspace, who: Staff, rid: str, tmp_path: Path) -> None:
    officer, approver, dual = who["officer"], who["approver"], who["dual"]
    with pytest.raises(ConflictError) as exc:
        svc.release(ws, officer, rid, tmp_path / "o")
    assert exc.value.code == "not_approved"
    assert state_of(ws, rid) == "in_review"
    with pytest.raises(ConflictError) as exc:
        svc.prepare(ws, officer, rid)
    assert exc.value.code == "review_open"
    svc.review_resolve(ws, officer, rid, "WITHHOLD", "r")
    with pytest.raises(ConflictError) as exc:
        svc.approve(ws, approver, rid)
    assert exc.value.code == "not_prepared"
    with pytest.raises(AccessDenied) as exc:  # the role table: an officer may not approve
        svc.approve(ws, officer, rid)
    assert exc.value.code == "forbidden"
    prepared = svc.prepare(ws, officer, rid)
    assert prepared["eligible_approvers"] == 1  # 'approver'; 'dual' submitted it
    with pytest.raises(AccessDenied) as exc:  # the submitter
        svc.approve(ws, dual, rid)
    assert exc.value.code == "self_approval"
    step = svc.next_step(ws, dual, rid)
    assert step["next"] == "approve" and not step["you_may"] and "submitted" in step["why_not"]
    assert svc.next_step(ws, approver, rid)["you_may"]
    svc.approve(ws, approver, rid)
    assert state_of(ws, rid) == "approved"


def test_one_person_cannot_prepare_and_approve(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    dual = who["dual"]
    assert state_of(ws, rid) == "in_review"
    svc.review_resolve(ws, dual, rid, "WITHHOLD", "r")
    svc.prepare(ws, dual, rid)
    with pytest.raises(AccessDenied) as exc:
        svc.approve(ws, dual, rid)
    assert exc.value.code == "self_approval"


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


def test_recall_items_then_the_rest_and_certify(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    officer = who["officer"]
    with pytest.raises(ConflictError) as exc:  # nothing released yet
        svc.recall(ws, officer, reason="ruling", request_id=rid)
    assert exc.value.code == "illegal_transition"
    done = _release(ws, who, rid, tmp_path / "out")
    with open(tmp_path / "out" / "response.csv") as fh:
        disclosed = [r["item_id"] for r in csv.DictReader(fh) if r["answer"] == "disclosed"]
    assert len(disclosed) == done.disclosed >= 2
    withheld = effective.effective_outcomes(ws, rid).to_pylist()
    not_disclosed = next(r["item_id"] for r in withheld if r["outcome"] == "WITHHOLD")

    bad = tmp_path / "bad.csv"
    bad.write_text(f"request_id,item_id\n{rid},{disclosed[0]}\n{rid},{not_disclosed}\n")
    with pytest.raises(NotFound) as exc:
        svc.recall(ws, officer, reason="ruling", items_file=bad)
    assert exc.value.code == "not_disclosed" and "bad.csv:3" in exc.value.message
    with pytest.raises(InputError) as exc:
        svc.recall(ws, officer, reason=" ", request_id=rid)
    assert exc.value.code == "bad_argument"

    one = tmp_path / "one.csv"
    one.write_text(f"request_id,item_id\n{rid},{disclosed[0]}\n")
    first = svc.recall(ws, officer, reason="D.D.C. ruling", items_file=one, out=tmp_path / "notice")
    assert first["items"] == 1 and first["fields"] == ["last_known_address"]
    assert state_of(ws, rid) == "released"  # the rest still stands
    notice = json.loads((tmp_path / "notice" / "notice.json").read_text())
    assert notice["requests"][0]["items"] == [disclosed[0]]
    assert notice["requests"][0]["recipients"]
    assert "destroy" in (tmp_path / "notice" / "notice.txt").read_text()
    with pytest.raises(ConflictError) as exc:
        svc.recall(ws, officer, reason="again", items_file=one)
    assert exc.value.code == "already_recalled"
    # the whole request: what is left is recalled, the earlier recall of one item stands
    whole = svc.recall(ws, officer, reason="D.D.C. ruling", request_id=rid)
    assert whole["items"] == len(disclosed) - 1
    assert state_of(ws, rid) == "recalled"
    with pytest.raises(ConflictError) as exc:
        svc.recall(ws, officer, reason="all again", request_id=rid)
    assert exc.value.code == "illegal_transition"
    rest = tmp_path / "rest.parquet"
    import pyarrow as pa

    pq.write_table(
        pa.table({"request_id": [rid] * (len(disclosed) - 1), "item_id": disclosed[1:]}), rest
    )
    with pytest.raises(ConflictError) as exc:  # an explicit list: every item must be new
        svc.recall(ws, officer, reason="D.D.C. ruling", items_file=rest)
    assert exc.value.code == "already_recalled"
    assert len(_events(ws, "disclosure.recalled")) == len(disclosed)

    assert [r["status"] for r in svc.recalls(ws, officer)] == ["open", "open"]
    with pytest.raises(NotFound) as exc:
        svc.certify(ws, officer, "rcl-nope", certified_by="X", certified_on=dt.date.today())
    assert exc.value.code == "unknown_recall"
    with pytest.raises(InputError):
        svc.certify(
            ws,
            officer,
            first["recall_id"],
            certified_by="X",
            certified_on=dt.date.today() + dt.timedelta(days=2),
        )
    svc.certify(
        ws,
        officer,
        first["recall_id"],
        certified_by="Records Officer, ICE",
        certified_on=dt.date.today(),
        certificate="letter 7",
    )
    with pytest.raises(ConflictError) as exc:
        svc.certify(ws, officer, first["recall_id"], certified_by="Y", certified_on=dt.date.today())
    assert exc.value.code == "already_certified"
    assert sorted(r["status"] for r in svc.recalls(ws, officer)) == ["certified", "open"]


# --- what is released is what was approved (issue "Close every hole", items 6-8, 13-15) ------


def _approved(ws: Workspace, who: Staff, rid: str) -> None:
    assert state_of(ws, rid) == "in_review"
    svc.review_resolve(ws, who["officer"], rid, "WITHHOLD", "r")
    svc.prepare(ws, who["officer"], rid)
    svc.approve(ws, who["approver"], rid)


def test_an_outcomes_file_edited_after_approval_is_not_released(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    """Editing decisions/outcomes.parquet (WITHHOLD → DISCLOSE) after approval made release
    disclose what nobody approved; now release refuses, and the refusal is a ledger event."""
    _approved(ws, who, rid)
    path = pipeline.outcomes_path(ws, rid)
    table = pq.read_table(path).to_pylist()
    for r in table:
        if r["outcome"] == "WITHHOLD" and r["candidate"]:
            r["outcome"] = "DISCLOSE"
            r["record_id"] = r["candidate"]
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(path)), path)
    with pytest.raises(IntegrityError) as exc:
        svc.release(ws, who["officer"], rid, tmp_path / "out")
    # The file no longer hashes to its record (issue #23): refused before it is read.
    assert exc.value.code == "file_tampered"
    assert not (tmp_path / "out" / "response.csv").exists()
    assert state_of(ws, rid) == "approved" and not _events(ws, "disclosure")
    assert json.loads(_events(ws, "file.refused")[0].body)["role"] == "outcomes"


def test_an_edited_envelope_is_not_released(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    _approved(ws, who, rid)
    env_path = ws.request_folder(rid) / "envelope.json"
    env = json.loads(env_path.read_text())
    env["officials"].append({"id": "OFF-999", "name": "Someone Else", "title": "Agent"})
    env_path.write_text(json.dumps(env))
    with pytest.raises(IntegrityError) as exc:
        svc.release(ws, who["officer"], rid, tmp_path / "out")
    assert exc.value.code == "file_tampered"  # the envelope no longer hashes to its record


def test_a_reset_state_never_releases_twice(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    """Deleting a disclosure row and resetting the request to approved gave a second release;
    the ledger's release.done is the truth."""
    _release(ws, who, rid, tmp_path / "out")
    with ws.engine.begin() as conn:
        conn.execute(
            sa.delete(disclosures).where(
                disclosures.c.item_id.in_(
                    sa.select(disclosures.c.item_id).limit(1).scalar_subquery()
                )
            )
        )
        conn.execute(sa.update(requests).values(state="approved"))
    shutil.rmtree(ws.request_folder(rid) / "release")
    with pytest.raises(IntegrityError) as exc:
        svc.release(ws, who["officer"], rid, tmp_path / "again")
    assert exc.value.code == "already_released"
    assert len(_events(ws, "release.done")) == 1


def test_release_refuses_a_planted_symlink(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    _approved(ws, who, rid)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "response.csv").symlink_to(victim)
    with pytest.raises(ConflictError) as exc:
        svc.release(ws, who["officer"], rid, out)
    assert exc.value.code == "output_exists"
    assert victim.read_text() == "precious"
    link = tmp_path / "link-dir"
    link.symlink_to(tmp_path)
    with pytest.raises(InputError) as exc:
        svc.release(ws, who["officer"], rid, link)
    assert exc.value.code == "bad_path"


def test_release_refuses_without_a_ledger_key(
    ws: Workspace, who: Staff, rid: str, tmp_path: Path
) -> None:
    _approved(ws, who, rid)
    (ws.keys / "ledger.key").rename(tmp_path / "elsewhere.key")
    with pytest.raises(ConflictError) as exc:
        svc.release(ws, who["officer"], rid, tmp_path / "out")
    assert exc.value.code == "no_ledger_key"
    assert state_of(ws, rid) == "approved" and not _events(ws, "disclosure")


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


# --- crash safety: kill the real command at random points, run it again ----------------------


def _cli(home: Path, *args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "custodes", *args, "--home", str(home)]


def _env(home: Path, token: str) -> dict[str, str]:
    """A subprocess run by the officer (the session was opened in the base workspace; every
    copy carries it)."""
    return os.environ | {
        "CUSTODES_SESSION": token,
        "CUSTODES_STORE_URL": f"sqlite:///{home.parent / (home.name + '.db')}",
    }


def _copy(src: Template | Path, dst: Path) -> Path:
    """A copy of a workspace (its folder and its SQLite store beside it)."""
    home = src.home if isinstance(src, Template) else src
    dst.mkdir()
    shutil.copytree(home, dst / "master-ws")
    shutil.copy(home.parent / (home.name + ".db"), dst / "master-ws.db")
    return dst / "master-ws"


def _killed_at(cmd: list[str], env: dict[str, str], point: int) -> None:
    """Run `cmd` with a failpoint that kills it (SIGKILL) at the `point`-th named point it
    passes (custodes.failpoints): chosen by event, not by time, so the kill lands on the same
    step however loaded the machine."""
    import signal
    import subprocess

    done = subprocess.run(
        cmd, env=env | {"CUSTODES_FAILPOINT": f"any:{point}"}, capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, (point, done.returncode, done.stderr[-2000:])


def _run(cmd: list[str], env: dict[str, str]) -> None:
    import subprocess

    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def _open(home: Path) -> Workspace:
    from custodes.workspace import open_workspace

    return open_workspace(home, f"sqlite:///{home.parent / (home.name + '.db')}")


def _login(home: Path) -> str:
    """A session of the officer opened in `home` (every copy made afterwards carries it)."""
    ws = _open(home)
    try:
        return sessions.login(ws, "officer", PASSWORD)
    finally:
        ws.close()


@pytest.mark.slow
def test_process_killed_anywhere_resumes_identically(processed: Template, tmp_path: Path) -> None:
    import random

    base = _copy(processed, tmp_path / "base")
    officer_token = _login(base)
    ws = _open(base)
    generate_request(ws, processed.callers.admin, "irc-6103-i-2", 150, 31, tmp_path / "req")
    rid = keyed_in(
        ws, processed.callers["officer"], processed.callers["approver"], tmp_path / "req"
    ).request_id
    ws.close()
    ref = _copy(base, tmp_path / "ref")
    passed = tmp_path / "points"  # the named points an uninterrupted run passes, in order
    _run(
        _cli(ref, "process", rid),
        _env(ref, officer_token) | {"CUSTODES_FAILPOINT": f"count:{passed}"},
    )
    points = len(passed.read_text().splitlines())
    assert points >= 6, passed.read_text()
    reference = pq.read_table(ref / "requests" / rid / "decisions" / "outcomes.parquet")
    rng = random.Random(5)
    interrupted = []
    # the first and the last point, and four drawn between them
    at = sorted({1, points, *rng.sample(range(2, points), min(4, points - 2))})
    for k, point in enumerate(at):
        home = _copy(base, tmp_path / f"k{k}")
        _killed_at(_cli(home, "process", rid), _env(home, officer_token), point)
        w = _open(home)
        interrupted.append(state_of(w, rid))
        w.close()
        _run(_cli(home, "process", rid), _env(home, officer_token))
        got = pq.read_table(home / "requests" / rid / "decisions" / "outcomes.parquet")
        assert got.equals(reference), f"kill {k} at point {point}"
        w = _open(home)
        assert state_of(w, rid) in ("decided", "in_review")
        w.close()
    # The kills landed at different stages (before, between and after the transitions).
    print("states at the kills:", interrupted)
    assert len(set(interrupted)) >= 2


@pytest.mark.slow
def test_release_killed_anywhere_discloses_once_with_ledger(
    processed: Template, rid: str, tmp_path: Path
) -> None:
    import random

    base = _copy(processed, tmp_path / "base")
    officer_token = _login(base)
    ws = _open(base)
    _approved(ws, processed.callers, rid)
    expected = sum(
        o == "DISCLOSE" for o in effective.effective_outcomes(ws, rid)["outcome"].to_pylist()
    )
    ws.close()
    ref = _copy(base, tmp_path / "ref")
    passed = tmp_path / "points"  # the named points an uninterrupted release passes
    env = _env(ref, officer_token) | {"CUSTODES_FAILPOINT": f"count:{passed}"}
    _run(_cli(ref, "release", rid, "--out", str(tmp_path / "ref-out")), env)
    reference = (tmp_path / "ref-out" / "response.csv").read_bytes()
    points = len(passed.read_text().splitlines())
    assert points >= 5, passed.read_text()
    rng = random.Random(7)
    at = sorted({1, points, *rng.sample(range(2, points), min(3, points - 2))})
    for k, point in enumerate(at):
        home = _copy(base, tmp_path / f"k{k}")
        out = tmp_path / f"out{k}"
        _killed_at(_cli(home, "release", rid, "--out", str(out)), _env(home, officer_token), point)
        shutil.rmtree(out, ignore_errors=True)
        _run(_cli(home, "release", rid, "--out", str(out)), _env(home, officer_token))
        assert (out / "response.csv").read_bytes() == reference, f"kill {k}"
        w = _open(home)
        with w.engine.connect() as conn:
            rows = conn.execute(sa.select(disclosures.c.item_id)).scalars().all()
            leaves = (
                conn.execute(
                    sa.select(ledger_events.c.record_id).where(ledger_events.c.type == "disclosure")
                )
                .scalars()
                .all()
            )
        assert len(rows) == len(set(rows)) == len(leaves) == expected, f"kill {k}"
        assert state_of(w, rid) == "released"
        assert audit.audit_store(w).ok, f"kill {k}"
        w.close()


# --- nobody completes a two-person action alone (hypothesis over roles and sequences) ---------

ROLE_SETS = [
    ("staff0", ["officer"]),
    ("staff1", ["approver"]),
    ("staff2", ["officer", "approver"]),
    ("staff3", ["auditor"]),
    ("staff4", ["officer", "auditor"]),
]


@pytest.fixture(scope="module")
def staffed(processed: Template, tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The processed workspace with review resolved and staff with fixed role sets (the
    administrators included)."""
    root = tmp_path_factory.mktemp("staffed")
    ws, people = copy_template(processed, root)
    rid = (processed.home.parent / "rid").read_text()
    assert state_of(ws, rid) == "in_review"
    svc.review_resolve(ws, people["officer"], rid, "WITHHOLD", "r")
    for name, roles in ROLE_SETS:
        staff_mod.add(people, name, roles)
    ws.close()
    return Template(root / "master-ws", root / "master-ws.db", people)


# Explicit: an officer and an approver complete it; one person holding both roles cannot.
TWO_PEOPLE = [("prepare", 0), ("approve", 1), ("release", 0)]
ONE_PERSON = [("prepare", 2), ("approve", 2), ("release", 2)]
NAMES = [n for n, _ in ROLE_SETS] + ["admin", "admin2"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(steps=TWO_PEOPLE)
@example(steps=ONE_PERSON)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["prepare", "approve", "release"]), st.integers(0, 6)),
        min_size=1,
        max_size=6,
    )
)
def test_no_one_completes_a_two_person_release_alone(
    staffed: Template, rid: str, tmp_path_factory: pytest.TempPathFactory, steps
) -> None:  # type: ignore[no-untyped-def]
    from custodes.access.users import roles_of

    ws, people = copy_template(staffed, tmp_path_factory.mktemp("h"))
    did: dict[str, str] = {}
    fns = {"prepare": svc.prepare, "approve": svc.approve}
    try:
        for action, who in steps:
            name = NAMES[who % len(NAMES)]
            try:
                if action == "release":
                    svc.release(ws, people[name], rid, ws.home / f"out-{len(did)}")
                else:
                    fns[action](ws, people[name], rid)
                did[action] = name
            except CustodesError:
                continue
        if "approve" in did:
            assert did["approve"] != did["prepare"]
            with ws.engine.connect() as conn:
                roles = roles_of(conn, did["approve"])
            assert "approver" in roles and "administrator" not in roles
        if "release" in did:
            assert "approve" in did and did["approve"] != did["prepare"]
        if steps == TWO_PEOPLE:
            assert did == {"prepare": "staff0", "approve": "staff1", "release": "staff0"}
        if steps == ONE_PERSON:
            assert did == {"prepare": "staff2"}
    finally:
        ws.close()


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
