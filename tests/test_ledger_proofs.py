"""The ledger's proofs: inclusion, consistency and subtree proofs verify and any change breaks
them (hypothesis), any signature change fails, and the store's proofs equal the memory's."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custodes.ledger import log
from custodes.store.tables import ledger_events, ledger_nodes
from custodes.tlog.note import Note, NoteError, Signer
from custodes.tlog.tree import (
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
from custodes.workspace import Workspace
from shared_ledger import events, record

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
