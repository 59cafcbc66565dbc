"""Signed checkpoints: signing the tree (cosigned by the workspace's witness when it has one),
the copy kept outside the store, the ledger's status, and the restore confirmation."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from custodes.errors import fail
from custodes.ledger import cosigning, keys, log
from custodes.ledger.event_types import LedgerRestoreConfirmed
from custodes.ledger.keys import load_signer, origin
from custodes.store import identity
from custodes.tlog.note import Checkpoint, Note, NoteError, Verifier, b64
from custodes.workspace import Call, Workspace


def checkpoint(call: Call) -> tuple[Checkpoint, Note]:
    """Sign the current tree (only if it extends the last checkpoint) and keep a copy outside
    the store (``keys/checkpoints``, append-only), so that rewriting the store and re-signing
    cannot hide what was signed before (`audit_store` checks the store extends that copy).

    With a witness configured, the checkpoint is published only with its cosignature: the
    witness is asked inside the same transaction, and when it refuses (the tree does not
    extend what it cosigned) nothing is stored and signing is held (`keys.hold`)."""
    ws = call.ws
    signer = keys.signing_key(ws)
    name = origin(ws) or signer.name
    ledger_vkey = identity.read(ws.engine).get(identity.LEDGER_VKEY)
    if ledger_vkey and ledger_vkey != signer.verifier.vkey:  # one ledger, one key: never a fork
        raise fail(
            "ledger_key_mismatch",
            f"This key ({signer.verifier.vkey}) is not the ledger's ({ledger_vkey}); nothing "
            "was signed.",
        )
    wit = cosigning.witness_config(ws)
    with call.transaction() as conn:
        cp, note = log.sign_checkpoint(conn, signer, name)
        if wit is not None and not cosigning.cosigned_by(note, wit.key):
            cosigning.ask_cosignature(ws, conn, wit.url, wit.key, cp, note, configured=True)
            note = log.with_cosignatures(conn, cp.size, Note(note.text, note.signatures[:1]))
    remember(ws, cp, note)
    return cp, note


def cosign(call: Call, url: str, witness: Verifier) -> dict[str, object]:
    """Ask a witness (C2SP tlog-witness add-checkpoint) to cosign the latest checkpoint."""
    cp, note = checkpoint(call)
    if not cosigning.cosigned_by(note, witness):
        with call.transaction() as conn:
            configured = cosigning.witness_config(call.ws)
            cosigning.ask_cosignature(
                call.ws,
                conn,
                url,
                witness,
                cp,
                note,
                configured=configured is not None and configured.key == witness,
            )
    return {"size": cp.size, "witness": witness.name, "at": dt.datetime.now(dt.UTC).isoformat()}


def confirm_restore(call: Call) -> dict[str, object]:
    """An administrator's confirmation that this (restored) log extends the last checkpoint
    the workspace's witness cosigned: checked against the witness's own copy; then the hold on
    signing is lifted, the witness's checkpoint is kept in the store (so the next checkpoint
    proves consistency from it), and the confirmation is a ledger event."""
    ws = call.ws
    wit = cosigning.witness_config(ws)
    if wit is None:
        raise fail(
            "no_witness",
            "This workspace has no witness: configure one ('custodes ledger use-witness').",
        )
    found = cosigning.witnessed(ws, wit.url, wit.key)
    if found is None and keys.held(ws):  # it refused us, so it holds a checkpoint: ask for it
        raise fail(
            "witness_unreachable",
            "The witness does not give the checkpoint it cosigned (GET <url>/checkpoint), so "
            "the log cannot be checked against it; signing stays held.",
        )
    with call.transaction() as conn:
        size = log.state(conn).size
        if found is not None:
            cp, note = found
            if cp.size > size:
                raise fail(
                    "restore_inconsistent",
                    f"The store holds {size:,} events, but the witness cosigned a log of "
                    f"{cp.size:,}: events were lost. Restore a backup of the store taken "
                    "after that checkpoint; signing stays held.",
                )
            if log.root_at(conn, cp.size) != cp.root:
                raise fail(
                    "restore_inconsistent",
                    f"The store's first {cp.size:,} events are not those the witness "
                    "cosigned: the log was forked or rewritten; signing stays held.",
                )
            cosigning.keep_witnessed(conn, cp, note, wit.key)
        log.append_one(
            conn,
            LedgerRestoreConfirmed(
                witness=wit.key.name,
                witnessed_size=found[0].size if found else 0,
                size=size,
            ),
            actor=call.actor,
        )
    keys.release_hold(ws)
    return {
        "witness": wit.key.name,
        "witnessed_size": found[0].size if found else 0,
        "size": size,
    }


def external_log(ws: Workspace) -> Path:
    return ws.keys / "checkpoints"


def remember(ws: Workspace, cp: Checkpoint, note: Note) -> None:
    """Append a signed checkpoint to the external copy (once per size)."""
    last = last_remembered(ws)
    if last is not None and last[0].size >= cp.size:
        return
    path = external_log(ws)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(json.dumps({"size": cp.size, "note": note.render()}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def remembered(ws: Workspace) -> list[tuple[Checkpoint, str]]:
    """The checkpoints in the external copy, with their signed notes (and cosignatures)."""
    path = external_log(ws)
    if not path.exists() or path.is_symlink():
        return []
    found = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            doc = json.loads(line)
            note = Note.parse(doc["note"])
            found.append((Checkpoint.parse_body(note.text), doc["note"]))
        except (ValueError, KeyError, TypeError, NoteError):
            continue
    return found


def last_remembered(ws: Workspace) -> tuple[Checkpoint, str] | None:
    """The latest checkpoint in the external copy (largest size), with its signed note."""
    return latest(remembered(ws))


def latest(kept: list[tuple[Checkpoint, str]]) -> tuple[Checkpoint, str] | None:
    """The largest of checkpoints read with `remembered`."""
    return max(kept, key=lambda r: r[0].size, default=None)


def verifier(ws: Workspace) -> Verifier:
    return load_signer(ws).verifier


def status(ws: Workspace) -> dict[str, object]:
    with ws.engine.connect() as conn:
        st = log.state(conn)
        last = log.latest_checkpoint(conn)
    return {
        "size": st.size,
        "root": b64(st.root),
        "origin": origin(ws),
        "checkpoint_size": last[0].size if last else None,
        "cosignatures": (len(last[1].signatures) - 1) if last else 0,
    }
