"""The main job end to end: process, review, two-person release, the response, the refusals."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from custodes.decisions import pipeline
from custodes.decisions import release as rel
from custodes.errors import ConflictError, InputError
from custodes.matching import service as matching
from custodes.records import master
from custodes.requests.generator import generate_request, register_parties
from custodes.requests.intake import submit
from custodes.requests.lifecycle import current_state
from custodes.store.tables import disclosures, ledger_events
from custodes.workspace import Workspace, open_workspace


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, _master_template: Path) -> Path:
    """A registered workspace with a 400-item (i)(2) request, trained and processed once."""
    root = tmp_path_factory.mktemp("pipeline")
    home = root / "ws"
    shutil.copytree(_master_template, home)
    shutil.copy(f"{_master_template}.db", f"{home}.db")
    ws = open_workspace(home, f"sqlite:///{home}.db")
    register_parties(ws, "irc-6103-i-2", actor="admin")
    generate_request(ws, "irc-6103-i-2", 400, seed=3, out=root / "req")
    rid = submit(ws, root / "req", actor="clerk").request_id
    matching.train(ws, rid)
    pipeline.process(ws, rid, actor="officer")
    (root / "rid").write_text(rid)
    ws.close()
    return home


@pytest.fixture
def ws(processed: Path, tmp_path: Path) -> Iterator[Workspace]:
    home = tmp_path / "p-ws"
    shutil.copytree(processed, home)
    shutil.copy(f"{processed}.db", tmp_path / "p-ws.db")
    w = open_workspace(home, f"sqlite:///{tmp_path / 'p-ws.db'}")
    yield w
    w.close()


@pytest.fixture
def rid(processed: Path) -> str:
    return (processed.parent / "rid").read_text()


def _truth(processed: Path) -> dict[str, dict[str, str]]:
    with open(processed.parent / "req" / "truth.csv") as fh:
        return {r["item_id"]: r for r in csv.DictReader(fh)}


def _release(ws: Workspace, rid: str, out: Path) -> rel.Released:
    if current_state_of(ws, rid) == "in_review":
        rel.resolve(ws, rid, "WITHHOLD", "not sure enough", actor="officer")
    rel.prepare(ws, rid, actor="officer")
    rel.approve(ws, rid, actor="approver")
    return rel.release(ws, rid, out, actor="officer")


def current_state_of(ws: Workspace, rid: str) -> str:
    with ws.engine.connect() as conn:
        return current_state(conn, rid)


def test_outcomes_respect_rules_and_truth(ws: Workspace, rid: str, processed: Path) -> None:
    truth = _truth(processed)
    rows = pipeline.effective_outcomes(ws, rid).to_pylist()
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
            assert r["last_known_address"] is None
        assert r["ruleset_sha256"] and r["model_sha256"]


def test_release_end_to_end(ws: Workspace, rid: str, tmp_path: Path, processed: Path) -> None:
    done = _release(ws, rid, tmp_path / "out")
    with open(tmp_path / "out" / "response.csv") as fh:
        rows = list(csv.DictReader(fh))
    header = json.loads((tmp_path / "out" / "response.json").read_text())
    assert list(rows[0]) == ["item_id", "answer", "defects", "citations", "last_known_address"]
    assert header["request_id"] == rid and header["provision"] == "irc-6103-i-2"
    assert header["recipients"] and header["use_limits"]
    assert done.disclosed == sum(r["answer"] == "disclosed" for r in rows) > 0
    truth = _truth(processed)
    for r in rows:
        if r["answer"] == rel.NO_INFORMATION:
            # Record-dependent refusals are indistinguishable: nothing but the answer.
            assert r["defects"] == "" and r["citations"] == "" and r["last_known_address"] == ""
        if truth[r["item_id"]]["defect"] in ("absent_relative", "absent_stranger"):
            assert r["answer"] in (rel.NO_INFORMATION, "not processed: defect in the request")
    # Exactly one ledger leaf and one disclosures row per disclosed item.
    with ws.engine.connect() as conn:
        n_disc = conn.execute(sa.select(sa.func.count()).select_from(disclosures)).scalar()
        n_leaf = conn.execute(
            sa.select(sa.func.count())
            .select_from(ledger_events)
            .where(ledger_events.c.type == "disclosure")
        ).scalar()
    assert n_disc == n_leaf == done.disclosed
    # Releasing again (e.g. after a crash) discloses nothing twice.
    again = rel.release(ws, rid, tmp_path / "out2", actor="officer")
    assert again.resumed and again.disclosed == done.disclosed
    assert (tmp_path / "out2" / "response.csv").read_bytes() == (
        tmp_path / "out" / "response.csv"
    ).read_bytes()
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(disclosures)).scalar() == n_disc


def test_interrupted_release_finishes_once(ws: Workspace, rid: str, tmp_path: Path) -> None:
    if current_state_of(ws, rid) == "in_review":
        rel.resolve(ws, rid, "WITHHOLD", "r", actor="officer")
    rel.prepare(ws, rid, actor="officer")
    rel.approve(ws, rid, actor="approver")
    # The intent is recorded but the process died before writing anything.
    from custodes.store.tables import releases

    with ws.engine.begin() as conn:
        conn.execute(sa.update(releases).values(intent_at=dt.datetime.now(dt.UTC)))
    done = rel.release(ws, rid, tmp_path / "out", actor="officer")
    assert done.resumed and current_state_of(ws, rid) == "released"
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(disclosures)).scalar() == (
            done.disclosed
        )


def test_two_person_rules(ws: Workspace, rid: str, tmp_path: Path) -> None:
    with pytest.raises(ConflictError) as exc:
        rel.release(ws, rid, tmp_path / "o", actor="officer")
    assert exc.value.code == "not_approved"
    if current_state_of(ws, rid) == "in_review":
        with pytest.raises(ConflictError) as exc:
            rel.prepare(ws, rid, actor="officer")
        assert exc.value.code == "review_open"
        rel.resolve(ws, rid, "WITHHOLD", "r", actor="officer")
    with pytest.raises(ConflictError) as exc:
        rel.approve(ws, rid, actor="approver")
    assert exc.value.code == "not_prepared"
    prepared = rel.prepare(ws, rid, actor="officer")
    assert prepared["eligible_approvers"] == 0  # nobody holds the approver role: blocked
    for who in ("officer", "clerk"):  # the preparer, the submitter
        with pytest.raises(ConflictError) as exc:
            rel.approve(ws, rid, actor=who)
        assert exc.value.code == "self_approval"
    with pytest.raises(InputError) as exc:
        rel.approve(ws, rid, actor=" ")
    assert exc.value.code == "no_actor"
    rel.approve(ws, rid, actor="approver")
    assert current_state_of(ws, rid) == "approved"


def test_review_refusals(ws: Workspace, rid: str) -> None:
    if current_state_of(ws, rid) != "in_review":
        pytest.skip("this request drew no review items")
    open_ = rel.open_reviews(ws, rid)
    with pytest.raises(InputError) as exc:
        rel.resolve(ws, rid, "WITHHOLD", "  ", actor="officer")
    assert exc.value.code == "bad_argument"
    with pytest.raises(InputError) as exc:
        rel.resolve(ws, rid, "WITHHOLD", "r", actor="officer", items=["item-nope"])
    assert exc.value.code == "not_in_review"
    n = rel.resolve(ws, rid, "WITHHOLD", "r", actor="officer", items=[open_[0]["item_id"]])
    assert n == 1
    with pytest.raises(InputError):  # already resolved
        rel.resolve(ws, rid, "WITHHOLD", "r", actor="officer", items=[open_[0]["item_id"]])
    info = pipeline.explain(ws, rid, open_[0]["item_id"])
    assert info["outcome"] == "WITHHOLD" and info["resolution"]["decision"] == "WITHHOLD"


def test_process_is_idempotent_and_refuses(ws: Workspace, rid: str, tmp_path: Path) -> None:
    before = pq.read_table(pipeline.outcomes_path(ws, rid))
    again = pipeline.process(ws, rid, actor="officer")
    assert again.counts and pq.read_table(pipeline.outcomes_path(ws, rid)).equals(before)
    with pytest.raises(InputError) as exc:
        pipeline.explain(ws, rid, "item-nope")
    assert exc.value.code == "unknown_item"
    with pytest.raises(InputError) as exc:
        pipeline.export_outcomes(ws, rid, tmp_path / "x.xlsx")
    assert exc.value.code == "unsupported_file_type"
    for ext in (".csv", ".parquet", ".json"):
        info = pipeline.export_outcomes(ws, rid, tmp_path / f"o{ext}")
        assert info["rows"] == 400
    with open(tmp_path / "o.csv") as fh:
        head = next(csv.reader(fh))
    assert head == ["item_id", "outcome", "checks", "record_id", "last_known_address"]


def test_a_request_that_fails_the_statute_is_refused(ws: Workspace, tmp_path: Path) -> None:
    generate_request(ws, "irc-6103-i-2", 20, seed=8, out=tmp_path / "bad")
    env = json.loads((tmp_path / "bad" / "envelope.json").read_text())
    env["signer"]["role"] = "special_agent"  # not a role (i)(2) allows
    (tmp_path / "bad" / "envelope.json").write_text(json.dumps(env))
    rid = submit(ws, tmp_path / "bad").request_id
    res = pipeline.process(ws, rid, actor="officer")
    assert res.refused and current_state_of(ws, rid) == "refused"
    assert "signer-authorized" in [c["check"] for c in res.failing_request_checks]
    with pytest.raises(ConflictError):
        pipeline.process(ws, rid, actor="officer")
    assert not pipeline.outcomes_path(ws, rid).exists()
    assert master.current(ws).exists


def test_recall_items_then_the_rest_and_certify(ws: Workspace, rid: str, tmp_path: Path) -> None:
    from custodes.decisions import recall as rc

    with pytest.raises(ConflictError) as exc:  # nothing released yet
        rc.recall(ws, reason="ruling", actor="officer", request_id=rid)
    assert exc.value.code == "illegal_transition"
    done = _release(ws, rid, tmp_path / "out")
    with open(tmp_path / "out" / "response.csv") as fh:
        disclosed = [r["item_id"] for r in csv.DictReader(fh) if r["answer"] == "disclosed"]
    assert len(disclosed) == done.disclosed >= 2
    withheld = pipeline.effective_outcomes(ws, rid).to_pylist()
    not_disclosed = next(r["item_id"] for r in withheld if r["outcome"] == "WITHHOLD")

    bad = tmp_path / "bad.csv"
    bad.write_text(f"request_id,item_id\n{rid},{disclosed[0]}\n{rid},{not_disclosed}\n")
    with pytest.raises(InputError) as exc:
        rc.recall(ws, reason="ruling", actor="officer", items_file=bad)
    assert exc.value.code == "not_disclosed" and "bad.csv:3" in exc.value.message
    with pytest.raises(InputError) as exc:
        rc.recall(ws, reason=" ", actor="officer", request_id=rid)
    assert exc.value.code == "bad_argument"

    one = tmp_path / "one.csv"
    one.write_text(f"request_id,item_id\n{rid},{disclosed[0]}\n")
    first = rc.recall(
        ws, reason="D.D.C. ruling", actor="officer", items_file=one, out=tmp_path / "notice"
    )
    assert first["items"] == 1 and first["fields"] == ["last_known_address"]
    assert current_state_of(ws, rid) == "released"  # the rest still stands
    notice = json.loads((tmp_path / "notice" / "notice.json").read_text())
    assert notice["requests"][0]["items"] == [disclosed[0]]
    assert notice["requests"][0]["recipients"]
    assert "destroy" in (tmp_path / "notice" / "notice.txt").read_text()
    with pytest.raises(ConflictError) as exc:
        rc.recall(ws, reason="again", actor="officer", items_file=one)
    assert exc.value.code == "already_recalled"
    with pytest.raises(ConflictError) as exc:  # the whole request includes the recalled item
        rc.recall(ws, reason="all", actor="officer", request_id=rid)
    assert exc.value.code == "already_recalled"

    rest = tmp_path / "rest.parquet"
    import pyarrow as pa

    pq.write_table(
        pa.table({"request_id": [rid] * (len(disclosed) - 1), "item_id": disclosed[1:]}), rest
    )
    rc.recall(ws, reason="D.D.C. ruling", actor="officer", items_file=rest)
    assert current_state_of(ws, rid) == "recalled"
    with ws.engine.connect() as conn:
        n = conn.execute(
            sa.select(sa.func.count())
            .select_from(ledger_events)
            .where(ledger_events.c.type == "disclosure.recalled")
        ).scalar()
    assert n == len(disclosed)

    assert [r["status"] for r in rc.listing(ws)] == ["open", "open"]
    with pytest.raises(InputError) as exc:
        rc.certify(
            ws,
            "rcl-nope",
            certified_by="X",
            certified_on=dt.date.today(),
            certificate=None,
            actor="officer",
        )
    assert exc.value.code == "unknown_recall"
    with pytest.raises(InputError):
        rc.certify(
            ws,
            first["recall_id"],
            certified_by="X",
            certified_on=dt.date.today() + dt.timedelta(days=2),
            certificate=None,
            actor="officer",
        )
    rc.certify(
        ws,
        first["recall_id"],
        certified_by="Records Officer, ICE",
        certified_on=dt.date.today(),
        certificate="letter 7",
        actor="officer",
    )
    with pytest.raises(ConflictError) as exc:
        rc.certify(
            ws,
            first["recall_id"],
            certified_by="Y",
            certified_on=dt.date.today(),
            certificate=None,
            actor="officer",
        )
    assert exc.value.code == "already_certified"
    assert sorted(r["status"] for r in rc.listing(ws)) == ["certified", "open"]


# --- crash safety: kill the real command at random points, run it again ----------------------


def _cli(home: Path, *args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "custodes", *args, "--home", str(home)]


_SESSION: dict[str, str] = {}


def _env(home: Path) -> dict[str, str]:
    """The environment of a subprocess run by the officer (the session was opened in the
    base workspace; every copy carries it)."""
    import os

    return os.environ | _SESSION | {"CUSTODES_STORE_URL": f"sqlite:///{home}.db"}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    shutil.copy(f"{src}.db", f"{dst}.db")
    return dst


def _kill_at(cmd: list[str], env: dict[str, str], delay: float) -> None:
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def _run(cmd: list[str], env: dict[str, str]) -> float:
    import subprocess
    import time

    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.perf_counter() - t


@pytest.mark.slow
def test_process_killed_anywhere_resumes_identically(
    processed: Path,
    tmp_path: Path,
    sign_in,  # type: ignore[no-untyped-def]
) -> None:
    import random

    base = _copy(processed, tmp_path / "base")
    _SESSION["CUSTODES_SESSION"] = sign_in(base, f"sqlite:///{base}.db")["officer"][
        "CUSTODES_SESSION"
    ]
    ws = open_workspace(base, f"sqlite:///{base}.db")
    generate_request(ws, "irc-6103-i-2", 150, seed=31, out=tmp_path / "req")
    rid = submit(ws, tmp_path / "req").request_id
    ws.close()
    ref = _copy(base, tmp_path / "ref")
    duration = _run(_cli(ref, "process", rid), _env(ref))
    reference = pq.read_table(ref / "requests" / rid / "decisions" / "outcomes.parquet")
    rng = random.Random(5)
    interrupted = []
    for k in range(6):
        home = _copy(base, tmp_path / f"k{k}")
        _kill_at(_cli(home, "process", rid), _env(home), rng.uniform(0.2, duration))
        w = open_workspace(home, f"sqlite:///{home}.db")
        interrupted.append(current_state_of(w, rid))
        w.close()
        _run(_cli(home, "process", rid), _env(home))
        got = pq.read_table(home / "requests" / rid / "decisions" / "outcomes.parquet")
        assert got.equals(reference), f"kill {k}"
        w = open_workspace(home, f"sqlite:///{home}.db")
        assert current_state_of(w, rid) in ("decided", "in_review")
        w.close()
    # The kills landed at different stages (before, between and after the transitions).
    print("states at the kills:", interrupted)
    assert len(set(interrupted)) >= 2


@pytest.mark.slow
def test_release_killed_anywhere_discloses_once_with_ledger(
    processed: Path,
    rid: str,
    tmp_path: Path,
    sign_in,  # type: ignore[no-untyped-def]
) -> None:
    import random

    base = _copy(processed, tmp_path / "base")
    _SESSION["CUSTODES_SESSION"] = sign_in(base, f"sqlite:///{base}.db")["officer"][
        "CUSTODES_SESSION"
    ]
    ws = open_workspace(base, f"sqlite:///{base}.db")
    if current_state_of(ws, rid) == "in_review":
        rel.resolve(ws, rid, "WITHHOLD", "r", actor="officer")
    rel.prepare(ws, rid, actor="officer")
    rel.approve(ws, rid, actor="approver")
    expected = sum(
        o == "DISCLOSE" for o in pipeline.effective_outcomes(ws, rid)["outcome"].to_pylist()
    )
    ws.close()
    ref = _copy(base, tmp_path / "ref")
    duration = _run(_cli(ref, "release", rid, "--out", str(tmp_path / "ref-out")), _env(ref))
    reference = (tmp_path / "ref-out" / "response.csv").read_bytes()
    rng = random.Random(7)
    for k in range(5):
        home = _copy(base, tmp_path / f"k{k}")
        out = tmp_path / f"out{k}"
        _kill_at(
            _cli(home, "release", rid, "--out", str(out)), _env(home), rng.uniform(0.2, duration)
        )
        _run(_cli(home, "release", rid, "--out", str(out)), _env(home))
        assert (out / "response.csv").read_bytes() == reference, f"kill {k}"
        w = open_workspace(home, f"sqlite:///{home}.db")
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
        assert current_state_of(w, rid) == "released"
        from custodes.ledger import service as ledger

        assert ledger.audit_store(w).ok, f"kill {k}"
        w.close()


# --- nobody completes a two-person action alone (hypothesis over roles and sequences) ---------

ROLE_SETS = [
    {"officer"},
    {"approver"},
    {"officer", "approver"},
    {"administrator"},
    {"auditor"},
    {"officer", "auditor"},
]


@pytest.fixture(scope="module")
def staffed(processed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The processed workspace with review resolved and six staff with fixed role sets."""
    from custodes.access import service as acc

    home = _copy(processed, tmp_path_factory.mktemp("staffed") / "ws")
    ws = open_workspace(home, f"sqlite:///{home}.db")
    rid = (processed.parent / "rid").read_text()
    if current_state_of(ws, rid) == "in_review":
        rel.resolve(ws, rid, "WITHHOLD", "r", actor="officer")
    acc.create_user(ws, "root", "correct horse battery", ["administrator"], by=None)
    with ws.engine.connect() as conn:
        root = acc.authenticate(conn, acc.login(ws, "root", "correct horse battery"))
    tokens = {"root": acc.login(ws, "root", "correct horse battery")}
    for i, roles in enumerate(ROLE_SETS[:-3] + ROLE_SETS[-2:]):
        name = f"staff{i}"
        acc.create_user(ws, name, "correct horse battery", sorted(roles), by=root)
        tokens[name] = acc.login(ws, name, "correct horse battery")
    ws.close()
    return home, tokens


# Explicit: an officer and an approver complete it; one person holding both roles cannot.
TWO_PEOPLE = [("prepare", 1), ("approve", 2), ("release", 1)]
ONE_PERSON = [("prepare", 3), ("approve", 3), ("release", 3)]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(steps=TWO_PEOPLE)
@example(steps=ONE_PERSON)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["prepare", "approve", "release"]), st.integers(0, 5)),
        min_size=1,
        max_size=6,
    )
)
def test_no_one_completes_a_two_person_release_alone(
    staffed: tuple[Path, dict], rid: str, tmp_path_factory: pytest.TempPathFactory, steps
) -> None:  # type: ignore[no-untyped-def]
    from custodes.access import service as acc
    from custodes.errors import CustodesError

    src, tokens = staffed
    home = _copy(src, tmp_path_factory.mktemp("h") / "ws")
    ws = open_workspace(home, f"sqlite:///{home}.db")
    names = sorted(tokens)
    did: dict[str, str] = {}
    try:
        for action, who in steps:
            name = names[who % len(names)]
            try:
                actor = acc.authorize(ws, tokens[name], action)
                if action == "prepare":
                    rel.prepare(ws, rid, actor=actor.name)
                elif action == "approve":
                    rel.approve(ws, rid, actor=actor.name)
                else:
                    rel.release(ws, rid, home / "out", actor=actor.name)
                did[action] = name
            except CustodesError:
                continue
        if "approve" in did:
            assert did["approve"] != did["prepare"]
            with ws.engine.connect() as conn:
                roles = acc.roles_of(conn, did["approve"])
            assert "approver" in roles and "administrator" not in roles
        if "release" in did:
            assert "approve" in did and did["approve"] != did["prepare"]
        if steps == TWO_PEOPLE:
            assert did == {"prepare": "staff0", "approve": "staff1", "release": "staff0"}
        if steps == ONE_PERSON:
            assert did == {"prepare": "staff2"}
    finally:
        ws.close()


def test_disclosure_after_review_needs_the_address_on_record(
    ws: Workspace, processed: Path, tmp_path: Path
) -> None:
    """The same filer twice, without a date of birth (so the match goes to review): at their
    own address an officer may disclose; at an address they never filed from, never."""
    truth = _truth(processed)
    with open(processed.parent / "req" / "items.csv") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if truth[r["item_id"]]["defect"] == "none" and r["tin"] == "")
    own = row | {"item_id": "own-address", "dob": ""}
    other = own | {"item_id": "never-lived-there", "street": "1 NOWHERE RD", "unit": ""}
    folder = tmp_path / "req"
    folder.mkdir()
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        w.writeheader()
        w.writerows([own, other])
    env = json.loads((processed.parent / "req" / "envelope.json").read_text())
    (folder / "envelope.json").write_text(json.dumps(env))
    rid = submit(ws, folder, actor="clerk").request_id
    pipeline.process(ws, rid, actor="officer")
    review = {r["item_id"]: r for r in rel.open_reviews(ws, rid)}
    assert set(review) == {"own-address", "never-lived-there"}
    assert review["never-lived-there"]["checks"] == ["address-on-record"]
    with pytest.raises(ConflictError) as exc:
        rel.resolve(ws, rid, "DISCLOSE", "r", actor="officer", items=["never-lived-there"])
    assert exc.value.code == "rules_fail" and "address-on-record" in exc.value.message
    assert (
        rel.resolve(
            ws,
            rid,
            "DISCLOSE",
            "same person, DOB checked by phone",
            actor="officer",
            items=["own-address"],
        )
        == 1
    )
    info = pipeline.explain(ws, rid, "never-lived-there")
    verdicts = {c["check"]: c["passed"] for c in info["checks"]}
    assert verdicts["identified"] is None and verdicts["address-on-record"] is False
