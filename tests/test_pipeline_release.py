"""The two-person release through the services: end to end, interrupted and finished once,
the two-person rules (hypothesis over roles and sequences), and a release that trusts
nothing on disk; then recall, item by item and the rest, and its certification."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import Template, copy_template
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
from custodes.services import decisions as svc
from custodes.store.tables import disclosures, releases, requests
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from shared_pipeline import _approved, _events, _truth, state_of


@pytest.fixture
def ws(copied: tuple[Workspace, Staff]) -> Workspace:
    return copied[0]


@pytest.fixture
def who(copied: tuple[Workspace, Staff]) -> Staff:
    return copied[1]


@pytest.fixture
def rid(processed: Template) -> str:
    return (processed.home.parent / "rid").read_text()


def _release(ws: Workspace, who: Staff, rid: str, out: Path) -> object:
    assert state_of(ws, rid) == "in_review"
    svc.review_resolve(ws, who["officer"], rid, "WITHHOLD", "not sure enough")
    svc.prepare(ws, who["officer"], rid)
    svc.approve(ws, who["approver"], rid)
    return svc.release(ws, who["officer"], rid, out)


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
