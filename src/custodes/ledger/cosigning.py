"""The ledger's side of cosigning: which witness the workspace needs (kept in the store's meta),
asking it to cosign a checkpoint (the consistency proof, what a 409 or 422 means, holding
signing) or for the checkpoint it cosigned, and keeping its cosignatures.

The wire is `custodes.tlog.client`; the witness itself (the server an oversight body runs) is
`custodes.tlog.witness`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, update

from custodes.errors import InputError, fail
from custodes.ledger import keys, log
from custodes.ledger.event_types import LedgerWitnessConfigured
from custodes.ledger.keys import origin
from custodes.store.tables import ledger_checkpoints, ledger_cosignatures, ledger_state, meta
from custodes.tlog import client
from custodes.tlog.note import Checkpoint, Note, NoteError, Verifier, b64, open_checkpoint
from custodes.workspace import Workspace

WITNESS_URL, WITNESS_KEY = "witness_url", "witness_vkey"


@dataclass(frozen=True)
class WitnessConfig:
    url: str
    key: Verifier


def witness_config(ws: Workspace) -> WitnessConfig | None:
    """The witness every checkpoint of this workspace needs (kept in the store's meta)."""
    with ws.engine.connect() as conn:
        rows = dict(
            conn.execute(
                select(meta.c.key, meta.c.value).where(meta.c.key.in_([WITNESS_URL, WITNESS_KEY]))
            ).all()
        )
    if WITNESS_URL not in rows or WITNESS_KEY not in rows:
        return None
    try:
        return WitnessConfig(rows[WITNESS_URL], Verifier.parse(rows[WITNESS_KEY]))
    except NoteError:
        raise fail("bad_key", "The workspace's witness key is not a verifier key.") from None


def set_witness(conn: Connection, url: str, key: Verifier, actor: str) -> None:
    """Configure the witness (in the caller's transaction), recorded as a ledger event."""
    if not client.usable(url):
        raise fail("bad_argument", "The witness URL must be an http(s) URL.")
    conn.execute(delete(meta).where(meta.c.key.in_([WITNESS_URL, WITNESS_KEY])))
    conn.execute(
        insert(meta),
        [{"key": WITNESS_URL, "value": url.rstrip("/")}, {"key": WITNESS_KEY, "value": key.vkey}],
    )
    log.append_one(conn, LedgerWitnessConfigured(witness=key.vkey, url=url), actor=actor)


def cosigned_by(note: Note, key: Verifier) -> bool:
    try:
        return key.name in note.verified_by([key])
    except NoteError:
        return False


def ask_cosignature(
    ws: Workspace,
    conn: Connection,
    url: str,
    witness: Verifier,
    cp: Checkpoint,
    note: Note,
    *,
    configured: bool,
) -> None:
    """Ask a witness (C2SP tlog-witness add-checkpoint) to cosign `cp`, proving consistency
    from the last size it cosigned for this store, and store its cosignature in `conn`.

    For the workspace's own witness (`configured`), a witness that cosigned more than this
    store remembers (a store restored from an older backup) or that finds the tree does not
    extend what it cosigned (a fork, a rewrite) holds signing until an administrator confirms
    (`confirm_restore`)."""
    old = (
        conn.execute(
            select(func.max(ledger_cosignatures.c.size)).where(
                ledger_cosignatures.c.witness == witness.name
            )
        ).scalar()
        or 0
    )
    for _attempt in range(3):
        proof = log.consistency(conn, old, cp.size) if 0 < old < cp.size else []
        body = (
            f"old {old}\n"
            + "".join(b64(h) + "\n" for h in proof)
            + "\n"
            + Note(note.text, note.signatures[:1]).render()
        )
        status, text = client.add_checkpoint(url, body)
        if status == 200:
            for line in text.splitlines(keepends=True):
                if line.strip():
                    log.add_cosignature(
                        conn, cp.size, witness, line if line.endswith("\n") else line + "\n"
                    )
            return
        reason = None
        if status == 409 and text.isascii() and text.strip().isdigit():
            known = int(text.strip())
            if not configured or known < old:
                old = known  # the witness knows an older size: prove from there
                continue
            reason = (
                f"the witness cosigned a log of {known:,} events, and this store remembers "
                f"only {old:,} of them cosigned: the store was restored from an older backup, "
                "or the log was forked or rewritten."
            )
        elif status == 422 and configured:
            reason = (
                "the witness finds that this log does not extend the checkpoint it cosigned: "
                "the log was forked or rewritten."
            )
        if reason:
            keys.hold(ws, reason[0].upper() + reason[1:])
        raise InputError(
            f"The witness refused the checkpoint of size {cp.size:,} ({status}): "
            + (reason or text[:200])
            + " The checkpoint was not published.",
            code="witness_refused",
        )
    raise InputError("The witness kept reporting a different size.", code="witness_refused")


def witnessed(ws: Workspace, url: str, witness: Verifier) -> tuple[Checkpoint, Note] | None:
    """The last checkpoint `witness` cosigned for this log, fetched from it (None when it has
    cosigned none); its log signature and its cosignature are both checked."""
    name = origin(ws)
    data = client.checkpoint(url, name or "")
    if data is None:
        return None
    try:
        cp, note = open_checkpoint(data, keys.load_signer(ws).verifier)
        if cp.origin != name or not cosigned_by(note, witness):
            raise NoteError("not cosigned by the witness for this log")
    except NoteError as exc:
        raise fail("bad_cosignature", f"The witness's checkpoint does not verify: {exc}.") from None
    return cp, note


def keep_witnessed(conn: Connection, cp: Checkpoint, note: Note, witness: Verifier) -> None:
    """Store the witness's cosigned checkpoint (the log's own signature and the witness's)."""
    if conn.execute(
        select(ledger_cosignatures.c.size).where(
            ledger_cosignatures.c.size == cp.size, ledger_cosignatures.c.witness == witness.name
        )
    ).first():
        return
    log_sig = [s for s in note.signatures if s.name == cp.origin][:1]
    if not conn.execute(
        select(ledger_checkpoints.c.size).where(ledger_checkpoints.c.size == cp.size)
    ).first():
        conn.execute(
            insert(ledger_checkpoints).values(
                size=cp.size,
                root=cp.root,
                note=Note(note.text, log_sig).render(),
                at=dt.datetime.now(dt.UTC),
            )
        )
        conn.execute(
            update(ledger_state)
            .where(
                ledger_state.c.id == 1,
                (ledger_state.c.checkpoint_size.is_(None))
                | (ledger_state.c.checkpoint_size < cp.size),
            )
            .values(checkpoint_size=cp.size)
        )
    line = next(s.line for s in note.signatures if s.name == witness.name)
    log.add_cosignature(conn, cp.size, witness, line)
