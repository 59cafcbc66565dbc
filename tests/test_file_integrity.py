"""Every file custodes reads back is checked against the hash the ledger recorded when it was
written (issue #23, finding 2): an edit on disk is refused when the file is used, with a coded
error naming the file's role and path (never a value), the refusal is recorded, and
`ledger verify` reports the file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from conftest import Template, copy_template
from custodes.errors import CustodesError, IntegrityError
from custodes.records import master
from custodes.services import decisions, ledger, matching, requests, rules
from custodes.store.tables import ledger_events
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

ATTACKER = "1 ATTACKER WAY"


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Template:
    """A workspace with request 'decided' processed (nothing in review) and request
    'received' waiting to be processed."""
    root = tmp_path_factory.mktemp("files")
    ws, people = copy_template(_master_template, root)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    rids = {}
    for name, seed in (("decided", 3), ("received", 4)):
        requests.generate(ws, people.admin, "irc-6103-i-2", 60, seed, root / name)
        rids[name] = requests.submit(ws, people["requester"], root / name).request_id
    matching.train(ws, people["officer"], rids["decided"])
    decisions.process(ws, people["officer"], rids["decided"])
    if decisions.next_step(ws, people["officer"], rids["decided"])["state"] == "in_review":
        decisions.review_resolve(ws, people["officer"], rids["decided"], "WITHHOLD", "unsure")
    (root / "rids.json").write_text(json.dumps(rids))
    ws.close()
    return Template(root / "master-ws", root / "master-ws.db", people)


@pytest.fixture
def copied(staged: Template, tmp_path: Path) -> Iterator[tuple[Workspace, Staff, dict[str, str]]]:
    ws, people = copy_template(staged, tmp_path)
    yield ws, people, json.loads((staged.home.parent / "rids.json").read_text())
    ws.close()


def _attacker_way(ws: Workspace) -> Path:
    """The attack as it was done: the latest street of 34 people set to 1 ATTACKER WAY."""
    path = master.current(ws).path("addresses")
    t = pq.read_table(path)
    latest = pc.equal(
        t["tax_year"],
        pc.max(t["tax_year"]),
    )
    hit = pc.and_(latest, pc.is_in(t["record_id"], t.filter(latest)["record_id"][:34]))
    streets = pc.if_else(hit, pa.scalar(ATTACKER), t["street"])
    pq.write_table(t.set_column(t.schema.get_field_index("street"), "street", streets), path)
    return path


def _refused(ws: Workspace, exc: pytest.ExceptionInfo[IntegrityError], role: str, rel: str) -> None:
    assert exc.value.code == "file_tampered"
    assert role in exc.value.message and rel in exc.value.message
    assert ATTACKER not in exc.value.message
    with ws.engine.connect() as conn:
        bodies = [
            json.loads(b)
            for b in conn.execute(
                sa.select(ledger_events.c.body).where(ledger_events.c.type == "file.refused")
            ).scalars()
        ]
    assert {"role": role, "path": rel} in [{k: b[k] for k in ("role", "path")} for b in bodies]


def _reported(ws: Workspace, people: Staff, rel: str) -> None:
    rep = ledger.verify_store(ws, people["auditor"])
    assert not rep.ok
    assert any(rel in p for p in rep.problems), rep.problems


def test_the_attacker_way_edit_is_refused_at_process_and_reported(copied) -> None:  # type: ignore[no-untyped-def]
    ws, people, rids = copied
    assert ledger.verify_store(ws, people["auditor"]).ok
    rel = _attacker_way(ws).relative_to(ws.home).as_posix()
    with pytest.raises(IntegrityError) as exc:
        decisions.process(ws, people["officer"], rids["received"])
    _refused(ws, exc, "master.addresses", rel)
    assert decisions.next_step(ws, people["officer"], rids["received"])["state"] == "received"
    _reported(ws, people, rel)


def test_the_attacker_way_edit_is_refused_at_prepare_approve_and_release(  # type: ignore[no-untyped-def]
    copied, tmp_path: Path
) -> None:
    ws, people, rids = copied
    rid, officer, approver = rids["decided"], people["officer"], people["approver"]
    path = master.current(ws).path("addresses")
    shutil.copy(path, tmp_path / "genuine.parquet")
    rel = path.relative_to(ws.home).as_posix()
    steps: list[Callable[[], object]] = [
        lambda: decisions.prepare(ws, officer, rid),
        lambda: decisions.approve(ws, approver, rid),
        lambda: decisions.release(ws, officer, rid, tmp_path / "out"),
    ]
    for step in steps:
        _attacker_way(ws)
        with pytest.raises(IntegrityError) as exc:
            step()
        _refused(ws, exc, "master.addresses", rel)
        shutil.copy(tmp_path / "genuine.parquet", path)  # put back: the step goes through
        step()
    response = (tmp_path / "out" / "response.csv").read_text()
    assert ATTACKER not in response


def _edit_parquet(path: Path) -> None:
    """One value changed, the file otherwise as custodes wrote it."""
    t = pq.read_table(path)
    col = next(i for i, f in enumerate(t.schema) if pa.types.is_string(f.type))
    values = t.column(col).to_pylist()
    values[0] = "EDITED" if values[0] != "EDITED" else "edited"
    pq.write_table(t.set_column(col, t.schema[col], pa.array(values, t.schema[col].type)), path)


def _edit_text(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data.replace(b"0", b"1", 1) if b"0" in data else data + b" ")


def _model(ws: Workspace, rids: dict[str, str]) -> Path:
    sha = (ws.home / "models" / "CURRENT").read_text().strip()
    return ws.home / "models" / f"{sha}.json"


def _release_then(ws: Workspace, people: Staff, rid: str) -> None:
    decisions.prepare(ws, people["officer"], rid)
    decisions.approve(ws, people["approver"], rid)
    decisions.release(ws, people["officer"], rid)


# role, the file (workspace, rids) -> path, what happens before the edit, the use refused.
ROLES = {
    "request.items": (
        lambda ws, r: ws.request_folder(r["received"]) / "items.parquet",
        None,
        lambda ws, p, r: decisions.process(ws, p["officer"], r["received"]),
    ),
    "model": (
        _model,
        None,
        lambda ws, p, r: decisions.process(ws, p["officer"], r["received"]),
    ),
    "match.results": (
        lambda ws, r: ws.request_folder(r["decided"]) / "match" / "linked.parquet",
        None,
        lambda ws, p, r: decisions.prepare(ws, p["officer"], r["decided"]),
    ),
    "match.items": (
        lambda ws, r: ws.request_folder(r["decided"]) / "match" / "std.parquet",
        None,
        lambda ws, p, r: decisions.explain(
            ws,
            p["officer"],
            r["decided"],
            decisions.outcomes_page(ws, p["officer"], r["decided"], limit=1)["items"][0]["item_id"],
        ),
    ),
    "outcomes": (
        lambda ws, r: ws.request_folder(r["decided"]) / "decisions" / "outcomes.parquet",
        None,
        lambda ws, p, r: decisions.prepare(ws, p["officer"], r["decided"]),
    ),
    "response.csv": (
        lambda ws, r: ws.request_folder(r["decided"]) / "release" / "response.csv",
        lambda ws, p, r: _release_then(ws, p, r["decided"]),
        lambda ws, p, r: decisions.download(ws, p["requester"], r["decided"]),
    ),
}


@pytest.mark.parametrize("role", ROLES)
def test_each_file_is_refused_when_used_and_reported_by_verify(copied, role: str) -> None:  # type: ignore[no-untyped-def]
    ws, people, rids = copied
    where, before, use = ROLES[role]
    if before:
        before(ws, people, rids)
    path = where(ws, rids)
    (_edit_parquet if path.suffix == ".parquet" else _edit_text)(path)
    rel = path.relative_to(ws.home).as_posix()
    with pytest.raises(IntegrityError) as exc:
        use(ws, people, rids)
    _refused(ws, exc, role, rel)
    _reported(ws, people, rel)


def test_a_file_put_back_by_hand_or_a_redirected_row_is_caught(copied) -> None:  # type: ignore[no-untyped-def]
    """A model planted under a name of its own hash and made current: unrecorded, refused; a
    `files` row pointed at another genuine event: reported by verify."""
    ws, people, rids = copied
    models = ws.home / "models"
    genuine = _model(ws, rids)
    doc = json.loads(genuine.read_text())
    doc["thresholds"]["min_probability"] = 0.5
    from custodes.matching.model import Model

    planted = Model.from_document(doc)
    (models / f"{planted.sha256}.json").write_bytes(planted.canonical())
    (models / "CURRENT").write_text(planted.sha256 + "\n")
    with pytest.raises(IntegrityError) as exc:
        decisions.process(ws, people["officer"], rids["received"])
    _refused(ws, exc, "model.current", "models/CURRENT")
    (models / "CURRENT").write_text(genuine.stem + "\n")
    from custodes.store.tables import files

    with ws.engine.begin() as conn:
        other = conn.execute(
            sa.select(files.c.event_idx).where(files.c.path.like("%people.parquet"))
        ).scalar()
        conn.execute(
            sa.update(files).where(files.c.path == "models/CURRENT").values(event_idx=other)
        )
    _reported(ws, people, "models/CURRENT")


def test_a_rule_set_proposed_from_readable_files_keeps_the_workspace_owner_only(  # type: ignore[no-untyped-def]
    workspace: Workspace, staff: Staff, tmp_path: Path
) -> None:
    """Found by the tamper campaign's build: a rule-set folder copied from the installed
    package (mode 644) was kept with its modes, and the workspace then refused to open
    (`workspace_exposed`)."""
    from custodes import rules as rules_pkg
    from custodes.workspace import exposed

    folder = tmp_path / "rules"
    shutil.copytree(Path(rules_pkg.__file__).parent / "reference", folder)
    for p in (folder, *folder.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)
    text = (folder / "ruleset.yaml").read_text()
    (folder / "ruleset.yaml").write_text(text.replace('version: "', 'version: "t', 1))
    rules.propose(workspace, staff["rule-steward"], folder)
    assert exposed(workspace.home) is None


def test_a_synthetic_marker_put_into_a_generation_is_refused(copied) -> None:  # type: ignore[no-untyped-def]
    """`requests generate` draws only from a synthetic master file, which the SYNTHETIC marker
    says; a marker written by hand (here: rewritten, as a new file would be) is unrecorded."""
    ws, people, _ = copied
    marker = master.current(ws).folder / master.SYNTHETIC
    marker.unlink()
    marker.write_text("generated by custodes\n")  # same words, but never recorded as this
    from custodes.store.tables import files

    with ws.engine.begin() as conn:
        conn.execute(sa.delete(files).where(files.c.path.like("%/SYNTHETIC")))
    with pytest.raises(IntegrityError) as exc:
        requests.generate(ws, people.admin, "irc-6103-i-2", 5, 1, ws.home.parent / "g")
    _refused(ws, exc, "master.synthetic", marker.relative_to(ws.home).as_posix())


def test_an_event_refiled_as_a_file_record_is_reported_not_a_crash(copied) -> None:  # type: ignore[no-untyped-def]
    """Found by the tamper campaign: the `type` column is outside the commitment, and an event
    refiled as `file.stored` crashed the audit (KeyError) instead of failing it."""
    ws, people, _ = copied
    with ws.engine.begin() as conn:
        idx = conn.execute(
            sa.select(sa.func.min(ledger_events.c.idx)).where(
                ledger_events.c.type == "request.transition"
            )
        ).scalar()
        conn.execute(
            sa.update(ledger_events).where(ledger_events.c.idx == idx).values(type="file.stored")
        )
    rep = ledger.verify_store(ws, people["auditor"])
    assert any(f"event {idx} is filed as file.stored" in p for p in rep.problems), rep.problems


def test_an_edited_ledger_state_is_a_coded_refusal(copied) -> None:  # type: ignore[no-untyped-def]
    """Found by the tamper campaign: a `ledger_state.size` that no longer fits its tree border
    made every call fail with a bare ValueError; now it is `ledger_corrupt`."""
    from custodes.errors import CustodesError
    from custodes.store.tables import ledger_state

    ws, people, _ = copied
    with ws.engine.begin() as conn:
        conn.execute(sa.update(ledger_state).values(size=ledger_state.c.size - 1))
    with pytest.raises(CustodesError) as exc:
        ledger.verify_store(ws, people["auditor"])
    assert exc.value.code == "ledger_corrupt"


def test_an_event_refiled_under_another_type_is_reported(copied) -> None:  # type: ignore[no-untyped-def]
    """An event's `type` column set to 'access' would hide it from every lookup by type (a
    disclosure's from the accounting) while its body and leaf stay intact: the audit compares
    the column with the body's own type, and the business audit groups by the body's."""
    ws, people, _ = copied
    with ws.engine.begin() as conn:
        idx = conn.execute(
            sa.select(sa.func.min(ledger_events.c.idx)).where(
                ledger_events.c.type == "request.transition"
            )
        ).scalar()
        assert idx is not None
        conn.execute(
            sa.update(ledger_events).where(ledger_events.c.idx == idx).values(type="access")
        )
    rep = ledger.verify_store(ws, people["auditor"])
    assert not rep.ok
    assert f"event {idx}: its type column differs from its body's type (edited)" in rep.problems


def test_a_step_stopped_before_recording_its_output_makes_it_again(copied) -> None:  # type: ignore[no-untyped-def]
    """A process (or release) killed after writing an output and before the commit that
    records it leaves a file the ledger never recorded (found by the crash test of `process`
    killed anywhere, once the files were checked): the step that resumes makes it again
    instead of refusing it as placed by hand — and a step that does not make that file still
    refuses it."""
    ws, people, rids = copied
    rid = rids["received"]
    stale = ws.request_folder(rid) / "decisions" / "outcomes.parquet"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"what a killed run left half-done")
    with pytest.raises(CustodesError) as exc:  # not process: refused as found
        decisions.outcomes_page(ws, people["officer"], rid, limit=5)
    assert exc.value.code == "file_tampered"
    decisions.process(ws, people["officer"], rid)
    assert decisions.outcomes_page(ws, people["officer"], rid, limit=5)["items"]
    assert ledger.verify_store(ws, people["auditor"]).ok
