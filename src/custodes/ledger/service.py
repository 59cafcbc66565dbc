"""Ledger services the faces call: record, checkpoint, export, audit, prove, cosign."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy import select

from custodes.errors import CustodesError, InputError, fail
from custodes.ledger import files, log, tiles
from custodes.ledger.events import Event, commitment
from custodes.ledger.keys import NoLedgerKey, load_signer, origin
from custodes.ledger.note import Checkpoint, Note, NoteError, Verifier, b64
from custodes.ledger.tree import ProofError, leaf_hash, memory_perfect, verify_consistency
from custodes.ledger.verify import Rebuilder, Report, format_receipt, verify_export
from custodes.store.files import out_folder, recorded
from custodes.store.tables import (
    ledger_checkpoints,
    ledger_cosignatures,
    ledger_events,
    ledger_nodes,
)
from custodes.workspace import Call, Workspace


def checkpoint(call: Call) -> tuple[Checkpoint, Note]:
    """Sign the current tree (only if it extends the last checkpoint) and keep a copy outside
    the store (``keys/checkpoints``, append-only), so that rewriting the store and re-signing
    cannot hide what was signed before (`audit_store` checks the store extends that copy)."""
    ws = call.ws
    signer = load_signer(ws)
    name = origin(ws) or signer.name
    with call.transaction() as conn:
        cp, note = log.sign_checkpoint(conn, signer, name)
    remember(ws, cp, note)
    return cp, note


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
        fh.write(
            json.dumps({"size": cp.size, "note": Note(note.text, note.signatures[:1]).render()})
            + "\n"
        )
        fh.flush()
        os.fsync(fh.fileno())


def last_remembered(ws: Workspace) -> tuple[Checkpoint, str] | None:
    """The latest checkpoint in the external copy (largest size), with its signed note."""
    path = external_log(ws)
    if not path.exists() or path.is_symlink():
        return None
    best = None
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            doc = json.loads(line)
            note = Note.parse(doc["note"])
            cp = Checkpoint.parse_body(note.text)
        except (ValueError, KeyError, TypeError, NoteError):
            continue
        if best is None or cp.size > best[0].size:
            best = (cp, doc["note"])
    return best


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


def export(call: Call, folder: Path, *, bodies: bool = False) -> dict[str, object]:
    """Write a tlog-tiles directory for the latest checkpoint (signing one if the key is here
    and the tree grew). With `bodies`, also the event bodies and salts, for auditors only;
    writing them is itself a ledger event (who, how many, the file's hash)."""
    ws = call.ws
    out_folder(folder)
    try:
        cp, note = checkpoint(call)
    except NoLedgerKey:  # no key here: export the latest checkpoint the log already signed
        with ws.engine.connect() as conn:
            last = log.latest_checkpoint(conn)
        if last is None:
            raise fail(
                "no_checkpoint",
                "The ledger has no signed checkpoint to export; run 'custodes ledger "
                "checkpoint' where the key is.",
            ) from None
        cp, note = last
    with ws.engine.connect() as conn:
        note = log.with_cosignatures(conn, cp.size, note)
        rows = conn.execute(
            select(
                ledger_events.c.idx,
                ledger_events.c.commitment,
                ledger_events.c.salt,
                ledger_events.c.body,
            )
            .where(ledger_events.c.idx < cp.size)
            .order_by(ledger_events.c.idx)
        ).all()
    if len(rows) != cp.size or any(r.idx != i for i, r in enumerate(rows)):
        raise fail(
            "ledger_corrupt",
            "The store's events do not match the checkpoint; run 'custodes ledger verify' first.",
        )
    leaves = [leaf_hash(r.commitment) for r in rows]
    files = tiles.write_tiles(
        folder, cp.size, memory_perfect(leaves), iter(r.commitment for r in rows)
    )
    tiles.write_file(folder, "checkpoint", note.render().encode())
    info: dict[str, object] = {
        "folder": str(folder),
        "size": cp.size,
        "root": b64(cp.root),
        "files": files + 1,
        "bodies": bodies,
    }
    if bodies:
        data = (
            "\n".join(
                json.dumps({"idx": r.idx, "salt": b64(r.salt), "body": r.body}, ensure_ascii=False)
                for r in rows
            )
            + "\n"
        ).encode()
        digest = hashlib.sha256(data).hexdigest()
        # Recorded before it exists: the bodies file appears only once its event committed.
        with recorded(folder / "bodies.jsonl", data, replace=True), call.transaction() as conn:
            log.append(
                conn,
                [
                    Event(
                        "file.written",
                        actor=call.actor,
                        data={"what": "ledger_bodies", "rows": len(rows), "sha256": digest},
                    )
                ],
            )
        info["bodies_sha256"] = digest
    return info


def audit_store(ws: Workspace, key: Verifier | None = None) -> Report:
    """Re-derive the whole ledger from the store's event rows and compare with what is stored:
    every commitment, every tree node, the state row and every signed checkpoint."""
    rep = Report()
    if key is None:
        try:
            key = verifier(ws)
        except NoLedgerKey:
            key = None
    with ws.engine.connect() as conn:
        st = log.state(conn)
        cps = conn.execute(select(ledger_checkpoints).order_by(ledger_checkpoints.c.size)).all()
        stored_nodes = {(r.level, r.idx): r.hash for r in conn.execute(select(ledger_nodes))}
        outside = last_remembered(ws)
        rb = Rebuilder(
            range(log.NODE_LEVEL, 64),
            [c.size for c in cps] + ([outside[0].size] if outside else []),
        )
        expected = 0
        first_bad_node: str | None = None
        seen_nodes = 0
        result = conn.execution_options(yield_per=10_000).execute(
            select(
                ledger_events.c.idx,
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
            if commitment(r.salt, r.body.encode()) != r.commitment:
                rep.fail(f"event {r.idx}: its body does not match its commitment (edited)")
            for level, idx, h in rb.add(r.commitment):
                seen_nodes += 1
                if stored_nodes.get((level, idx)) != h and first_bad_node is None:
                    lo, hi = idx << level, ((idx + 1) << level) - 1
                    first_bad_node = (
                        f"events {lo}..{hi}: the stored tree (level {level}, "
                        f"node {idx}) does not match them: an event there was "
                        "edited, inserted, removed or reordered"
                    )
            expected += 1
    rep.size, rep.root = rb.cr.size, rb.cr.root()
    if first_bad_node:
        rep.fail(first_bad_node)
    if len(stored_nodes) != seen_nodes:
        rep.fail(
            f"the store holds {len(stored_nodes)} tree nodes, the events make "
            f"{seen_nodes}: events were removed or added"
        )
    if st.size != rb.cr.size:
        rep.fail(f"the tree state says {st.size} events, the store holds {rb.cr.size}")
    elif st.root != rb.cr.root():
        rep.fail("the tree state's root does not match the events")
    for c in cps:
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
    if outside is not None:
        ext, ext_note = outside
        if key is not None and key.name not in Note.parse(ext_note).verified_by([key]):
            rep.fail(
                f"the checkpoint kept outside the store (size {ext.size}) is not signed by "
                f"{key.name}"
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
        if ext.size not in {c.size for c in cps}:
            rep.fail(
                f"checkpoint {ext.size} was signed (a copy is kept outside the store) but its "
                "row is missing from the store: it was deleted"
            )
    ok = rep.ok
    _audit_files(ws, rep)
    if ok:
        rep.checked += [
            f"{rb.cr.size} events: every body matches its commitment",
            f"{seen_nodes} stored tree nodes match the events",
            f"{len(cps)} signed checkpoints match the events"
            + ("" if key else " (signatures not checked: no key)"),
            (
                f"the log extends the checkpoint of size {outside[0].size} kept outside the store"
                if outside
                else "no checkpoint is kept outside the store yet (none signed)"
            ),
        ]
    return rep


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


def prove(call: Call, index: int) -> tuple[str, dict[str, str]]:
    """A receipt (c2sp.org/tlog-proof@v1) for event `index`, and its body for the holder."""
    ws = call.ws
    cp, note = checkpoint(call)
    with ws.engine.connect() as conn:
        if index >= cp.size or index < 0:
            raise fail("bad_index", f"no event {index} in a ledger of size {cp.size}")
        path = log.inclusion(conn, index, cp.size)
        row = conn.execute(
            select(ledger_events.c.commitment, ledger_events.c.salt, ledger_events.c.body).where(
                ledger_events.c.idx == index
            )
        ).one()
        note = log.with_cosignatures(conn, cp.size, note)
    receipt = format_receipt(index, row.commitment, path, note)
    return receipt, {"idx": str(index), "salt": b64(row.salt), "body": row.body}


def write_body(call: Call, index: int, out: Path) -> str:
    """Event `index`'s body and salt written to `out` (what its leaf commits to, for the
    holder of a receipt), recorded first: a `file.written` event (who, which event, the file's
    hash) commits before the file appears. Returns the receipt."""
    receipt, body_doc = prove(call, index)
    data = (json.dumps(body_doc, ensure_ascii=False) + "\n").encode()
    event = Event(
        "file.written",
        actor=call.actor,
        data={
            "what": "ledger_body",
            "event": index,
            "rows": 1,
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    with recorded(out, data), call.transaction() as conn:
        log.append(conn, [event])
    return receipt


def cosign(call: Call, url: str, witness: Verifier, timeout: float = 10.0) -> dict[str, object]:
    """Ask a witness (C2SP tlog-witness add-checkpoint) to cosign the latest checkpoint."""
    ws = call.ws
    cp, note = checkpoint(call)
    with ws.engine.connect() as conn:
        old = (
            conn.execute(
                select(ledger_cosignatures.c.size)
                .where(ledger_cosignatures.c.witness == witness.name)
                .order_by(ledger_cosignatures.c.size.desc())
                .limit(1)
            ).scalar()
            or 0
        )
    for _attempt in range(3):
        with ws.engine.connect() as conn:
            proof = log.consistency(conn, old, cp.size) if 0 < old < cp.size else []
        body = (
            f"old {old}\n"
            + "".join(b64(h) + "\n" for h in proof)
            + "\n"
            + Note(note.text, note.signatures[:1]).render()
        )
        req = urllib.request.Request(
            url.rstrip("/") + "/add-checkpoint", data=body.encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                lines = resp.read().decode()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace").strip()
            if exc.code == 409 and text.isdigit():
                old = int(text)
                continue
            raise InputError(
                f"The witness refused the checkpoint ({exc.code}): {text[:200]}",
                code="witness_refused",
            ) from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise InputError(
                f"The witness at {url} cannot be reached: {exc}", code="witness_unreachable"
            ) from None
        with call.transaction() as conn:
            for line in lines.splitlines(keepends=True):
                if line.strip():
                    log.add_cosignature(
                        conn, cp.size, witness, line if line.endswith("\n") else line + "\n"
                    )
        return {"size": cp.size, "witness": witness.name, "at": dt.datetime.now(dt.UTC).isoformat()}
    raise InputError("The witness kept reporting a different size.", code="witness_refused")


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


# --- The log served to outsiders (C2SP tlog-tiles over HTTP): no caller, no personal data ----


def public_checkpoint(ws: Workspace) -> bytes:
    """The latest signed checkpoint with its cosignatures, as a signed note."""
    with ws.engine.connect() as conn:
        last = log.latest_checkpoint(conn)
        if last is None:
            raise fail("no_checkpoint", "The ledger has no signed checkpoint yet.")
        cp, note = last
        return log.with_cosignatures(conn, cp.size, note).render().encode()


def public_receipt(ws: Workspace, index: int) -> str:
    """A receipt (c2sp.org/tlog-proof@v1) that event `index` is in the log, against the latest
    signed checkpoint: the event's salted commitment, its inclusion proof and the checkpoint
    with its cosignatures. Open: it identifies no person; the body stays with its holder."""
    with ws.engine.connect() as conn:
        last = log.latest_checkpoint(conn)
        if last is None:
            raise fail("no_checkpoint", "The ledger has no signed checkpoint yet.")
        cp, note = last
        if not 0 <= index < cp.size:
            raise fail(
                "bad_index", f"No event {index} under the latest checkpoint (size {cp.size})."
            )
        path = log.inclusion(conn, index, cp.size)
        entry = conn.execute(
            select(ledger_events.c.commitment).where(ledger_events.c.idx == index)
        ).scalar_one()
        note = log.with_cosignatures(conn, cp.size, note)
    return format_receipt(index, entry, path, note)


def public_tile(ws: Workspace, path: str) -> tuple[bytes, bool]:
    """A tile (hashes, or an entry bundle of commitments) by its tlog-tiles path under
    `tile/`, within the latest signed checkpoint; and whether it is full (immutable)."""
    try:
        level, n, width = tiles.parse_tile_path(path)
    except tiles.TileError as exc:
        raise fail("not_found", f"No tile at tile/{path}: {exc}.") from None
    with ws.engine.connect() as conn:
        last = log.latest_checkpoint(conn)
        size = last[0].size if last else 0
        height = 0 if level == "entries" else tiles.TILE_HEIGHT * int(level)
        available = dict(tiles.tiles_for(size, height // tiles.TILE_HEIGHT))
        if available.get(n, 0) < width:
            raise fail("not_found", f"No tile at tile/{path} in the latest checkpoint.")
        first = n * tiles.TILE_WIDTH
        if level == "entries":
            rows = conn.execute(
                select(ledger_events.c.commitment)
                .where(ledger_events.c.idx >= first, ledger_events.c.idx < first + width)
                .order_by(ledger_events.c.idx)
            ).all()
            return tiles.encode_bundle(bytes(r.commitment) for r in rows), width == tiles.TILE_WIDTH
        perfect = log.subtrees(conn, {(height, first + i) for i in range(width)})
        data = b"".join(perfect(height, first + i) for i in range(width))
    return data, width == tiles.TILE_WIDTH
