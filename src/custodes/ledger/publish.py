"""What the ledger hands out: an export (tlog-tiles, with the event bodies for auditors), a
receipt for one event (with its body for its holder), and the log served to outsiders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select

from custodes.errors import fail
from custodes.ledger import log
from custodes.ledger.checkpoints import checkpoint
from custodes.ledger.event_types import FileWritten
from custodes.ledger.events import Event
from custodes.ledger.keys import NoLedgerKey
from custodes.ledger.verify import format_receipt
from custodes.store.files import out_folder, recorded
from custodes.store.tables import ledger_events
from custodes.tlog import tiles
from custodes.tlog.note import b64
from custodes.tlog.tree import leaf_hash, memory_perfect
from custodes.workspace import Call, Workspace


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
            log.append_one(
                conn,
                FileWritten(what="ledger_bodies", rows=len(rows), sha256=digest),
                actor=call.actor,
            )
        info["bodies_sha256"] = digest
    return info


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
        FileWritten(
            what="ledger_body", event=index, rows=1, sha256=hashlib.sha256(data).hexdigest()
        ),
        actor=call.actor,
    )
    with recorded(out, data), call.transaction() as conn:
        log.append(conn, [event])
    return receipt


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
    except tiles.TileError:
        raise fail("not_found", "No such tile (the path is not a tlog-tiles path).") from None
    with ws.engine.connect() as conn:
        last = log.latest_checkpoint(conn)
        size = last[0].size if last else 0
        height = 0 if level == "entries" else tiles.TILE_HEIGHT * int(level)
        available = dict(tiles.tiles_for(size, height // tiles.TILE_HEIGHT))
        if available.get(n, 0) < width:
            raise fail("not_found", "No such tile in the latest checkpoint.")
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
