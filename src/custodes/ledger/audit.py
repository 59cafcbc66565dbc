"""The store audit: the whole ledger re-derived from the store's event rows and compared with
everything stored (commitments, tree nodes, the state, signed checkpoints, the copy kept outside
the store, the witness's view, the anchored rows, the recorded files); and an export someone
holds checked against the live log."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, select

from custodes.errors import CustodesError
from custodes.ledger import anchors, files, log
from custodes.ledger.checkpoints import external_log, latest, remembered, verifier
from custodes.ledger.cosigning import cosigned_by, witness_config, witnessed
from custodes.ledger.events import commitment, instant
from custodes.ledger.keys import NoLedgerKey
from custodes.ledger.verify import Rebuilder, Report, verify_export
from custodes.store.tables import ledger_checkpoints, ledger_events, ledger_nodes
from custodes.tlog.note import Checkpoint, Note, NoteError, Verifier
from custodes.tlog.tree import ProofError, verify_consistency
from custodes.workspace import Workspace


def _witness_view(
    ws: Workspace, key: Verifier | None, witness: Verifier, url: str | None, rep: Report
) -> tuple[Checkpoint, Note] | None:
    """The last checkpoint `witness` cosigned for this log: from the witness itself (at `url`,
    or the workspace's configured witness), else the largest one stored with its cosignature
    (the store's checkpoints, the copy kept outside the store)."""
    if url is None:
        wit = witness_config(ws)
        url = wit.url if wit is not None and wit.key == witness else None
    if url is not None and key is not None:
        try:
            found = witnessed(ws, url, witness)
            if found is not None:
                rep.checked.append(f"the witness {witness.name} was asked for its checkpoint")
                return found
        except CustodesError as exc:
            rep.checked.append(f"the witness could not be asked ({exc.code}): stored copies used")
    notes: list[Note] = []
    with ws.engine.connect() as conn:
        for row in conn.execute(select(ledger_checkpoints.c.size, ledger_checkpoints.c.note)):
            notes.append(log.with_cosignatures(conn, row.size, Note.parse(row.note)))
    for _cp, text in remembered(ws):
        notes.append(Note.parse(text))
    best: tuple[Checkpoint, Note] | None = None
    for note in notes:
        if cosigned_by(note, witness) and (key is None or cosigned_by(note, key)):
            cp = Checkpoint.parse_body(note.text)
            if best is None or cp.size > best[0].size:
                best = (cp, note)
    return best


_COPIED = ("actor", "request_id", "record_id")


@dataclass
class _Stored:
    """What the store holds beside its event rows, read once at the start of the audit."""

    state: log.TreeState
    checkpoints: list[Row[Any]]
    nodes: dict[tuple[int, int], bytes]
    outside: tuple[Checkpoint, str] | None
    latest_note: Note | None
    # The sizes of every checkpoint kept outside the store (`keys/checkpoints`), oldest first.
    outside_sizes: list[int] = field(default_factory=list)


@dataclass
class _Derived:
    """The ledger as re-derived from the event rows."""

    rb: Rebuilder
    seen_nodes: int = 0
    first_bad_node: str | None = None
    anchor_problems: list[str] = field(default_factory=list)
    anchor_rows: int = 0


def audit_store(
    ws: Workspace,
    key: Verifier | None = None,
    *,
    witness: Verifier | None = None,
    witness_url: str | None = None,
) -> Report:
    """Re-derive the whole ledger from the store's event rows and compare with what is stored:
    every commitment, every tree node, the state row and every signed checkpoint; then every
    row that confers authority or scope against the ledger event that anchors it
    (`anchors.Audit`), naming the first row of each table that differs. With `witness`, also
    that the log extends the last checkpoint that witness cosigned and that the latest
    checkpoint carries its cosignature."""
    rep = Report()
    if key is None:
        try:
            key = verifier(ws)
        except NoLedgerKey:
            key = None
    seen = _witness_view(ws, key, witness, witness_url, rep) if witness is not None else None
    if witness is not None and seen is None:
        rep.fail(
            f"no checkpoint cosigned by the witness {witness.name} is known (from the witness "
            "or stored): the log cannot be shown to extend what the witness saw"
        )
    with ws.engine.connect() as conn:
        stored = _read_stored(ws, conn, rep)
        sizes = [c.size for c in stored.checkpoints]
        sizes += ([stored.outside[0].size] if stored.outside else []) + (
            [seen[0].size] if seen else []
        )
        derived = _rederive(conn, stored, Rebuilder(range(log.NODE_LEVEL, 64), sizes), rep)
    rb = derived.rb
    rep.size, rep.root = rb.cr.size, rb.cr.root()
    _check_tree(stored, derived, rep)
    _check_checkpoints(stored, key, rb, rep)
    if stored.outside is not None:
        _check_outside(ws, stored, key, rb, rep)
    if witness is not None and seen is not None:
        _check_witness(stored, witness, seen[0], rb, rep)
    ok = rep.ok
    _audit_files(ws, rep)
    if ok:
        rep.checked += [
            f"{rb.cr.size} events: every body matches its commitment",
            f"{derived.seen_nodes} stored tree nodes match the events",
            f"{len(stored.checkpoints)} signed checkpoints match the events"
            + ("" if key else " (signatures not checked: no key)"),
            (
                f"the log extends the checkpoint of size {stored.outside[0].size} kept outside "
                "the store"
                if stored.outside
                else "no checkpoint is kept outside the store yet (none signed)"
            ),
            f"{derived.anchor_rows} rows that confer authority or scope match the ledger events "
            f"that anchor them ({len(anchors.TABLES)} tables)",
        ]
    return rep


def _read_stored(ws: Workspace, conn: Connection, rep: Report) -> _Stored:
    """The state row, the signed checkpoints, the tree nodes, the copy kept outside the store,
    and the latest checkpoint's note with its stored cosignatures."""
    st = log.state(conn)
    cps = list(conn.execute(select(ledger_checkpoints).order_by(ledger_checkpoints.c.size)).all())
    nodes = {(r.level, r.idx): r.hash for r in conn.execute(select(ledger_nodes))}
    kept = remembered(ws)
    outside = latest(kept)
    latest_note = None
    if cps:  # a note that does not parse is reported with the checkpoint later
        with contextlib.suppress(NoteError):
            latest_note = Note.parse(cps[-1].note)
    if latest_note is not None:
        try:
            latest_note = log.with_cosignatures(conn, cps[-1].size, latest_note)
        except NoteError:
            # A stored cosignature that is no signature line is a finding of its own; the
            # bare note is kept, so the witness's cosignature is still looked for later.
            latest_note = Note.parse(cps[-1].note)
            rep.fail(
                f"checkpoint {cps[-1].size}: a stored cosignature is not a signature line "
                "(ledger_cosignatures was edited)"
            )
    return _Stored(st, cps, nodes, outside, latest_note, sorted({cp.size for cp, _ in kept}))


def _rederive(conn: Connection, stored: _Stored, rb: Rebuilder, rep: Report) -> _Derived:
    """Every event row in order: its index, its commitment and the columns copied from its
    body checked, fed to the tree (each node compared with the stored one) and to the
    anchors' audit."""
    derived = _Derived(rb)
    expected = 0
    anchored = anchors.Audit()
    result = conn.execution_options(yield_per=10_000).execute(
        select(
            ledger_events.c.idx,
            ledger_events.c.type,
            ledger_events.c.at,
            ledger_events.c.actor,
            ledger_events.c.request_id,
            ledger_events.c.record_id,
            ledger_events.c.salt,
            ledger_events.c.body,
            ledger_events.c.commitment,
        ).order_by(ledger_events.c.idx)
    )
    for r in result:
        if r.idx != expected:
            rep.fail(
                f"event {expected} is missing (the next stored event is {r.idx})"
                if r.idx > expected
                else f"event {r.idx} is out of order"
            )
            expected = r.idx
        anchored.add(r.idx, _check_event(r, rep), r.body)
        for level, idx, h in rb.add(r.commitment):
            derived.seen_nodes += 1
            if stored.nodes.get((level, idx)) != h and derived.first_bad_node is None:
                lo, hi = idx << level, ((idx + 1) << level) - 1
                derived.first_bad_node = (
                    f"events {lo}..{hi}: the stored tree (level {level}, "
                    f"node {idx}) does not match them: an event there was "
                    "edited, inserted, removed or reordered"
                )
        expected += 1
    derived.anchor_problems, derived.anchor_rows = anchored.run(conn)
    return derived


def _check_event(r: Row[*tuple[Any, ...]], rep: Report) -> Any:
    """One event row against its commitment and its body; returns the body's type."""
    if commitment(r.salt, r.body.encode()) != r.commitment:
        rep.fail(f"event {r.idx}: its body does not match its commitment (edited)")
    # The type column is a copy of the body's own (for lookups by type): one edited
    # apart from its body would hide the event from whatever looks it up by type.
    doc = json.loads(r.body)
    kind = doc.get("type")
    if kind != r.type:
        rep.fail(f"event {r.idx}: its type column differs from its body's type (edited)")
    # So are its time, actor, request and record (lookups by request or record, the
    # accounting's dates): each must say what the body says (the campaign's find).
    copies = (instant(r.at), r.actor, r.request_id, r.record_id)
    if copies != (instant(doc.get("time")), *map(doc.get, _COPIED)):
        rep.fail(f"event {r.idx}: a column beside its body differs from the body (edited)")
    return kind


def _check_tree(stored: _Stored, derived: _Derived, rep: Report) -> None:
    """The anchors' findings, then the stored tree nodes and the state row against the
    re-derived tree."""
    rb = derived.rb
    for problem in derived.anchor_problems:
        rep.fail(problem)
    if derived.first_bad_node:
        rep.fail(derived.first_bad_node)
    if len(stored.nodes) != derived.seen_nodes:
        rep.fail(
            f"the store holds {len(stored.nodes)} tree nodes, the events make "
            f"{derived.seen_nodes}: events were removed or added"
        )
    if stored.state.size != rb.cr.size:
        rep.fail(f"the tree state says {stored.state.size} events, the store holds {rb.cr.size}")
    elif stored.state.root != rb.cr.root():
        rep.fail("the tree state's root does not match the events")
    # The state names the latest signed checkpoint (the next signing extends it, by
    # compare-and-swap): edited, it would hold signing back or let it skip a checkpoint.
    latest = stored.checkpoints[-1].size if stored.checkpoints else None
    if stored.state.checkpoint_size != latest:
        rep.fail(
            f"the tree state names checkpoint {stored.state.checkpoint_size}, the latest "
            f"signed checkpoint stored is {latest} (ledger_state edited)"
        )


def _check_checkpoints(stored: _Stored, key: Verifier | None, rb: Rebuilder, rep: Report) -> None:
    """Every signed checkpoint in the store: its signature, and the root the events make."""
    for c in stored.checkpoints:
        try:
            signed = Note.parse(c.note)
            Checkpoint.parse_body(signed.text)
            if key is not None and key.name not in signed.verified_by([key]):
                rep.fail(f"checkpoint {c.size}: not signed by {key.name}")
        except NoteError as exc:
            rep.fail(f"checkpoint {c.size}: {exc}")
        if c.size > rb.cr.size:
            rep.fail(
                f"checkpoint {c.size}: the log now holds only {rb.cr.size} events: "
                "events were removed"
            )
        elif rb.roots.get(c.size) != c.root:
            rep.fail(
                f"checkpoint {c.size}: the events no longer hash to the root signed "
                "then: the log was rewritten"
            )


def _check_outside(
    ws: Workspace, stored: _Stored, key: Verifier | None, rb: Rebuilder, rep: Report
) -> None:
    """The latest checkpoint kept outside the store: signed, extended by the log, and still
    in the store."""
    assert stored.outside is not None
    ext, ext_note = stored.outside
    try:
        signers = Note.parse(ext_note).verified_by([key]) if key is not None else []
    except NoteError as exc:  # a garbled copy is a finding, never a crash (the campaign's)
        signers = []
        rep.fail(
            f"the checkpoint kept outside the store (size {ext.size}) is not a signed note: {exc}"
        )
    if key is not None and key.name not in signers:
        rep.fail(
            f"the checkpoint kept outside the store (size {ext.size}) is not signed by {key.name}"
        )
    if ext.size > rb.cr.size:
        rep.fail(
            f"the store holds {rb.cr.size} events but a checkpoint of size {ext.size} was "
            f"signed and kept outside it ({external_log(ws)}): events were removed"
        )
    elif rb.roots.get(ext.size) != ext.root:
        rep.fail(
            f"the store's log does not extend the checkpoint of size {ext.size} kept "
            f"outside it ({external_log(ws)}): the log was rewritten"
        )
    # Every checkpoint signed is kept outside as it is signed, the older ones too: one whose
    # row is gone from the store was deleted (the count of checkpoints the safeguards report
    # shows, the checkpoints a consistency proof starts from).
    have = {c.size for c in stored.checkpoints}
    for size in [s for s in stored.outside_sizes if s not in have][:5]:
        rep.fail(
            f"checkpoint {size} was signed (a copy is kept outside the store) but its "
            "row is missing from the store: it was deleted"
        )


def _check_witness(
    stored: _Stored, witness: Verifier, wcp: Checkpoint, rb: Rebuilder, rep: Report
) -> None:
    """The log extends the last checkpoint `witness` cosigned (`wcp`), and the latest
    checkpoint carries its cosignature."""
    if wcp.size > rb.cr.size:
        rep.fail(
            f"the witness {witness.name} cosigned a log of {wcp.size} events, the store "
            f"holds {rb.cr.size}: events were removed (or the store was restored)"
        )
    elif rb.roots.get(wcp.size) != wcp.root:
        rep.fail(
            f"the log does not extend the checkpoint of size {wcp.size} the witness "
            f"{witness.name} cosigned: the log was rewritten"
        )
    else:
        rep.checked.append(
            f"the log extends the checkpoint of size {wcp.size} the witness {witness.name} cosigned"
        )
    if stored.latest_note is not None and not cosigned_by(stored.latest_note, witness):
        rep.fail(
            f"the latest checkpoint (size {stored.checkpoints[-1].size}) carries no "
            f"cosignature by the witness {witness.name}: it was published without the witness"
        )


def _audit_files(ws: Workspace, rep: Report) -> None:
    """Every file custodes reads back against the hash its `file.stored` event recorded, and
    every line of the checkpoint copy kept outside the store a signed checkpoint (a line
    edited there would otherwise be skipped, and an older checkpoint would stand in for it)."""
    with ws.engine.connect() as conn:
        problems, checked = files.audit(ws, conn)
    path = external_log(ws)
    if path.is_file() and not path.is_symlink():
        text = path.read_bytes().decode("utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), start=1):
            try:
                Checkpoint.parse_body(Note.parse(json.loads(line)["note"]).text)
            except (ValueError, KeyError, TypeError, AttributeError, NoteError):
                problems.append(
                    f"{path.name}: line {n} is not a signed checkpoint (the copy kept outside "
                    "the store was edited)"
                )
                break
    for problem in problems:
        rep.fail(problem)
    if not problems:
        rep.checked += checked


def check_export(ws: Workspace, folder: Path) -> Report:
    """An export someone holds, checked against this log: the export itself (signature, every
    tile and entry, bodies when present), then that it is a prefix of the live log (a
    consistency proof from the export's checkpoint to the latest one), so a forked or
    rewritten copy cannot pass for this ledger."""
    rep = verify_export(folder, verifier(ws))
    if not rep.ok or rep.root is None:
        return rep
    with ws.engine.connect() as conn:
        last = log.latest_checkpoint(conn)
        if last is None or last[0].size < rep.size:
            rep.fail(f"the export (size {rep.size}) is larger than this log's latest checkpoint")
            return rep
        cp = last[0]
        try:
            if rep.size:
                proof = log.consistency(conn, rep.size, cp.size)
                verify_consistency(rep.size, cp.size, rep.root, cp.root, proof)
        except (ProofError, CustodesError) as exc:
            rep.fail(f"the export is not a prefix of this log: {exc}")
            return rep
    rep.checked.append(f"consistent with this log's latest checkpoint (size {cp.size})")
    return rep
