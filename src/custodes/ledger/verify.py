"""Verification that needs nothing but data: rebuild the tree from entries and compare.

Used three ways: `audit_store` re-derives everything in a workspace's store; `verify_export`
checks a tlog-tiles export offline with only the verifier key; `verify_receipt` checks a
single-disclosure receipt (c2sp.org/tlog-proof@v1).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from custodes.ledger.events import commitment
from custodes.ledger.policy import Policy, PolicyError
from custodes.tlog import tiles
from custodes.tlog.note import Checkpoint, Note, NoteError, Verifier, b64, open_checkpoint, unb64
from custodes.tlog.tree import CompactRange, ProofError, leaf_hash, verify_inclusion

RECEIPT_HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROBLEMS = 20


@dataclass
class Report:
    size: int = 0
    root: bytes = b""
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "size": self.size,
            "root": b64(self.root) if self.root else None,
            "checked": self.checked,
            "problems": self.problems,
        }


class Rebuilder:
    """Feeds leaves into a compact range, remembering nodes and roots worth comparing."""

    def __init__(self, keep_levels: Iterable[int], roots_at: Iterable[int] = ()) -> None:
        self.cr = CompactRange()
        self.keep = set(keep_levels)
        self.want_roots = set(roots_at)
        self.roots: dict[int, bytes] = {0: self.cr.root()}
        self.nodes: list[tuple[int, int, bytes]] = []

    def add(self, entry: bytes) -> list[tuple[int, int, bytes]]:
        done = [n for n in self.cr.append(leaf_hash(entry)) if n[0] in self.keep]
        if self.cr.size in self.want_roots:
            self.roots[self.cr.size] = self.cr.root()
        return done


def verify_export(
    folder: Path, key: Verifier, *, previous: str | None = None, policy: Policy | None = None
) -> Report:
    """Check a tlog-tiles export: signature, every entry, every tile, root, growth, quorum."""
    rep = Report()
    cp_path = folder / "checkpoint"
    if not cp_path.exists():
        rep.fail("checkpoint: missing")
        return rep
    try:
        cp, note = open_checkpoint(cp_path.read_bytes(), key)
    except NoteError as exc:
        rep.fail(f"checkpoint: {exc}")
        return rep
    rep.size, rep.root = cp.size, cp.root
    rep.checked.append(f"checkpoint signed by {key.name} (size {cp.size})")
    prev_cp = None
    if previous is not None:
        try:
            prev_cp, _ = open_checkpoint(previous, key)
        except NoteError as exc:
            rep.fail(f"previous checkpoint: {exc}")
        if prev_cp and prev_cp.origin != cp.origin:
            rep.fail("previous checkpoint belongs to another log (origin differs)")
            prev_cp = None
        if prev_cp and prev_cp.size > cp.size:
            rep.fail(f"the log shrank: previous size {prev_cp.size}, now {cp.size}")
            prev_cp = None
    levels = tiles.levels_for(cp.size)
    rb = Rebuilder(
        {tiles.TILE_HEIGHT * lv for lv in range(levels)}, [prev_cp.size] if prev_cp else []
    )
    bodies = _bodies(folder / "bodies.jsonl", rep)
    tile_cache: dict[tuple[int, int], list[bytes]] = {}
    try:
        for i, entry in enumerate(tiles.read_entries(folder, cp.size)):
            if bodies is not None:
                b = bodies.get(i)
                if b is None:
                    rep.fail(f"entry {i}: no body in bodies.jsonl")
                elif commitment(*b) != entry:
                    rep.fail(f"entry {i}: its body does not match the commitment in the log")
            for level, idx, h in rb.add(entry):
                lv = level // tiles.TILE_HEIGHT
                n, pos = divmod(idx, tiles.TILE_WIDTH)
                width = _width(cp.size, lv, n)
                if (lv, n) not in tile_cache:
                    if len(tile_cache) > 64:
                        tile_cache.clear()
                    tile_cache[(lv, n)] = tiles.read_tile(folder, lv, n, width)
                if tile_cache[(lv, n)][pos] != h:
                    rep.fail(
                        f"{tiles.tile_path(lv, n, width)}: hash {pos} does not match the "
                        f"entries (entry {i})"
                    )
    except tiles.TileError as exc:
        rep.fail(str(exc))
        return rep
    rep.checked.append(f"{cp.size} entries hashed; every tile matches")
    if bodies is not None:
        rep.checked.append("every entry matches its event body")
    if rb.cr.root() != cp.root:
        rep.fail(f"the entries do not hash to the checkpoint's root (size {cp.size})")
    else:
        rep.checked.append("the entries hash to the signed root")
    if prev_cp is not None:
        if rb.roots.get(prev_cp.size) != prev_cp.root:
            rep.fail(
                f"the log was rewritten: its first {prev_cp.size} entries no longer "
                "hash to the previous checkpoint's root"
            )
        else:
            rep.checked.append(f"the log only grew since size {prev_cp.size}")
    _check_policy(note, policy, rep)
    return rep


def _width(size: int, level: int, n: int) -> int:
    full = (size >> (tiles.TILE_HEIGHT * level)) // tiles.TILE_WIDTH
    return tiles.TILE_WIDTH if n < full else (size >> (tiles.TILE_HEIGHT * level)) % 256


def _bodies(path: Path, rep: Report) -> dict[int, tuple[bytes, bytes]] | None:
    """bodies.jsonl, one JSON object a line ({"idx": int, "salt": base64, "body": text});
    a line that is not one is a failure of the report, never an exception."""
    if not path.exists():
        return None
    out = {}
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            d = json.loads(
                raw
            )  # bytes: JSON's own UTF-8 check (a UnicodeDecodeError is a ValueError)
            if not isinstance(d, dict) or not isinstance(d.get("body"), str):
                raise ValueError("not a body object")
            out[int(d["idx"])] = (unb64(d["salt"], "salt"), d["body"].encode())
        except (ValueError, TypeError, KeyError, NoteError, RecursionError):
            rep.fail(f"bodies.jsonl:{lineno}: not a body line")
    return out


def _check_policy(note: Note, policy: Policy | None, rep: Report) -> None:
    if policy is None:
        return
    try:
        signed = policy.check(note)
        rep.checked.append(f"witness quorum met ({', '.join(signed) or 'no quorum required'})")
    except (PolicyError, NoteError) as exc:
        rep.fail(str(exc))


def format_receipt(index: int, entry: bytes, path: list[bytes], note: Note) -> str:
    lines = [RECEIPT_HEADER, f"extra {b64(entry)}", f"index {index}", *(b64(h) for h in path)]
    return "\n".join(lines) + "\n\n" + note.render()


def verify_receipt(
    text: str, key: Verifier, *, policy: Policy | None = None, body: dict[str, str] | None = None
) -> Report:
    """Check one disclosure's receipt: signed checkpoint, inclusion, optionally its body."""
    rep = Report()
    head, sep, note_text = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != RECEIPT_HEADER:
        rep.fail(f"not a receipt (the first line must be {RECEIPT_HEADER})")
        return rep
    try:
        if not lines[1].startswith("extra ") or not lines[2].startswith("index "):
            raise NoteError("a receipt needs 'extra' and 'index' lines")
        entry = unb64(lines[1][6:], "extra")
        index = int(lines[2][6:])
        path = [unb64(x, "proof hash") for x in lines[3:]]
        cp, note = open_checkpoint(note_text, key)
    except (NoteError, ValueError, IndexError) as exc:
        rep.fail(f"receipt: {exc}")
        return rep
    rep.size, rep.root = cp.size, cp.root
    rep.checked.append(f"checkpoint signed by {key.name} (size {cp.size})")
    try:
        verify_inclusion(index, cp.size, leaf_hash(entry), path, cp.root)
        rep.checked.append(f"event {index} is in the log")
    except ProofError as exc:
        rep.fail(f"inclusion: {exc}")
    if body is not None:
        try:
            if not isinstance(body, dict) or not all(
                isinstance(body.get(k), str) for k in ("salt", "body")
            ):
                raise NoteError("not an object with a salt and a body (text)")
            c = commitment(unb64(body["salt"], "salt"), body["body"].encode())
        except NoteError as exc:
            rep.fail(f"body file: {exc}")
        else:
            if c != entry:
                rep.fail("the event body does not match the receipt's commitment")
            else:
                rep.checked.append("the event body matches its commitment")
    _check_policy(note, policy, rep)
    return rep


__all__ = ["Checkpoint", "Rebuilder", "Report", "format_receipt", "verify_export", "verify_receipt"]
