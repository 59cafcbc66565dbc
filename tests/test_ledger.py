"""The ledger on a real store: proofs, checkpoints, tamper detection, export, receipts,
witnesses. Property tests use hypothesis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_workspace
from custodes.errors import CustodesError
from custodes.ledger import audit, checkpoints, log, publish
from custodes.ledger.events import (
    OMIT,
    Declared,
    Event,
    Omitted,
    PersonalDataInEvent,
    commitment,
    declare,
)
from custodes.ledger.note import ALG_COSIGNATURE_V1, Note, NoteError, Signer, Verifier
from custodes.ledger.policy import Policy, PolicyError
from custodes.ledger.tree import (
    ProofError,
    consistency_proof,
    inclusion_proof,
    is_valid_subtree,
    leaf_hash,
    memory_perfect,
    range_hash,
    root,
    subtree_consistency_proof,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
)
from custodes.ledger.verify import verify_export, verify_receipt
from custodes.ledger.witness import Witness, make_server
from custodes.store.tables import ledger_events, ledger_nodes
from custodes.workspace import Workspace
from test_ledger_vectors import EXTRACTED

# --- properties of the tree ------------------------------------------------------------------


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_inclusion_proofs_verify_and_any_change_breaks_them(n: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    perfect = memory_perfect(leaves)
    r = root(perfect, n)
    m = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(perfect, m, n)
    verify_inclusion(m, n, leaves[m], proof, r)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_inclusion(m, n, _flip(leaves[m], bit), proof, r)
    with pytest.raises(ProofError):
        verify_inclusion(m, n, leaves[m], proof, _flip(r, bit))
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = _flip(bad[k], bit)
        with pytest.raises(ProofError):
            verify_inclusion(m, n, leaves[m], bad, r)
    # A different size fails whenever it changes the proof's shape; where the shape is the
    # same, the size is bound by the signed checkpoint instead (test_receipts).
    other = data.draw(st.integers(m + 1, 400).filter(lambda s: _shape(m, s) != _shape(m, n)))
    with pytest.raises(ProofError):
        verify_inclusion(m, other, leaves[m], proof, r)


def _shape(m: int, n: int) -> list[bool]:
    """The left/right sequence RFC 9162 verification follows for leaf m of n."""
    out, fn, sn = [], m, n - 1
    while sn:
        right = bool(fn & 1 or fn == sn)
        out.append(right)
        if right and not fn & 1:
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
    return out


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 300), st.data())
def test_consistency_proofs_verify_and_any_change_breaks_them(n: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    perfect = memory_perfect(leaves)
    m = data.draw(st.integers(1, n - 1))
    old, new = root(perfect, m), root(perfect, n)
    proof = consistency_proof(perfect, m, n)
    verify_consistency(m, n, old, new, proof)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_consistency(m, n, _flip(old, bit), new, proof)
    with pytest.raises(ProofError):
        verify_consistency(m, n, old, _flip(new, bit), proof)
    k = data.draw(st.integers(0, len(proof) - 1))
    bad = list(proof)
    bad[k] = _flip(bad[k], bit)
    with pytest.raises(ProofError):
        verify_consistency(m, n, old, new, bad)
    # A forked history (one leaf changed) is never consistent.
    j = data.draw(st.integers(0, m - 1))
    forked = list(leaves)
    forked[j] = _flip(forked[j], bit)
    with pytest.raises(ProofError):
        verify_consistency(m, n, root(memory_perfect(forked), m), new, proof)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_subtree_consistency_proofs_verify_and_changes_break_them(
    n: int, data: st.DataObject
) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    perfect = memory_perfect(leaves)
    size = 1 << data.draw(st.integers(0, max(0, n.bit_length() - 1)))
    start = data.draw(st.integers(0, max(0, (n - 1) // size))) * size
    end = min(n, start + data.draw(st.integers(1, size)))
    if not is_valid_subtree(start, end):
        return
    sub = range_hash(perfect, start, end)
    r = root(perfect, n)
    proof = subtree_consistency_proof(perfect, start, end, n)
    verify_subtree_consistency(start, end, n, proof, sub, r)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, n, proof, _flip(sub, bit), r)
    if (start, end) != (0, n):
        with pytest.raises(ProofError):
            verify_subtree_consistency(start, end, n, proof, sub, _flip(r, bit))
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = _flip(bad[k], bit)
        with pytest.raises(ProofError):
            verify_subtree_consistency(start, end, n, bad, sub, r)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 68 * 8 - 1))
def test_any_signature_change_fails(text: bytes, bit: int) -> None:
    signer = Signer("log.example/x", bytes(range(32)))
    body = text.replace(b"\n", b" ").replace(b"\r", b" ")
    body = bytes(c if c >= 0x20 else 0x20 for c in body).decode("latin-1") + "\n"
    line = signer.sign(body.encode())
    note = Note.parse(body + "\n" + line)
    assert note.verified_by([signer.verifier]) == {"log.example/x": 0}
    sig = note.signatures[0]
    tampered = Note(
        note.text, [type(sig)(sig.name, sig.key_id, _flip(sig.blob, 32 + bit % 512), sig.line)]
    )
    with pytest.raises(NoteError):
        tampered.verified_by([signer.verifier])


# --- the store --------------------------------------------------------------------------------


@dataclass
class Direct:
    """The `Call` protocol for the ledger room's own tests, which run below the door (the door
    and its re-checks have their own tests): transactions as they are, a fixed actor."""

    ws: Workspace
    actor: str = "ledger-test"
    action: str = "test"
    agency: str | None = None

    def transaction(self):  # type: ignore[no-untyped-def]
        return self.ws.engine.begin()

    def recheck(self) -> None:
        pass


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class Probe(Declared):
    """This module's event: a sequence number, or any data (`extra`)."""

    TYPE = "test.event"
    seq: int | Omitted = OMIT
    extra: dict[str, Any] | Omitted = OMIT


def record(ws: Workspace, evs: list[Event]) -> list[int]:
    with ws.engine.begin() as conn:
        return log.append(conn, evs)


def events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(
            Probe(seq=start + i),
            actor="officer1",
            request_id=f"req-{(start + i) // 7}",
            record_id=f"rec-{start + i:016x}",
        )
        for i in range(n)
    ]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8), st.data())
def test_store_proofs_equal_memory_proofs(
    workspace: Workspace, batches: list[int], data: st.DataObject
) -> None:
    with workspace.engine.begin() as conn:
        conn.execute(sa.delete(ledger_events))
        conn.execute(sa.delete(ledger_nodes))
        conn.execute(sa.text("UPDATE ledger_state SET size = 0, frontier = x''"))
    total = 0
    for b in batches:
        assert record(workspace, events(b, total)) == list(range(total, total + b))
        total += b
    with workspace.engine.connect() as conn:
        cs = (
            conn.execute(sa.select(ledger_events.c.commitment).order_by(ledger_events.c.idx))
            .scalars()
            .all()
        )
        leaves = [leaf_hash(c) for c in cs]
        perfect = memory_perfect(leaves)
        assert log.state(conn).root == root(perfect, total)
        m = data.draw(st.integers(0, total - 1))
        assert log.inclusion(conn, m) == inclusion_proof(perfect, m, total)
        if total > 1:
            old = data.draw(st.integers(1, total - 1))
            assert log.consistency(conn, old) == consistency_proof(perfect, old, total)


def test_personal_data_never_enters_the_ledger(workspace: Workspace) -> None:
    for bad in (
        {"first_name": "ANA"},
        {"person": {"tin": "x"}},
        {"note": "ssn 123-45-6789"},
        {"ids": ["123456789"]},
        # an agency's item id goes in only as its salted commitment (issue #22, item 6)
        {"item_id": "CHERYL.BARKLEY.19840811.2"},
        {"item_ids": ["item-1"]},
    ):
        with pytest.raises(PersonalDataInEvent):
            record(workspace, [Event(Probe(extra=bad), actor="t")])
    with workspace.engine.connect() as conn:
        assert log.state(conn).size == 0
    record(workspace, [Event(Probe(extra={"sha256": "0123456789abcdef" * 4}), actor="t")])


def test_a_count_of_nine_digits_is_no_tin(workspace: Workspace) -> None:
    """A field declared as an integer (a count, a size) takes nine digits: a 25M-person master
    file has 125M address rows, and its import was refused at the very end for recording
    them. A nine-digit number anywhere else (free-form data) is still refused as a TIN."""
    from custodes.ledger.event_types import MasterImported

    imported = MasterImported(
        kind="generate",
        people_sha256="a" * 64,
        addresses_sha256="b" * 64,
        master_sha256="c" * 64,
        people_added=25_000_000,
        people_changed=0,
        addresses_added=124_987_561,
        addresses_changed=0,
    )
    record(workspace, [Event(imported, actor="t"), Event(Probe(seq=123_456_789), actor="t")])
    for bad in ({"n": 123_456_789}, {"ns": [987_654_321]}):
        with pytest.raises(PersonalDataInEvent):
            record(workspace, [Event(Probe(extra=bad), actor="t")])
    with workspace.engine.connect() as conn:
        assert log.state(conn).size == 2


def test_append_rolls_back_with_its_business_transaction(workspace: Workspace) -> None:
    with pytest.raises(RuntimeError), workspace.engine.begin() as conn:
        log.append(conn, events(3))
        raise RuntimeError("the business action failed")
    with workspace.engine.connect() as conn:
        assert log.state(conn).size == 0 and log.count(conn) == 0


@pytest.fixture
def signed_ws(workspace: Workspace) -> Workspace:
    record(workspace, events(40))
    checkpoints.checkpoint(Direct(workspace))
    record(workspace, events(25, 40))
    checkpoints.checkpoint(Direct(workspace))
    return workspace


def test_checkpoints_advance_only_by_consistent_growth(signed_ws: Workspace) -> None:
    cp1, note1 = checkpoints.checkpoint(Direct(signed_ws))
    cp2, note2 = checkpoints.checkpoint(
        Direct(signed_ws)
    )  # unchanged tree: same checkpoint, no re-sign
    assert cp1 == cp2 and note1.render() == note2.render() and cp1.size == 65
    # Rewrite the stored tree under the checkpoint: the log refuses to sign a fork. (Edits
    # to event rows under intact nodes are the audit's to find: test_tampering_... below.)
    with signed_ws.engine.begin() as conn:
        conn.execute(
            sa.update(ledger_nodes)
            .where(ledger_nodes.c.level == 6, ledger_nodes.c.idx == 0)
            .values(hash=b"\x00" * 32)
        )
    record(signed_ws, events(1, 65))
    with pytest.raises(CustodesError) as exc:
        checkpoints.checkpoint(Direct(signed_ws))
    assert exc.value.code == "ledger_corrupt"


def test_clean_store_audits(signed_ws: Workspace) -> None:
    rep = audit.audit_store(signed_ws)
    assert rep.ok, rep.problems
    assert rep.size == 65


def _exec(ws: Workspace, sql: str) -> None:
    with ws.engine.begin() as conn:
        conn.execute(sa.text(sql))


TAMPERS = {
    "delete an event": ("DELETE FROM ledger_events WHERE idx = 20", "event 20 is missing"),
    "edit a body": (
        "UPDATE ledger_events SET body = replace(body, 'officer1', 'officer2') WHERE idx = 33",
        "event 33: its body does not match its commitment",
    ),
    "reorder two events": (
        "UPDATE ledger_events SET idx = -1 WHERE idx = 5; UPDATE "
        "ledger_events SET idx = 5 WHERE idx = 6; UPDATE ledger_events "
        "SET idx = 6 WHERE idx = -1",
        "events 0..15",
    ),
    "insert an event": (
        "UPDATE ledger_events SET idx = idx + 1000 WHERE idx >= 50; "
        "UPDATE ledger_events SET idx = idx - 999 WHERE idx >= 1000",
        "event 50 is missing",
    ),
    "edit a tree node": (
        "UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 2",
        "events 32..47",
    ),
    "delete the last events": (
        "DELETE FROM ledger_events WHERE idx >= 60",
        "checkpoint 65: the log now holds only 60 events",
    ),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampering_with_the_store_is_detected(signed_ws: Workspace, name: str) -> None:
    sql, where = TAMPERS[name]
    for stmt in sql.split("; "):
        _exec(signed_ws, stmt)
    rep = audit.audit_store(signed_ws)
    assert not rep.ok
    assert any(where in p for p in rep.problems), rep.problems


def test_consistent_rewrite_is_caught_by_the_signed_checkpoint(signed_ws: Workspace) -> None:
    """An insider who rewrites bodies, commitments, nodes and state together cannot forge the
    checkpoint signature: the audit and every exported verification see the rewrite."""
    with signed_ws.engine.begin() as conn:
        rows = conn.execute(sa.select(ledger_events).order_by(ledger_events.c.idx)).all()
        conn.execute(sa.delete(ledger_events))
        conn.execute(sa.delete(ledger_nodes))
        conn.execute(sa.text("UPDATE ledger_state SET size = 0, frontier = x''"))
        evs = [
            Event(
                Probe(seq=i),
                actor=r.actor,
                request_id=r.request_id,
                record_id=r.record_id,
                at=r.at,
            )
            for i, r in enumerate(rows)
            if i != 12
        ]
        log.append(conn, evs)
    rep = audit.audit_store(signed_ws)
    assert any("the log was rewritten" in p for p in rep.problems), rep.problems


def test_export_verifies_in_a_fresh_process(signed_ws: Workspace, tmp_path: Path) -> None:
    vkey = checkpoints.verifier(signed_ws).vkey
    publish.export(Direct(signed_ws), tmp_path / "exp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    empty = tmp_path / "empty-cwd"
    empty.mkdir()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "custodes",
            "ledger",
            "verify",
            str(tmp_path / "exp"),
            "--key",
            vkey,
            "--json",
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["size"] == 65
    # The export holds no personal data: only commitments, hashes and the checkpoint.
    blob = b"".join(p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file())
    assert b"officer1" not in blob and b"rec-" not in blob


def test_export_tampering_and_growth(signed_ws: Workspace, tmp_path: Path) -> None:
    key = checkpoints.verifier(signed_ws)
    publish.export(Direct(signed_ws), tmp_path / "v1", bodies=True)
    first = (tmp_path / "v1" / "checkpoint").read_text()
    assert verify_export(tmp_path / "v1", key).ok
    record(signed_ws, events(300, 65))
    publish.export(Direct(signed_ws), tmp_path / "v2", bodies=True)
    rep = verify_export(tmp_path / "v2", key, previous=first)
    assert rep.ok and any("only grew" in c for c in rep.checked), rep.problems
    assert any(p.name == "000" for p in (tmp_path / "v2" / "tile" / "0").iterdir())
    # A tile byte flipped, an entry changed, a body changed, a checkpoint from a fork.
    tile = tmp_path / "v2" / "tile" / "0" / "000"
    data = bytearray(tile.read_bytes())
    data[100] ^= 1
    tile.write_bytes(bytes(data))
    rep = verify_export(tmp_path / "v2", key)
    assert any("tile/0/000" in p for p in rep.problems)
    other = Signer("custodes.test/ledger", bytes(32))
    forged = Note.parse(first)
    forged.signatures = []
    forged.add(other.sign(forged.text.encode()))
    rep = verify_export(tmp_path / "v1", key, previous=forged.render())
    assert not rep.ok
    bodies = tmp_path / "v1" / "bodies.jsonl"
    bodies.write_text(bodies.read_text().replace("officer1", "officer9", 1))
    rep = verify_export(tmp_path / "v1", key)
    assert any("entry 0: its body does not match" in p for p in rep.problems)


def test_receipts(signed_ws: Workspace) -> None:
    key = checkpoints.verifier(signed_ws)
    receipt, body = publish.prove(Direct(signed_ws), 17)
    rep = verify_receipt(receipt, key, body=body)
    assert rep.ok, rep.problems
    assert not verify_receipt(receipt.replace("index 17", "index 18"), key).ok
    assert not verify_receipt(receipt.replace("\n65\n", "\n66\n"), key).ok  # signed size
    assert not verify_receipt(receipt, key, body=body | {"body": body["body"] + " "}).ok
    stranger = Signer("custodes.test/ledger", bytes(32)).verifier
    assert not verify_receipt(receipt, stranger).ok
    with pytest.raises(CustodesError):
        publish.prove(Direct(signed_ws), 10_000)


# --- witnesses --------------------------------------------------------------------------------


def test_witness_conversation_vector(tmp_path: Path) -> None:
    vec = json.loads((EXTRACTED / "tlog-witness-add-checkpoint.json").read_text())
    w = Witness(
        tmp_path / "w.db",
        Signer("witness.test", bytes(32), ALG_COSIGNATURE_V1),
        [Verifier.parse(vec["log_vkey"])],
    )
    for step in vec["steps"]:
        answer = w.add_checkpoint(step["body"].encode())
        want = int(str(step["status"])[:3])
        assert answer.status == want, (step["note"], answer.body)
        if "response_body" in step:
            assert answer.body == step["response_body"]
            assert answer.content_type == "text/x.tlog.size"
        if want == 200:
            cp_text = step["body"].split("\n\n", 1)[1]
            note = Note.parse(cp_text)
            note.add(answer.body)
            assert note.verified_by([w.signer.verifier])


def test_witness_over_http_and_policy(signed_ws: Workspace, tmp_path: Path) -> None:
    wkey = Signer("oig.witness.test", bytes(range(32)), ALG_COSIGNATURE_V1)
    w2key = Signer("court.witness.test", bytes(range(1, 33)), ALG_COSIGNATURE_V1)
    log_key = checkpoints.verifier(signed_ws)
    servers = []
    for k, name in ((wkey, "a"), (w2key, "b")):
        srv = make_server(Witness(tmp_path / f"{name}.db", k, [log_key]), "127.0.0.1", 0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    try:
        url = f"http://127.0.0.1:{servers[0].server_port}"
        assert checkpoints.cosign(Direct(signed_ws), url, wkey.verifier)["size"] == 65
        record(signed_ws, events(10, 65))
        assert (
            checkpoints.cosign(Direct(signed_ws), url, wkey.verifier)["size"] == 75
        )  # old 65 + proof
        policy_text = (
            f"log {log_key.vkey}\nwitness oig {wkey.verifier.vkey}\n"
            f"witness court {w2key.verifier.vkey}\ngroup oversight 2 oig court\n"
            "quorum oversight\n"
        )
        publish.export(Direct(signed_ws), tmp_path / "exp")
        rep = verify_export(tmp_path / "exp", log_key, policy=Policy.parse(policy_text))
        assert not rep.ok and any("quorum 'oversight' is not met" in p for p in rep.problems)
        checkpoints.cosign(
            Direct(signed_ws), f"http://127.0.0.1:{servers[1].server_port}", w2key.verifier
        )
        publish.export(Direct(signed_ws), tmp_path / "exp")
        rep = verify_export(tmp_path / "exp", log_key, policy=Policy.parse(policy_text))
        assert rep.ok, rep.problems
        # A witness refuses a log that was rolled back (fork): the size it cosigned is kept.
        w = Witness(tmp_path / "a.db", wkey, [log_key])
        cp_note = (tmp_path / "exp" / "checkpoint").read_text()
        body = (
            "old 0\n\n"
            + Note(Note.parse(cp_note).text, Note.parse(cp_note).signatures[:1]).render()
        )
        assert w.add_checkpoint(body.encode()).status == 409
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


@pytest.mark.parametrize(
    "text",
    [
        "quorum none\nquorum none\n",
        "witness a notakey\nquorum a\n",
        "group g 3 a b\nquorum g\n",
        "log x\n",
        "witness a b c d e\nquorum none\n",
    ],
)
def test_bad_policies_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        Policy.parse(text)


# --- concurrency and PostgreSQL ------------------------------------------------------------


def test_concurrent_appenders_never_fork(workspace: Workspace) -> None:
    """Appenders on connections of their own (as a server and its job worker process are)
    wait for each other: none forks the log, and none is refused `ledger_conflict` (a long
    job's appends failed so beside a busy server, found by the soak)."""
    errors: list[Exception] = []

    def worker(start: int) -> None:
        for i in range(10):
            try:
                record(workspace, events(3, start + 3 * i))
            except Exception as exc:  # ledger_conflict, or anything else: a failure
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rep = audit.audit_store(workspace)
    assert rep.ok and rep.size == 90, rep.problems


@pytest.mark.postgres
def test_ledger_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    ws = make_workspace(tmp_path / "pg", pg_url)
    for k in range(4):
        record(ws, events(50, 50 * k))
        checkpoints.checkpoint(Direct(ws))
    assert audit.audit_store(ws).ok
    with ws.engine.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_events SET body = body || ' ' WHERE idx = 77"))
    rep = audit.audit_store(ws)
    assert any("event 77" in p for p in rep.problems)
    ws.close()


def test_commitment_is_salted() -> None:
    body = Event(Probe(), actor="t", at=Event(Probe(), actor="t").at).body()
    assert commitment(b"\x00" * 32, body) != commitment(b"\x01" * 32, body)


def _rebuild_without(ws: Workspace, drop: set[int]) -> None:
    """What an insider with the workspace's files does: rewrite the events without some,
    rebuild nodes and state consistently, delete the signed checkpoints."""
    with ws.engine.begin() as conn:
        rows = conn.execute(sa.select(ledger_events).order_by(ledger_events.c.idx)).all()
        conn.execute(sa.delete(ledger_events))
        conn.execute(sa.delete(ledger_nodes))
        conn.execute(sa.text("DELETE FROM ledger_checkpoints"))
        conn.execute(
            sa.text("UPDATE ledger_state SET size = 0, frontier = x'', checkpoint_size = NULL")
        )
        log.append(
            conn,
            [
                Event(
                    Probe(), actor=r.actor, request_id=r.request_id, record_id=r.record_id, at=r.at
                )
                for r in rows
                if r.idx not in drop
            ],
        )


def test_rewrite_and_resign_is_caught_by_the_checkpoint_kept_outside(signed_ws: Workspace) -> None:
    """Deleting events, rebuilding nodes and state, deleting the checkpoint rows and signing
    again with the workspace's own key used to verify clean; the last signed checkpoint is
    also kept outside the store, and the store must extend it."""
    _rebuild_without(signed_ws, {10, 11, 12})
    checkpoints.checkpoint(Direct(signed_ws))  # re-signed with the key that sits in the workspace
    rep = audit.audit_store(signed_ws)
    assert not rep.ok
    assert any("kept outside" in p for p in rep.problems), rep.problems


def test_deleting_only_the_checkpoint_rows_is_caught(signed_ws: Workspace) -> None:
    with signed_ws.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ledger_checkpoints"))
    rep = audit.audit_store(signed_ws)
    assert any("missing from the store" in p for p in rep.problems), rep.problems


def test_an_event_without_an_actor_is_refused(workspace: Workspace) -> None:
    with pytest.raises(ValueError, match="no actor"):
        record(workspace, [Event(Probe())])


@pytest.mark.parametrize(
    ("header", "status"),
    [("-1", 400), ("abc", 400), ("1e9", 400), (str(10**9), 413), (None, 411)],
)
def test_witness_bounds_every_body(tmp_path: Path, header: str | None, status: int) -> None:
    """Content-Length -1 used to skip the 64 KiB limit and 'abc' raised a traceback."""
    import http.client

    from custodes.ledger.witness import Witness, keygen, make_server

    signer = keygen("witness.test", tmp_path / "w.key")
    server = make_server(Witness(tmp_path / "w.db", signer, []), "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.putrequest("POST", "/add-checkpoint")
        if header is not None:
            conn.putheader("Content-Length", header)
        conn.endheaders()
        conn.send(b"x" * 100)
        resp = conn.getresponse()
        assert resp.status == status
        assert b"Traceback" not in resp.read()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_events_put_ahead_of_the_ledgers_state_are_ledger_corrupt(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A row written behind the ledger's back at the next index makes the next append a coded
    `ledger_corrupt` on both stores (on PostgreSQL the rows go through COPY, whose driver error
    is raised as SQLAlchemy's: it was a bare psycopg UniqueViolation)."""
    url = request.getfixturevalue("pg_url") if store == "postgresql" else None
    ws = make_workspace(tmp_path / "ws", url)
    size = record(ws, events(3))[-1] + 1
    with ws.engine.begin() as conn:
        row = conn.execute(sa.select(ledger_events).where(ledger_events.c.idx == 0)).one()
        conn.execute(sa.insert(ledger_events).values({**row._asdict(), "idx": size}))
    with pytest.raises(CustodesError) as exc:
        record(ws, events(1, size))
    assert exc.value.code == "ledger_corrupt"
    ws.close()
