"""The ledger outside the store: an export verifies in a fresh process, its tampering and
growth are caught, and receipts; the witness's conversation, over HTTP, its policies and
the bounds on every body."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from custodes.errors import CustodesError
from custodes.ledger import checkpoints, publish
from custodes.ledger.policy import Policy, PolicyError
from custodes.ledger.verify import verify_export, verify_receipt
from custodes.tlog.note import ALG_COSIGNATURE_V1, Note, Signer, Verifier
from custodes.tlog.witness import Witness, make_server
from custodes.workspace import Workspace
from shared_ledger import Direct, events, record
from test_ledger_vectors import EXTRACTED


def test_export_verifies_in_a_fresh_process(signed_ws: Workspace, tmp_path: Path) -> None:
    vkey = checkpoints.verifier(signed_ws).vkey
    publish.export(Direct(signed_ws), tmp_path / "exp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    empty = tmp_path / "empty-cwd"
    empty.mkdir()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "custodes",
            "ledger",
            "verify",
            str(tmp_path / "exp"),
            "--key",
            vkey,
            "--json",
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["size"] == 65
    # The export holds no personal data: only commitments, hashes and the checkpoint.
    blob = b"".join(p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file())
    assert b"officer1" not in blob and b"rec-" not in blob


def test_export_tampering_and_growth(signed_ws: Workspace, tmp_path: Path) -> None:
    key = checkpoints.verifier(signed_ws)
    publish.export(Direct(signed_ws), tmp_path / "v1", bodies=True)
    first = (tmp_path / "v1" / "checkpoint").read_text()
    assert verify_export(tmp_path / "v1", key).ok
    record(signed_ws, events(300, 65))
    publish.export(Direct(signed_ws), tmp_path / "v2", bodies=True)
    rep = verify_export(tmp_path / "v2", key, previous=first)
    assert rep.ok and any("only grew" in c for c in rep.checked), rep.problems
    assert any(p.name == "000" for p in (tmp_path / "v2" / "tile" / "0").iterdir())
    # A tile byte flipped, an entry changed, a body changed, a checkpoint from a fork.
    tile = tmp_path / "v2" / "tile" / "0" / "000"
    data = bytearray(tile.read_bytes())
    data[100] ^= 1
    tile.write_bytes(bytes(data))
    rep = verify_export(tmp_path / "v2", key)
    assert any("tile/0/000" in p for p in rep.problems)
    other = Signer("custodes.test/ledger", bytes(32))
    forged = Note.parse(first)
    forged.signatures = []
    forged.add(other.sign(forged.text.encode()))
    rep = verify_export(tmp_path / "v1", key, previous=forged.render())
    assert not rep.ok
    bodies = tmp_path / "v1" / "bodies.jsonl"
    bodies.write_text(bodies.read_text().replace("officer1", "officer9", 1))
    rep = verify_export(tmp_path / "v1", key)
    assert any("entry 0: its body does not match" in p for p in rep.problems)


def test_receipts(signed_ws: Workspace) -> None:
    key = checkpoints.verifier(signed_ws)
    receipt, body = publish.prove(Direct(signed_ws), 17)
    rep = verify_receipt(receipt, key, body=body)
    assert rep.ok, rep.problems
    assert not verify_receipt(receipt.replace("index 17", "index 18"), key).ok
    assert not verify_receipt(receipt.replace("\n65\n", "\n66\n"), key).ok  # signed size
    assert not verify_receipt(receipt, key, body=body | {"body": body["body"] + " "}).ok
    stranger = Signer("custodes.test/ledger", bytes(32)).verifier
    assert not verify_receipt(receipt, stranger).ok
    with pytest.raises(CustodesError):
        publish.prove(Direct(signed_ws), 10_000)


# --- witnesses --------------------------------------------------------------------------------


def test_witness_conversation_vector(tmp_path: Path) -> None:
    vec = json.loads((EXTRACTED / "tlog-witness-add-checkpoint.json").read_text())
    w = Witness(
        tmp_path / "w.db",
        Signer("witness.test", bytes(32), ALG_COSIGNATURE_V1),
        [Verifier.parse(vec["log_vkey"])],
    )
    for step in vec["steps"]:
        answer = w.add_checkpoint(step["body"].encode())
        want = int(str(step["status"])[:3])
        assert answer.status == want, (step["note"], answer.body)
        if "response_body" in step:
            assert answer.body == step["response_body"]
            assert answer.content_type == "text/x.tlog.size"
        if want == 200:
            cp_text = step["body"].split("\n\n", 1)[1]
            note = Note.parse(cp_text)
            note.add(answer.body)
            assert note.verified_by([w.signer.verifier])


def test_witness_over_http_and_policy(signed_ws: Workspace, tmp_path: Path) -> None:
    wkey = Signer("oig.witness.test", bytes(range(32)), ALG_COSIGNATURE_V1)
    w2key = Signer("court.witness.test", bytes(range(1, 33)), ALG_COSIGNATURE_V1)
    log_key = checkpoints.verifier(signed_ws)
    servers = []
    for k, name in ((wkey, "a"), (w2key, "b")):
        srv = make_server(Witness(tmp_path / f"{name}.db", k, [log_key]), "127.0.0.1", 0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    try:
        url = f"http://127.0.0.1:{servers[0].server_port}"
        assert checkpoints.cosign(Direct(signed_ws), url, wkey.verifier)["size"] == 65
        record(signed_ws, events(10, 65))
        assert (
            checkpoints.cosign(Direct(signed_ws), url, wkey.verifier)["size"] == 75
        )  # old 65 + proof
        policy_text = (
            f"log {log_key.vkey}\nwitness oig {wkey.verifier.vkey}\n"
            f"witness court {w2key.verifier.vkey}\ngroup oversight 2 oig court\n"
            "quorum oversight\n"
        )
        publish.export(Direct(signed_ws), tmp_path / "exp")
        rep = verify_export(tmp_path / "exp", log_key, policy=Policy.parse(policy_text))
        assert not rep.ok and any("quorum 'oversight' is not met" in p for p in rep.problems)
        checkpoints.cosign(
            Direct(signed_ws), f"http://127.0.0.1:{servers[1].server_port}", w2key.verifier
        )
        publish.export(Direct(signed_ws), tmp_path / "exp")
        rep = verify_export(tmp_path / "exp", log_key, policy=Policy.parse(policy_text))
        assert rep.ok, rep.problems
        # A witness refuses a log that was rolled back (fork): the size it cosigned is kept.
        w = Witness(tmp_path / "a.db", wkey, [log_key])
        cp_note = (tmp_path / "exp" / "checkpoint").read_text()
        body = (
            "old 0\n\n"
            + Note(Note.parse(cp_note).text, Note.parse(cp_note).signatures[:1]).render()
        )
        assert w.add_checkpoint(body.encode()).status == 409
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


@pytest.mark.parametrize(
    "text",
    [
        "quorum none\nquorum none\n",
        "witness a notakey\nquorum a\n",
        "group g 3 a b\nquorum g\n",
        "log x\n",
        "witness a b c d e\nquorum none\n",
    ],
)
def test_bad_policies_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        Policy.parse(text)


@pytest.mark.parametrize(
    ("header", "status"),
    [("-1", 400), ("abc", 400), ("1e9", 400), (str(10**9), 413), (None, 411)],
)
def test_witness_bounds_every_body(tmp_path: Path, header: str | None, status: int) -> None:
    """Content-Length -1 used to skip the 64 KiB limit and 'abc' raised a traceback."""
    import http.client

    from custodes.tlog.witness import Witness, keygen, make_server

    signer = keygen("witness.test", tmp_path / "w.key")
    server = make_server(Witness(tmp_path / "w.db", signer, []), "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.putrequest("POST", "/add-checkpoint")
        if header is not None:
            conn.putheader("Content-Length", header)
        conn.endheaders()
        conn.send(b"x" * 100)
        resp = conn.getresponse()
        assert resp.status == status
        assert b"Traceback" not in resp.read()
    finally:
        server.shutdown()
        server.server_close()
