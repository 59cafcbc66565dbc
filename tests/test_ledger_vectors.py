"""Every ledger vector in ../shared/vectors, read at test time."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from custodes.tlog import tiles
from custodes.tlog.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    open_checkpoint,
)
from custodes.tlog.tree import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    memory_perfect,
    root,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)

SHARED = Path(os.environ.get("CUSTODES_SHARED", Path(__file__).resolve().parents[2] / "shared"))

V = SHARED / "vectors"
PROOFS = V / "transparency-dev-merkle-proofs"
EXTRACTED = V / "extracted-values"
TESSERA = V / "tessera-posix-testlog" / "log"
SUNLIGHT = V / "sunlight-witness-cosignatures"


def b(s: str) -> bytes:
    return base64.b64decode(s)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def _cases(kind: str) -> list[Path]:
    return sorted((PROOFS / kind).rglob("*.json"))


def test_vectors_are_present() -> None:
    assert len(_cases("inclusion")) > 50 and len(_cases("consistency")) > 50, (
        f"shared vectors not found under {V}"
    )


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_vectors(path: Path) -> None:
    c = load(path)
    args = (
        c["leafIdx"],
        c["treeSize"],
        b(c["leafHash"]),
        [b(p) for p in c["proof"] or []],
        b(c["root"]),
    )
    if c["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_vectors(path: Path) -> None:
    c = load(path)
    args = (c["size1"], c["size2"], b(c["root1"]), b(c["root2"]), [b(p) for p in c["proof"] or []])
    if c["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


@pytest.mark.parametrize(
    "path", _cases("subtreeinclusion"), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_subtree_inclusion_vectors(path: Path) -> None:
    c = load(path)
    args = (
        c["leafIdx"],
        c["start"],
        c["end"],
        b(c["leafHash"]),
        [b(p) for p in c["proof"] or []],
        b(c["root"]),
    )
    if c["wantErr"]:
        with pytest.raises(ProofError):
            verify_subtree_inclusion(*args)
    else:
        verify_subtree_inclusion(*args)


@pytest.mark.parametrize(
    "path", _cases("subtreeconsistency"), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_subtree_consistency_vectors(path: Path) -> None:
    c = load(path)
    args = (
        c["start"],
        c["end"],
        c["size"],
        [b(p) for p in c["proof"] or []],
        b(c["root1"]),
        b(c["root2"]),
    )
    if c["wantErr"]:
        with pytest.raises(ProofError):
            verify_subtree_consistency(*args)
    else:
        verify_subtree_consistency(*args)


def test_consistency_from_empty_tree_is_a_policy() -> None:
    verify_consistency(0, 5, EMPTY_ROOT, b"\x01" * 32, [], allow_empty_old=True)
    with pytest.raises(ProofError):
        verify_consistency(0, 5, EMPTY_ROOT, b"\x01" * 32, [b"\x00" * 32], allow_empty_old=True)


def test_rfc6962_reference_tree_generation() -> None:
    ref = load(EXTRACTED / "rfc6962-reference-tree.json")
    leaves = [leaf_hash(bytes.fromhex(x)) for x in ref["leaves_hex"]]
    for level, hashes in enumerate(ref["node_hashes_by_level"]):
        perfect = memory_perfect(leaves)
        assert [perfect(level, i).hex() for i in range(len(hashes))] == hashes
    for size, want in enumerate(ref["root_by_tree_size"]):
        assert root(memory_perfect(leaves[:size]), size).hex() == want
    perfect = memory_perfect(leaves)
    for p in ref["inclusion_proofs"]:
        got = inclusion_proof(
            memory_perfect(leaves[: p["tree_size"]]), p["leaf_index_0based"], p["tree_size"]
        )
        assert [h.hex() for h in got] == p["audit_path"]
    for p in ref["consistency_proofs"]:
        got = consistency_proof(perfect, p["size1"], p["size2"])
        assert [h.hex() for h in got] == p["proof"]
    for chk in ref["hasher_checks"]:
        if chk.get("leaf_hex") is not None:
            assert leaf_hash(bytes.fromhex(chk["leaf_hex"])).hex() == chk["want"]


def _notes() -> dict[str, dict]:
    return {
        n["id"]: n for n in load(EXTRACTED / "signed-notes-checkpoints-cosignatures.json")["notes"]
    }


def test_signed_note_vectors() -> None:
    notes = _notes()
    ex = notes["c2sp-signed-note-example"]
    assert Note.parse(ex["note"]).verified_by([Verifier.parse(ex["vkey"])]) == {
        "example.com/foo": 0
    }
    pn = notes["go-note-peterneumann"]
    signer = Signer.decode(pn["skey"])
    assert signer.seed.hex() == pn["ed25519_seed_hex"]
    assert signer.verifier.vkey == pn["vkey"]
    assert pn["text"] + "\n" + signer.sign(pn["text"].encode()) == pn["signed_note"]
    enoch = notes["go-note-enochroot-zero-seed"]
    note = Note.parse(enoch["signed_note"])
    assert note.verified_by([Verifier.parse(pn["vkey"])]) == {"PeterNeumann": 0}
    both = note.verified_by([Verifier.parse(pn["vkey"]), Verifier.parse(enoch["vkey"])])
    assert set(both) == {"PeterNeumann", "EnochRoot"}
    assert Signer("EnochRoot", bytes(32)).verifier.vkey == enoch["vkey"]
    go = notes["sum.golang.org-production-checkpoint"]
    cp, _ = open_checkpoint(go["note"], Verifier.parse(go["vkey"]))
    assert (cp.origin, cp.size) == ("go.sum database tree", 35225469)


def test_malformed_vkeys_are_refused() -> None:
    data = load(EXTRACTED / "signed-notes-checkpoints-cosignatures.json")
    for bad in data["malformed_vkeys"][:2]:
        with pytest.raises(NoteError):
            Verifier.parse(bad["vkey"])
    good = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    Verifier.parse(good)
    for i in range(len(good)):
        for variant in (good[:i], good[:i] + chr(ord(good[i]) + 1) + good[i + 1 :]):
            with pytest.raises(NoteError):
                Verifier.parse(variant)


@pytest.mark.parametrize(
    "bad",
    [
        "text\n",  # no signature block
        "text\n\n",  # blank line, no signatures
        "text\n\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiF",  # no final newline
        "\x01text\n\n\u2014 k AAAAAAA=\n",  # control byte
        "text\n\n\u2014 Bad Name AAAAAAA=\n",  # space in key name
        "text\n\n\u2014 k AAAAAAA=\nnot a signature\n",  # trailing line
        "text\n\n" + "\u2014 k AAAAAAA=\n" * 101,  # too many signatures
    ],
)
def test_malformed_notes_are_refused(bad: str) -> None:
    with pytest.raises(NoteError):
        Note.parse(bad)
    with pytest.raises(NoteError):
        Note.parse(b"\xfftext\n\n\xe2\x80\x94 k AAAAAAA=\n")


def test_failing_known_signature_rejects_the_note() -> None:
    pn = _notes()["go-note-peterneumann"]
    tampered = pn["signed_note"].replace("problem,", "problem;", 1)
    with pytest.raises(NoteError, match="does not verify"):
        Note.parse(tampered).verified_by([Verifier.parse(pn["vkey"])])


def test_tessera_log_reverified_and_resigned_byte_for_byte(tmp_path: Path) -> None:
    key = _notes()["tessera-testdata-log-key"]
    signer = Signer.decode(key["skey"])
    vkey = Verifier.parse(key["vkey"])
    words = "one two three four five six seven eit nain ten ileven twelf threeten fourten fivten"
    entries = [w.encode() for w in words.split()]
    for n in range(16):
        raw = (TESSERA / f"checkpoint.{n}").read_text()
        cp, note = open_checkpoint(raw, vkey)
        assert cp.size == n and cp.origin == "example.com/log/testdata"
        leaves = [leaf_hash(e) for e in entries[:n]]
        assert cp.root == root(memory_perfect(leaves), n)
        assert cp.body() == note.text
        assert note.text + "\n" + signer.sign(note.text.encode()) == raw
        if n:
            assert tiles.read_tile(TESSERA, 0, 0, n) == leaves
            assert list(tiles.read_entries(TESSERA, n)) == entries[:n]
            out = tmp_path / str(n)
            tiles.write_tiles(out, n, memory_perfect(leaves), iter(entries[:n]))
            for rel in (tiles.tile_path(0, 0, n), tiles.tile_path("entries", 0, n)):
                assert (out / rel).read_bytes() == (TESSERA / rel).read_bytes()
    assert (TESSERA / "checkpoint").read_text() == (TESSERA / "checkpoint.15").read_text()


def _seed(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def test_sunlight_cosignatures() -> None:
    origin_hash = hashlib.sha256(b"rome2026h1.example.org").hexdigest()
    witness_vkey = json.loads((SUNLIGHT / "witness" / "witness.v0.json").read_text())[
        "verifier_keys"
    ][0]
    raw = (SUNLIGHT / "witness" / origin_hash / "checkpoint").read_text()
    note = Note.parse(raw)
    verifier = Verifier.parse(witness_vkey)
    assert verifier.alg == ALG_COSIGNATURE_V1
    # The log's own ECDSA (0x05) signature is not ours to check: it must be ignored.
    assert note.verified_by([verifier]) == {"witness.example.org": 1767139200}
    cosigner = Signer("witness.example.org", _seed("skylight test witness key"), ALG_COSIGNATURE_V1)
    assert cosigner.verifier.vkey == witness_vkey
    assert cosigner.sign(note.text.encode(), 1767139200) == note.signatures[-1].line
    cos = load(EXTRACTED / "signed-notes-checkpoints-cosignatures.json")["cosignature_v1_ed25519"]
    assert cos["signature_line"] + "\n" == note.signatures[-1].line

    # witness2 cosigns a different log with its own key.
    w2 = json.loads((SUNLIGHT / "witness2" / "witness.v0.json").read_text())["verifier_keys"][0]
    h2 = hashlib.sha256(b"milan2026h1.example.org").hexdigest()
    note2 = Note.parse((SUNLIGHT / "witness2" / h2 / "checkpoint").read_text())
    assert "witness2.example.org" in note2.verified_by([Verifier.parse(w2)])
    assert (
        Signer(
            "witness2.example.org", _seed("skylight test witness2 key"), ALG_COSIGNATURE_V1
        ).verifier.vkey
        == w2
    )
    with pytest.raises(NoteError):  # a cosignature over another checkpoint fails
        Note(note2.text, note.signatures).verified_by([verifier])


def test_sunlight_mirror_tiles() -> None:
    origin_hash = hashlib.sha256(b"rome2026h1.example.org").hexdigest()
    mirror = SUNLIGHT / "witness" / "mirror" / origin_hash
    vkey = json.loads((SUNLIGHT / "witness" / "mirror" / "mirror.v0.json").read_text())[
        "verifier_keys"
    ][0]
    note = Note.parse((mirror / "checkpoint").read_text())
    assert "mirror.example.org" in note.verified_by([Verifier.parse(vkey)])
    cp = Checkpoint.parse_body(note.text)
    leaves = [leaf_hash(f"record {i}".encode()) for i in range(300)]
    perfect = memory_perfect(leaves)
    assert cp.size == 300 and cp.root == root(perfect, 300)
    assert tiles.read_tile(mirror, 0, 0, 256) == leaves[:256]
    assert tiles.read_tile(mirror, 0, 1, 44) == leaves[256:]
    assert tiles.read_tile(mirror, 1, 0, 1) == [perfect(8, 0)]


def test_tile_paths() -> None:
    data = load(EXTRACTED / "tlog-tiles-paths.json")
    for p in data["c2sp_paths"]:
        level = "entries" if p.get("entries") else p["level"]
        assert tiles.tile_path(level, p["index"], p["width"]) == p["path"]
    for ex in data["c2sp_tree_examples"]:
        for lv in ex["computed"]:
            got = list(tiles.tiles_for(ex["tree_size"], lv["level"]))
            full = [t for t in got if t[1] == 256]
            part = [t[1] for t in got if t[1] != 256]
            assert len(full) == lv["full_tiles"]
            assert (part[0] if part else 0) == lv["partial_width"]
