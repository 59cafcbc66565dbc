"""One fuzzing harness per parser that takes outside input (issue #26, item 4).

Each harness takes the fuzzer's bytes, hands them to the parser the way the product does (the
same entry point the CLI, the API or `ledger verify` calls), and returns normally when the
product answers — with a result or with one of its own coded errors (`CustodesError` with a
code). Anything else that escapes (an uncoded exception: what the CLI reports as exit 70 and the
API as a 500) is a crash, and so is an answer that says "server error" (the witness's 5xx, the
API's 5xx).

The harnesses are plain functions of `bytes`, so the same code runs under atheris
(`fuzz/fuzz_one.py`, coverage-guided) and in the regression test
(`tests/test_fuzz_regressions.py`, which replays every saved crasher). `seeds(name)` gives
the starting corpus, built from the tests' shapes and the shared transparency-log vectors.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from custodes.errors import CustodesError

HERE = Path(__file__).resolve().parent
VECTORS = Path(os.environ.get("CUSTODES_VECTORS", "/work/shared/vectors"))
# A scratch folder for the files the parsers read (on tmpfs when there is one: it is written
# on every execution).
SCRATCH_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


class Crash(Exception):
    """An answer that is not a coded error: a server error from a face."""


@dataclass
class Harness:
    name: str
    what: str  # the parser and the entry point, for the table
    target: Callable[[bytes], None]
    seeds: Callable[[], Iterator[bytes]]


def expect_coded(target: Callable[[bytes], Any], data: bytes) -> None:
    """Run one input: a coded `CustodesError` is an answer; anything else propagates."""
    try:
        target(data)
    except CustodesError as exc:
        if not exc.code or exc.code in ("error", "internal"):
            raise Crash(f"an uncoded CustodesError ({type(exc).__name__})") from exc


@cache
def scratch() -> Path:
    d = Path(tempfile.mkdtemp(prefix="custodes-fuzz-", dir=SCRATCH_ROOT))
    return d


def _fresh(name: str) -> Path:
    d = scratch() / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(mode=0o700)
    return d


# --- requests: envelope, items CSV and Parquet (intake.check, as `submit` and `rules check`) --

ENVELOPE = {
    "provision": "irc-6103-i-2",
    "agency": "U.S. Immigration and Customs Enforcement",
    "signer": {"name": "Pat Example", "title": "Director", "role": "head_of_agency"},
    "statutory_authority": "26 U.S.C. 6103(i)(2)",
    "reason": "Non-tax criminal investigation under 8 U.S.C. 1253.",
    "taxable_periods": [2023, 2024],
    "fields_requested": ["address"],
    "officials": [{"id": "OFF-1", "name": "Lee Example", "title": "Special Agent"}],
    "items": "items.csv",
}
ITEMS_CSV = (
    "item_id,first_name,middle_name,last_name,suffix,dob,tin,street,unit,city,state,zip,"
    "case_number,official_id\n"
    "A-1,Ann,B,Smith,,1980-01-02,,1 Main St,,Springfield,IL,62701,CASE-1,OFF-1\n"
    'A-2,"Bo, Jr",,Jones,JR,1975-12-31,123-45-6789,2 Elm St,Apt 3,Dover,DE,19901,CASE-2,OFF-1\n'
    "A-3,Cy,,Lee,,,,,,,,,CASE-3,OFF-1\n"
)


def _intake(folder: Path) -> None:
    from custodes.requests import intake

    intake.check(folder)


@cache
def _items_table() -> Any:
    from custodes.records.files import read_text_table
    from custodes.requests.format import EXTRA_COLUMN, ITEM_COLUMNS

    d = _fresh("items-template")
    (d / "items.csv").write_text(ITEMS_CSV)
    return read_text_table(
        d / "items.csv", ITEM_COLUMNS, allow_extra=True, extra_names=EXTRA_COLUMN
    )


def envelope(data: bytes) -> None:
    """What `intake.check` does with an envelope: read and shape-check it, find its items file
    by the name it gives, hash it with the items. (The item checks `check` then runs in DuckDB
    never see the envelope, and cost 50 ms an input: they are the items harnesses' work.)"""
    from custodes.records.files import read_text_table
    from custodes.requests.format import EXTRA_COLUMN, ITEM_COLUMNS, read_envelope
    from custodes.requests.intake import content_hash

    d = _fresh("envelope")
    (d / "envelope.json").write_bytes(data)
    env = read_envelope(d)
    items = d / env["items"]
    if items.is_symlink():
        return
    if items.exists():
        read_text_table(items, ITEM_COLUMNS, allow_extra=True, extra_names=EXTRA_COLUMN)
    content_hash(env, _items_table())


def envelope_seeds() -> Iterator[bytes]:
    yield json.dumps(ENVELOPE, indent=1).encode()
    yield json.dumps(ENVELOPE | {"court_order": {"id": "x"}, "agreement": "irs-ice-2025"}).encode()
    yield json.dumps({k: v for k, v in ENVELOPE.items() if k != "reason"}).encode()
    yield b'{"provision": }'
    yield b"\xef\xbb\xbf" + json.dumps(ENVELOPE).encode()
    yield b"[" * 64 + b"]" * 64


def items_csv(data: bytes) -> None:
    d = _fresh("items_csv")
    (d / "envelope.json").write_text(json.dumps(ENVELOPE))
    (d / "items.csv").write_bytes(data)
    _intake(d)


def items_csv_seeds() -> Iterator[bytes]:
    yield ITEMS_CSV.encode()
    yield ITEMS_CSV.replace(",", ";").encode()
    yield ITEMS_CSV.encode() + b'A-4,"unterminated\n'
    yield ITEMS_CSV.splitlines()[0].encode() + b",extra_col\n" + b"A-9" + b"," * 14 + b"\n"
    yield ITEMS_CSV.encode().replace(b"Ann", b"\xff\xfe")


def _parquet_bytes(csv_text: str, **kw: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    t = pacsv.read_csv(
        io.BytesIO(csv_text.encode()),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in csv_text.splitlines()[0].split(",")}
        ),
    )
    buf = io.BytesIO()
    pq.write_table(t, buf, **kw)
    return buf.getvalue()


def items_parquet(data: bytes) -> None:
    d = _fresh("items_parquet")
    (d / "envelope.json").write_text(json.dumps(ENVELOPE | {"items": "items.parquet"}))
    (d / "items.parquet").write_bytes(data)
    _intake(d)


def items_parquet_seeds() -> Iterator[bytes]:
    yield _parquet_bytes(ITEMS_CSV)
    yield _parquet_bytes(ITEMS_CSV, compression="none")
    yield _parquet_bytes(ITEMS_CSV, use_dictionary=True, compression="none")
    yield _parquet_bytes(ITEMS_CSV, compression="zstd", row_group_size=1)


# --- rules: agreement YAML (registry.parse_agreement) and rule-set YAML (provisions.load) --


@cache
def _reference_rules() -> Any:
    from custodes.rules.provisions import load

    return load()


def agreement(data: bytes) -> None:
    from custodes.rules.registry import parse_agreement

    parse_agreement(data, "agreement.yaml", _reference_rules())


def agreement_seeds() -> Iterator[bytes]:
    from custodes.rules.provisions import REFERENCE

    text = (REFERENCE.parent / "agreements" / "irs-ice-2025.yaml").read_bytes()
    yield text
    yield text.replace(b"removal-order-date", b"no-such-check")
    yield b"id: a\nprovision: irc-6103-l-7\nagency: X\ncitation: Y\nparameters: {max_items: 5}\n"
    yield b"a: &x [1, 2]\nb: *x\n"
    yield b"- " * 70 + b"x\n"


# The files a rule-set fuzz input may replace (the first byte chooses), the rest of the
# reference folder staying as shipped.
RULESET_FILES = (
    "ruleset.yaml",
    "checks.yaml",
    "fields.yaml",
    "placeholders.yaml",
    "irc6103/i-2.yaml",
    "irc6103/l-7.yaml",
)


@cache
def _ruleset_copy() -> Path:
    from custodes.rules.provisions import REFERENCE

    d = scratch() / "ruleset-reference"
    shutil.copytree(REFERENCE, d)
    return d


def ruleset(data: bytes) -> None:
    from custodes.rules.provisions import load

    if not data:
        return
    name = RULESET_FILES[data[0] % len(RULESET_FILES)]
    folder = _ruleset_copy()
    path = folder / name
    original = path.read_bytes()
    path.write_bytes(data[1:])
    try:
        load(folder)
    finally:
        path.write_bytes(original)


def ruleset_seeds() -> Iterator[bytes]:
    from custodes.rules.provisions import REFERENCE

    for i, name in enumerate(RULESET_FILES):
        yield bytes([i]) + (REFERENCE / name).read_bytes()


# --- archives (store.archive.unpacked: rule-set proposals, ledger exports to check) ---------


def archive(data: bytes) -> None:
    from custodes.store.archive import unpacked

    with unpacked(io.BytesIO(data), "fuzzed archive") as folder:
        for p in folder.rglob("*"):
            if p.is_file():
                p.read_bytes()


def archive_seeds() -> Iterator[bytes]:
    import tarfile
    import zipfile

    files = {"rules/ruleset.yaml": b"version: 1\n", "rules/irc6103/i-2.yaml": b"id: x\n"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, b in files.items():
            zf.writestr(n, b)
    yield buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("../evil", b"x")
    yield buf.getvalue()
    for mode in ("w", "w:gz", "w:bz2", "w:xz"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
            for n, b in files.items():
                info = tarfile.TarInfo(n)
                info.size = len(b)
                tf.addfile(info, io.BytesIO(b))
            if mode == "w":
                link = tarfile.TarInfo("rules/link")
                link.type = tarfile.SYMTYPE
                link.linkname = "/etc/passwd"
                tf.addfile(link)
        yield buf.getvalue()


# --- ledger: the export `ledger verify` reads (checkpoint, tiles, bundles, bodies), receipts,
# policy files, and the witness protocol --------------------------------------------------

LOG_ORIGIN = "custodes.fuzz/log"
LOG_SEED = bytes(range(32))
WITNESS_SEED = bytes(range(32, 64))
LOG_SIZE = 300  # one full level-0 tile, a partial one, and a level-1 partial tile


@cache
def _log() -> Any:
    from custodes.tlog.note import Signer

    return Signer(LOG_ORIGIN, LOG_SEED)


@cache
def _entries() -> list[bytes]:
    from custodes.ledger.events import commitment

    return [commitment(struct.pack(">Q", i) * 2, f'{{"n": {i}}}'.encode()) for i in range(LOG_SIZE)]


def _bodies_text(n: int) -> str:
    from custodes.tlog.note import b64

    return "".join(
        json.dumps({"idx": i, "salt": b64(struct.pack(">Q", i) * 2), "body": f'{{"n": {i}}}'})
        + "\n"
        for i in range(n)
    )


def _checkpoint(size: int) -> str:
    from custodes.tlog.note import Checkpoint, Note
    from custodes.tlog.tree import leaf_hash, memory_perfect, root

    leaves = [leaf_hash(e) for e in _entries()[:size]]
    cp = Checkpoint(LOG_ORIGIN, size, root(memory_perfect(leaves), size))
    note = Note(cp.body())
    note.add(_log().sign(cp.body().encode()))
    return note.render()


@cache
def _export() -> dict[str, bytes]:
    """A valid export of LOG_SIZE entries, as files by relative path."""
    from custodes.tlog import tiles
    from custodes.tlog.tree import leaf_hash, memory_perfect

    d = scratch() / "export-template"
    d.mkdir()
    leaves = [leaf_hash(e) for e in _entries()]
    tiles.write_tiles(d, LOG_SIZE, memory_perfect(leaves), iter(_entries()))
    (d / "checkpoint").write_text(_checkpoint(LOG_SIZE))
    (d / "bodies.jsonl").write_text(_bodies_text(LOG_SIZE))
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# What a ledger-export input replaces (its first byte chooses): each file `ledger verify`
# parses, plus the `--previous` checkpoint and the `--policy` file it may be given.
EXPORT_SLOTS = (
    "checkpoint",
    "tile/0/000",
    "tile/0/001.p/44",
    "tile/1/000.p/1",
    "tile/entries/000",
    "tile/entries/001.p/44",
    "bodies.jsonl",
    "--previous",
    "--policy",
)


def _policy_text() -> str:
    from custodes.tlog.note import Signer

    w = Signer("custodes.fuzz/witness", WITNESS_SEED, 4).verifier.vkey
    return f"log {_log().verifier.vkey}\nwitness w1 {w}\ngroup g any w1\nquorum none\n"


def ledger_export(data: bytes) -> None:
    from custodes.services.ledger import verify_path

    if not data:
        return
    slot = EXPORT_SLOTS[data[0] % len(EXPORT_SLOTS)]
    d = _fresh("export")
    for rel, content in _export().items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(content)
    previous = policy = None
    if slot == "--previous":
        previous = scratch() / "previous"
        previous.write_bytes(data[1:])
    elif slot == "--policy":
        policy = scratch() / "policy"
        policy.write_bytes(data[1:])
    else:
        (d / slot).write_bytes(data[1:])
    verify_path(d, _log().verifier, previous=previous, policy=policy)


def ledger_export_seeds() -> Iterator[bytes]:
    export = _export()
    for i, slot in enumerate(EXPORT_SLOTS):
        if slot == "--previous":
            yield bytes([i]) + _checkpoint(200).encode()
        elif slot == "--policy":
            yield bytes([i]) + _policy_text().encode()
        else:
            yield bytes([i]) + export[slot]


def checkpoint(data: bytes) -> None:
    """A checkpoint alone (the export's first parse, and `--previous`): the fast path for
    volume, through the same `verify_path` on a one-entry export."""
    from custodes.services.ledger import verify_path

    d = _small_export()
    (d / "checkpoint").write_bytes(data)
    verify_path(d, _log().verifier)


@cache
def _small_export() -> Path:
    from custodes.tlog import tiles
    from custodes.tlog.tree import leaf_hash, memory_perfect

    d = scratch() / "export-small"
    d.mkdir()
    tiles.write_tiles(d, 1, memory_perfect([leaf_hash(_entries()[0])]), iter(_entries()))
    return d


def checkpoint_seeds() -> Iterator[bytes]:
    yield _checkpoint(1).encode()
    yield _checkpoint(0).encode()
    for p in sorted((VECTORS / "tessera-posix-testlog" / "log").glob("checkpoint*"))[:4]:
        yield p.read_bytes()
    for p in sorted((VECTORS / "sunlight-witness-cosignatures").rglob("*checkpoint*"))[:4]:
        if p.is_file():
            yield p.read_bytes()


def receipt(data: bytes) -> None:
    """A receipt (`ledger verify RECEIPT`), or — when the first byte is odd — the `--body`
    file given with a valid receipt."""
    from custodes.services.ledger import verify_path

    if not data:
        return
    path, body = scratch() / "receipt", None
    if data[0] % 2:
        path.write_bytes(next(receipt_seeds())[1:])
        body = scratch() / "receipt-body"
        body.write_bytes(data[1:])
    else:
        path.write_bytes(data[1:])
    verify_path(path, _log().verifier, body=body)


def receipt_seeds() -> Iterator[bytes]:
    from custodes.ledger.verify import format_receipt
    from custodes.tlog.note import Note
    from custodes.tlog.tree import inclusion_proof, leaf_hash, memory_perfect

    leaves = [leaf_hash(e) for e in _entries()]
    note = Note.parse(_checkpoint(LOG_SIZE))
    for index in (0, 7, 299):
        path = inclusion_proof(memory_perfect(leaves), index, LOG_SIZE)
        yield b"\x00" + format_receipt(index, _entries()[index], path, note).encode()
    yield b"\x01" + json.dumps({"salt": _salt_b64(0), "body": '{"n": 0}'}).encode()


def _salt_b64(i: int) -> str:
    from custodes.tlog.note import b64

    return b64(struct.pack(">Q", i) * 2)


@cache
def _witness() -> Any:
    from custodes.tlog.note import Signer
    from custodes.tlog.witness import Witness

    state = scratch() / "witness.db"
    return Witness(state, Signer("custodes.fuzz/witness", WITNESS_SEED, 4), [_log().verifier])


def witness(data: bytes) -> None:
    """The tlog-witness `add-checkpoint` body (the witness's one POST endpoint). The state is
    reset every time, so each input meets a witness that has cosigned nothing yet or (when
    the body's first line says so) size 100 of the fuzz log."""
    import sqlite3

    from custodes.tlog.note import Checkpoint

    w = _witness()
    db = sqlite3.connect(w.state_path, isolation_level=None)
    try:
        db.execute("DELETE FROM witness_state")
        if data.startswith(b"old 100\n"):
            cp = Checkpoint.parse_body(_checkpoint(100).split("\n\n")[0] + "\n")
            db.execute(
                "INSERT INTO witness_state (origin, size, root, note) VALUES (?, ?, ?, NULL)",
                (cp.origin, cp.size, cp.root),
            )
    finally:
        db.close()
    answer = w.add_checkpoint(data)
    if answer.status >= 500:
        raise Crash(f"the witness answered {answer.status}")


def witness_seeds() -> Iterator[bytes]:
    from custodes.tlog.note import b64
    from custodes.tlog.tree import consistency_proof, leaf_hash, memory_perfect

    leaves = [leaf_hash(e) for e in _entries()]
    yield b"old 0\n\n" + _checkpoint(100).encode()
    proof = consistency_proof(memory_perfect(leaves), 100, LOG_SIZE)
    yield (
        b"old 100\n"
        + "".join(b64(h) + "\n" for h in proof).encode()
        + b"\n"
        + _checkpoint(LOG_SIZE).encode()
    )
    yield b"old 5\n\n" + _checkpoint(3).encode()
    vectors = VECTORS / "extracted-values"
    for p in sorted(vectors.glob("*witness*")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        for s in _strings(doc):
            if s.startswith("old "):
                yield s.encode()


def _strings(doc: Any) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for v in doc.values():
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)


def tile_path(data: bytes) -> None:
    """A tile's path as the public tile route gets it (`GET /tile/<path>`, served to any
    tlog-tiles client): `parse_tile_path`, whose `TileError` the route answers with 404."""
    from custodes.tlog import tiles

    try:
        tiles.parse_tile_path(data.decode("utf-8"))
    except (UnicodeDecodeError, tiles.TileError):
        return


def tile_path_seeds() -> Iterator[bytes]:
    yield from (b"0/000", b"0/x001/234.p/7", b"entries/000.p/44", b"1/000.p/1", b"63/x999/999")


HARNESSES: dict[str, Harness] = {
    h.name: h
    for h in (
        Harness("envelope", "envelope.json -> intake.check", envelope, envelope_seeds),
        Harness("items_csv", "items.csv -> intake.check", items_csv, items_csv_seeds),
        Harness(
            "items_parquet", "items.parquet -> intake.check", items_parquet, items_parquet_seeds
        ),
        Harness(
            "agreement", "agreement YAML -> registry.parse_agreement", agreement, agreement_seeds
        ),
        Harness("ruleset", "rule-set YAML -> provisions.load", ruleset, ruleset_seeds),
        Harness("archive", "zip/tar -> archive.unpacked", archive, archive_seeds),
        Harness(
            "ledger_export",
            "export files -> ledger verify (verify_path)",
            ledger_export,
            ledger_export_seeds,
        ),
        Harness("checkpoint", "checkpoint -> ledger verify", checkpoint, checkpoint_seeds),
        Harness("receipt", "receipt -> ledger verify", receipt, receipt_seeds),
        Harness("witness", "add-checkpoint body -> Witness", witness, witness_seeds),
        Harness("tile_path", "tile path -> parse_tile_path", tile_path, tile_path_seeds),
    )
}


def register_api() -> None:
    """The API harness needs a workspace; it is added on demand (fuzz/api_json.py)."""
    from fuzz import api_json

    HARNESSES["api_json"] = Harness(
        "api_json", "JSON bodies -> every /v1 operation", api_json.target, api_json.seeds
    )
