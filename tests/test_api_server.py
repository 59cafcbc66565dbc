"""`custodes serve`: the witness that cosigns the live log, and what the server refuses to
start with."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from custodes.api import create_app
from custodes.services import ledger as ledger_svc
from custodes.services import workspace as ws_svc
from servers import bound_socket, wait_started
from shared_api import Api, _problem, ledger_svc_vkey


def test_the_server_runs_a_witness_that_cosigns_the_live_log(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`custodes serve --witness-key` adds the C2SP tlog-witness endpoint: the log's own
    `ledger cosign` gets a cosignature from it over real HTTP, the cosigned checkpoint is
    served to everyone, and a rolled-back or unsigned submission is refused in the protocol's
    terms. A server without a witness answers 404."""
    import threading

    import uvicorn

    _problem(api.post("/v1/witness/add-checkpoint", content=b"old 0\n\n"), 404, "not_found")
    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    wkey = ledger_svc.witness_keygen("witness.oig.example", tmp_path / "witness.key")
    monkeypatch.setenv("CUSTODES_WITNESS_KEY", str(tmp_path / "witness.key"))
    monkeypatch.setenv("CUSTODES_WITNESS_LOGS", ledger_svc_vkey(api))
    monkeypatch.setenv("CUSTODES_WITNESS_STATE", str(tmp_path / "witness.db"))
    sock = bound_socket()  # bound here and handed over: no other process can take the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ws.home, str(ws.engine.url)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_started(server, thread)
        assert (tmp_path / "witness.db").stat().st_mode & 0o077 == 0
        prefix = f"http://127.0.0.1:{port}/v1/witness"  # the submission prefix
        admin = ws_svc.caller(ws, api.tokens["admin"])
        done = ledger_svc.cosign(ws, admin, prefix, wkey)
        url = prefix + "/add-checkpoint"
        assert done["witness"] == "witness.oig.example" and done["size"] > 0
        note = api.get("/v1/ledger/checkpoint").text
        assert "— witness.oig.example " in note
        # the protocol's refusals: a stale old size (409 with the known size), junk (400)
        import httpx

        cp_note = "\n".join(line for line in note.splitlines() if "witness" not in line) + "\n"
        stale = httpx.post(url, content=f"old 0\n\n{cp_note}".encode())
        assert stale.status_code == 409 and stale.text.strip() == str(done["size"])
        assert stale.headers["content-type"].startswith("text/x.tlog.size")
        assert httpx.post(url, content=b"hello").status_code == 400
        assert httpx.post(url, content=b"x" * (70 * 1024)).status_code == 413
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_serve_refuses_a_public_address_without_tls(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from custodes.cli import app

    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "TLS" in r.output
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_serve_refuses_a_witness_without_a_usable_key_or_log(api: Api, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from custodes.cli import app

    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    home, run = str(ws.home), CliRunner(env={"CUSTODES_STORE_URL": str(ws.engine.url)})
    r = run.invoke(app, ["serve", "--home", home, "--witness-key", str(tmp_path / "no")])
    assert r.exit_code == 2 and "bad_key" in r.output
    ledger_svc.witness_keygen("w.example", tmp_path / "w.key")
    r = run.invoke(app, ["serve", "--home", home, "--witness-key", str(tmp_path / "w.key")])
    assert r.exit_code == 2 and "missing_key" in r.output
    args = ["--witness-key", str(tmp_path / "w.key"), "--witness-log", "not-a-key"]
    r = run.invoke(app, ["serve", "--home", home, *args])
    assert r.exit_code == 2 and "bad_key" in r.output
