"""Ledger services the faces call: record, checkpoint, export, audit, prove, cosign."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete, func, insert, select, update

from custodes.errors import CustodesError, InputError, fail
from custodes.ledger import anchors, files, keys, log, tiles
from custodes.ledger.events import Event, commitment, instant
from custodes.ledger.keys import NoLedgerKey, load_signer, origin
from custodes.ledger.note import Checkpoint, Note, NoteError, Verifier, b64, open_checkpoint
from custodes.ledger.tree import ProofError, leaf_hash, memory_perfect, verify_consistency
from custodes.ledger.verify import Rebuilder, Report, format_receipt, verify_export
from custodes.store import identity
from custodes.store.files import out_folder, recorded
from custodes.store.tables import (
    ledger_checkpoints,
    ledger_cosignatures,
    ledger_events,
    ledger_nodes,
    ledger_state,
    meta,
)
from custodes.workspace import Call, Workspace

WITNESS_URL, WITNESS_KEY = "witness_url", "witness_vkey"
WITNESS_TIMEOUT = 10.0


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
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail("bad_argument", "The witness URL must be an http(s) URL.")
    conn.execute(delete(meta).where(meta.c.key.in_([WITNESS_URL, WITNESS_KEY])))
    conn.execute(
        insert(meta),
        [{"key": WITNESS_URL, "value": url.rstrip("/")}, {"key": WITNESS_KEY, "value": key.vkey}],
    )
    log.append(
        conn,
        [Event("ledger.witness_configured", actor=actor, data={"witness": key.vkey, "url": url})],
    )


def _cosigned_by(note: Note, key: Verifier) -> bool:
    try:
        return key.name in note.verified_by([key])
    except NoteError:
        return False


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
    wit = witness_config(ws)
    with call.transaction() as conn:
        cp, note = log.sign_checkpoint(conn, signer, name)
        if wit is not None and not _cosigned_by(note, wit.key):
            _witness_cosign(ws, conn, wit.url, wit.key, cp, note, configured=True)
            note = log.with_cosignatures(conn, cp.size, Note(note.text, note.signatures[:1]))
    remember(ws, cp, note)
    return cp, note


def _post(url: str, body: str) -> tuple[int, str]:
    req = urllib.request.Request(
        url.rstrip("/") + "/add-checkpoint", data=body.encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=WITNESS_TIMEOUT) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace").strip()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise InputError(
            f"The witness at {url} cannot be reached ({type(exc).__name__}); the checkpoint "
            "was not published.",
            code="witness_unreachable",
        ) from None


def _witness_cosign(
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
        status, text = _post(url, body)
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
    query = urllib.parse.urlencode({"origin": name or ""})
    try:
        with urllib.request.urlopen(
            f"{url.rstrip('/')}/checkpoint?{query}", timeout=WITNESS_TIMEOUT
        ) as resp:
            data = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise InputError(
            f"The witness answered {exc.code} for its checkpoint.", code="witness_unreachable"
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise InputError(
            f"The witness at {url} cannot be reached ({type(exc).__name__}).",
            code="witness_unreachable",
        ) from None
    try:
        cp, note = open_checkpoint(data, verifier(ws))
        if cp.origin != name or not _cosigned_by(note, witness):
            raise NoteError("not cosigned by the witness for this log")
    except NoteError as exc:
        raise fail("bad_cosignature", f"The witness's checkpoint does not verify: {exc}.") from None
    return cp, note


def confirm_restore(call: Call) -> dict[str, object]:
    """An administrator's confirmation that this (restored) log extends the last checkpoint
    the workspace's witness cosigned: checked against the witness's own copy; then the hold on
    signing is lifted, the witness's checkpoint is kept in the store (so the next checkpoint
    proves consistency from it), and the confirmation is a ledger event."""
    ws = call.ws
    wit = witness_config(ws)
    if wit is None:
        raise fail(
            "no_witness",
            "This workspace has no witness: configure one ('custodes ledger use-witness').",
        )
    found = witnessed(ws, wit.url, wit.key)
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
            _keep_witnessed(conn, cp, note, wit.key)
        log.append(
            conn,
            [
                Event(
                    "ledger.restore_confirmed",
                    actor=call.actor,
                    data={
                        "witness": wit.key.name,
                        "witnessed_size": found[0].size if found else 0,
                        "size": size,
                    },
                )
            ],
        )
    keys.release_hold(ws)
    return {
        "witness": wit.key.name,
        "witnessed_size": found[0].size if found else 0,
        "size": size,
    }


def _keep_witnessed(conn: Connection, cp: Checkpoint, note: Note, witness: Verifier) -> None:
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
    return max(remembered(ws), key=lambda r: r[0].size, default=None)


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
        if _cosigned_by(note, witness) and (key is None or _cosigned_by(note, key)):
            cp = Checkpoint.parse_body(note.text)
            if best is None or cp.size > best[0].size:
                best = (cp, note)
    return best


_COPIED = ("actor", "request_id", "record_id")


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
        st = log.state(conn)
        cps = conn.execute(select(ledger_checkpoints).order_by(ledger_checkpoints.c.size)).all()
        stored_nodes = {(r.level, r.idx): r.hash for r in conn.execute(select(ledger_nodes))}
        outside = last_remembered(ws)
        latest_note = None
        if cps:  # a note that does not parse is reported with the checkpoint below
            with contextlib.suppress(NoteError):
                latest_note = Note.parse(cps[-1].note)
        if latest_note is not None:
            try:
                latest_note = log.with_cosignatures(conn, cps[-1].size, latest_note)
            except NoteError:
                # A stored cosignature that is no signature line is a finding of its own; the
                # bare note is kept, so the witness's cosignature is still looked for below.
                latest_note = Note.parse(cps[-1].note)
                rep.fail(
                    f"checkpoint {cps[-1].size}: a stored cosignature is not a signature line "
                    "(ledger_cosignatures was edited)"
                )
        rb = Rebuilder(
            range(log.NODE_LEVEL, 64),
            [c.size for c in cps]
            + ([outside[0].size] if outside else [])
            + ([seen[0].size] if seen else []),
        )
        expected = 0
        first_bad_node: str | None = None
        seen_nodes = 0
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
            anchored.add(r.idx, kind, r.body)
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
        anchor_problems, anchor_rows = anchored.run(conn)
    rep.size, rep.root = rb.cr.size, rb.cr.root()
    for problem in anchor_problems:
        rep.fail(problem)
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
        try:
            signers = Note.parse(ext_note).verified_by([key]) if key is not None else []
        except NoteError as exc:  # a garbled copy is a finding, never a crash (the campaign's)
            signers = []
            rep.fail(
                f"the checkpoint kept outside the store (size {ext.size}) is not a signed "
                f"note: {exc}"
            )
        if key is not None and key.name not in signers:
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
    if witness is not None and seen is not None:
        wcp = seen[0]
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
                f"the log extends the checkpoint of size {wcp.size} the witness "
                f"{witness.name} cosigned"
            )
        if latest_note is not None and not _cosigned_by(latest_note, witness):
            rep.fail(
                f"the latest checkpoint (size {cps[-1].size}) carries no cosignature by the "
                f"witness {witness.name}: it was published without the witness"
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
            f"{anchor_rows} rows that confer authority or scope match the ledger events that "
            f"anchor them ({len(anchors.TABLES)} tables)",
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


def cosign(call: Call, url: str, witness: Verifier) -> dict[str, object]:
    """Ask a witness (C2SP tlog-witness add-checkpoint) to cosign the latest checkpoint."""
    cp, note = checkpoint(call)
    if not _cosigned_by(note, witness):
        with call.transaction() as conn:
            configured = witness_config(call.ws)
            _witness_cosign(
                call.ws,
                conn,
                url,
                witness,
                cp,
                note,
                configured=configured is not None and configured.key == witness,
            )
    return {"size": cp.size, "witness": witness.name, "at": dt.datetime.now(dt.UTC).isoformat()}


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
