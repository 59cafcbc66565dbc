"""A witness by default (#23 finding 3) and a restored workspace that refuses to sign until an
administrator confirms (#24 item 4). The witness runs as its own process with its own folder
outside the workspace, as `make demo` runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from conftest import PASSWORD, one_for_review
from custodes.access import sessions
from custodes.cli import app
from custodes.errors import CustodesError
from custodes.ledger import audit, checkpoints, cosigning, keys, log
from custodes.ledger.event_types import Declared, parse
from custodes.ledger.events import Event
from custodes.services import decisions, matching, requests, rules
from custodes.services import ledger as ledger_svc
from custodes.store.tables import (
    ledger_checkpoints,
    ledger_cosignatures,
    ledger_events,
    ledger_nodes,
    ledger_state,
)
from custodes.synthetic.staff import Staff
from custodes.tlog import witness as wit
from custodes.tlog.note import Verifier
from custodes.workspace import Workspace, open_workspace

runner = CliRunner()


@dataclass
class Running:
    url: str
    vkey: str
    folder: Path

    @property
    def key(self) -> Verifier:
        return Verifier.parse(self.vkey)


def _stop(folder: Path) -> None:
    found = wit.running(folder)
    if found:
        os.kill(found[0], signal.SIGTERM)
        os.waitpid(found[0], 0)


@pytest.fixture
def witnessed(workspace: Workspace, staff: Staff, tmp_path: Path) -> Iterator[Running]:
    """The workspace's witness: started by the demo's one call, in its own process and folder."""
    folder = tmp_path / "witness"  # beside the workspace, not in it
    info = ledger_svc.run_witness(workspace, staff.admin, folder, wit.free_port())
    yield Running(info["url"], info["vkey"], folder)
    _stop(folder)


def _cli(home: Path, staff: Staff, *args: str, who: str = "auditor") -> tuple[int, str]:
    env = {
        "CUSTODES_SESSION": sessions.login(staff.ws, who, PASSWORD),
        "CUSTODES_STORE_URL": staff.ws.store_url,
    }
    r = runner.invoke(app, [*args, "--home", str(home)], env=env)
    return r.exit_code, " ".join(r.output.split())


def test_every_checkpoint_is_cosigned_by_the_witness(
    workspace: Workspace, staff: Staff, witnessed: Running
) -> None:
    assert witnessed.folder.stat().st_mode & 0o077 == 0
    assert not witnessed.folder.is_relative_to(workspace.home)
    for n in range(3):
        staff.login("officer")  # a sign-in: events in the ledger
        note = ledger_svc.checkpoint(workspace, staff.admin)["note"]
        assert f"\u2014 {witnessed.key.name} " in note, n
    with workspace.engine.connect() as conn:
        sizes = conn.execute(sa.select(ledger_checkpoints.c.size)).scalars().all()
        cosigned = conn.execute(sa.select(ledger_cosignatures.c.size)).scalars().all()
    assert sorted(sizes) == sorted(cosigned)  # no checkpoint without its cosignature
    code, out = _cli(workspace.home, staff, "ledger", "verify", "--witness", witnessed.vkey)
    assert code == 0 and "Verified." in out, out
    assert f"the log extends the checkpoint of size {max(sizes)} the witness" in out
    code, out = _cli(
        workspace.home, staff, "ledger", "verify", "--witness", witnessed.vkey,
        "--witness-url", witnessed.url,
    )  # fmt: skip
    assert code == 0 and f"the witness {witnessed.key.name} was asked" in out, out
    code, out = _cli(workspace.home, staff, "status", who="officer")
    assert "No witness" not in out and "key is a file" in out


def test_a_witness_that_cannot_be_reached_publishes_nothing(
    workspace: Workspace, staff: Staff, witnessed: Running
) -> None:
    before = ledger_svc.checkpoint(workspace, staff.admin)["size"]
    _stop(witnessed.folder)
    staff.login("officer")
    with pytest.raises(CustodesError) as err:
        ledger_svc.checkpoint(workspace, staff.admin)
    assert err.value.code == "witness_unreachable"
    with workspace.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.max(ledger_checkpoints.c.size))).scalar() == before
    assert keys.held(workspace) is None  # unreachable is not a refusal: nothing is held


class _Replayed(Event):
    """An event re-appended with its old body (and, by `log.append`, a new salt)."""

    def __init__(self, row: Any) -> None:
        # the columns beside the body as they were (verify compares them with the body)
        what = parse(json.loads(row.body))
        assert isinstance(what, Declared)
        super().__init__(what, row.actor, row.request_id, row.record_id, at=row.at)
        self._raw = row.body.encode()

    def body(self, time_text: str | None = None) -> bytes:
        return self._raw


def rewrite(ws: Workspace, drop: set[int]) -> None:
    """The attack of #23 finding 3, by someone holding the store and the workspace's key file:
    drop events, re-append the rest with new salts, re-sign with keys/ledger.key, and rewrite
    keys/checkpoints (the cosignatures are dropped: they cannot be re-made)."""
    with ws.engine.begin() as conn:
        rows = conn.execute(sa.select(ledger_events).order_by(ledger_events.c.idx)).all()
        for table in (ledger_cosignatures, ledger_checkpoints, ledger_nodes, ledger_events):
            conn.execute(sa.delete(table))
        conn.execute(sa.update(ledger_state).values(size=0, frontier=b"", checkpoint_size=None))
        log.append(conn, [_Replayed(r) for r in rows if r.idx not in drop])
        cp, note = log.sign_checkpoint(conn, keys.load_signer(ws), keys.origin(ws) or "")
    checkpoints.external_log(ws).write_text(
        json.dumps({"size": cp.size, "note": note.render()}) + "\n"
    )


def test_a_rewritten_log_is_caught_by_the_witness(
    workspace: Workspace, staff: Staff, witnessed: Running
) -> None:
    for _ in range(3):
        staff.login("officer")
        ledger_svc.checkpoint(workspace, staff.admin)
    rewrite(workspace, {3, 4})
    # Without the witness the tree and the signatures of the rewrite verify (the old limit);
    # only the rows' anchors give this naive rewrite away (their HMAC names each event's
    # index), and one who also holds keys/secrets.key re-derives them: the witness is what
    # catches a rewrite whatever else its author holds.
    problems = audit.audit_store(workspace).problems
    assert problems and all("anchoring event" in p for p in problems), problems

    with pytest.raises(CustodesError) as err:  # the witness refuses to cosign the rewritten log
        ledger_svc.checkpoint(workspace, staff.admin)
    assert err.value.code == "witness_refused" and "not published" in err.value.message
    with pytest.raises(CustodesError) as err:  # and signing stays held
        ledger_svc.checkpoint(workspace, staff.admin)
    assert err.value.code == "signing_held"

    code, out = _cli(workspace.home, staff, "ledger", "verify", "--witness", witnessed.vkey)
    assert code == 1 and "Verification failed." in out
    assert "does not extend the checkpoint of size" in out and witnessed.key.name in out
    # Without the witness reachable, the cosigned checkpoints stored outside the store are
    # gone too (rewritten): verify still fails, for want of anything the witness cosigned.
    _stop(witnessed.folder)
    code, out = _cli(workspace.home, staff, "ledger", "verify", "--witness", witnessed.vkey)
    assert code == 1 and "no checkpoint cosigned by the witness" in out
    # An administrator cannot confirm a rewritten log.
    wit.spawn(
        witnessed.folder,
        "witness.local",
        [checkpoints.verifier(workspace).vkey],
        "127.0.0.1",
        int(witnessed.url.rsplit(":", 1)[1]),
    )
    with pytest.raises(CustodesError) as err:
        ledger_svc.confirm_restore(workspace, staff.admin)
    assert err.value.code == "restore_inconsistent" and "forked or rewritten" in err.value.message


def _approved(ws: Workspace, people: Staff, folder: Path) -> str:
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests.generate(ws, people.admin, "irc-6103-i-2", 40, 3, folder)
    one_for_review(folder)
    rid = requests.submit(ws, people["requester"], folder).request_id
    matching.train(ws, people["officer"], rid)
    decisions.process(ws, people["officer"], rid)
    decisions.review_resolve(ws, people["officer"], rid, "WITHHOLD", "unsure")
    decisions.prepare(ws, people["officer"], rid)
    decisions.approve(ws, people["approver"], rid)
    return rid


def test_a_restored_workspace_refuses_to_sign_until_an_administrator_confirms(
    master: tuple[Workspace, Staff], tmp_path: Path
) -> None:
    ws, people = master
    home, db = ws.home, tmp_path / "master-ws.db"
    folder = tmp_path / "witness"
    ledger_svc.run_witness(ws, people.admin, folder, wit.free_port())
    try:
        rid = _approved(ws, people, tmp_path / "req")
        ws.close()
        shutil.copytree(home, tmp_path / "backup")  # the backup: the folder and the store
        shutil.copy(db, tmp_path / "backup.db")

        # Work goes on: the release is cosigned by the witness.
        decisions.release(ws, people["officer"], rid, tmp_path / "out")
        ws.close()
        shutil.copy(db, tmp_path / "later.db")  # a later backup of the store
        later_release = home / "requests" / rid / "release"  # and of the files it recorded
        shutil.copytree(later_release, tmp_path / "later-release")

        shutil.rmtree(home)  # the disk is lost; the backup is restored
        shutil.copytree(tmp_path / "backup", home)
        shutil.copy(tmp_path / "backup.db", db)
        ws = open_workspace(home, f"sqlite:///{db}")
        people.ws = ws
        with pytest.raises(CustodesError) as err:
            ledger_svc.checkpoint(ws, people.admin)
        assert err.value.code == "witness_refused"
        assert "restored from an older backup" in err.value.message
        with pytest.raises(CustodesError) as err:
            ledger_svc.checkpoint(ws, people.admin)
        assert err.value.code == "signing_held"
        with pytest.raises(CustodesError) as err:  # releasing it twice is refused up front
            decisions.release(ws, people["officer"], rid, tmp_path / "out2")
        assert err.value.code == "signing_held"
        code, out = _cli(home, people, "status", who="officer")
        assert "Signing is held" in out and "confirm-restore" in out
        # The restored store lacks what the witness cosigned: no confirmation can lift the hold.
        code, out = _cli(home, people, "ledger", "confirm-restore", who="admin")
        assert code != 0 and "restore_inconsistent" in out and "events were lost" in out
        code, out = _cli(home, people, "ledger", "confirm-restore", who="officer")
        assert code != 0 and "forbidden" in out  # administrators only

        ws.close()
        shutil.copy(tmp_path / "later.db", db)  # the store restored from its later backup,
        shutil.copytree(tmp_path / "later-release", later_release)  # with the files it recorded
        ws = open_workspace(home, f"sqlite:///{db}")
        people.ws = ws
        with pytest.raises(CustodesError) as err:  # still held until confirmed
            ledger_svc.checkpoint(ws, people.admin)
        assert err.value.code == "signing_held"
        code, out = _cli(home, people, "ledger", "confirm-restore", who="admin")
        assert code == 0 and "signing resumes" in out, out
        note = ledger_svc.checkpoint(ws, people.admin)["note"]
        assert "\u2014 witness.local " in note
        vkey = wit.Signer.decode((folder / "witness.key").read_text()).verifier.vkey
        code, out = _cli(home, people, "ledger", "verify", "--witness", vkey)
        assert code == 0 and "Verified." in out, out
    finally:
        _stop(folder)


def test_witness_configuration_refusals(workspace: Workspace, staff: Staff, tmp_path: Path) -> None:
    with pytest.raises(CustodesError) as err:
        ledger_svc.confirm_restore(workspace, staff.admin)
    assert err.value.code == "no_witness"
    with pytest.raises(CustodesError) as err:
        ledger_svc.run_witness(workspace, staff.admin, workspace.home / "witness")
    assert err.value.code == "bad_path"
    key = wit.keygen("w.test", tmp_path / "w.key").verifier
    with pytest.raises(CustodesError) as err:
        ledger_svc.use_witness(workspace, staff.admin, "file:///etc/passwd", key)
    assert err.value.code == "bad_argument"
    code, out = _cli(
        workspace.home,
        staff,
        "ledger",
        "verify",
        str(tmp_path),
        "--key",
        checkpoints.verifier(workspace).vkey,
        "--witness",
        key.vkey,
    )
    assert code == 2 and "bad_argument" in out
    r = runner.invoke(app, ["init", "--home", str(tmp_path / "x"), "--witness", "http://w"])
    assert r.exit_code == 2 and "missing_key" in r.output
    r = runner.invoke(
        app,
        ["init", "--home", str(tmp_path / "y"), "--witness", "http://w", "--witness-key", key.vkey],
    )
    assert r.exit_code == 0 and "needs the cosignature of the witness w.test" in r.output

    # Held, with a witness that does not say what it cosigned: the hold stays.
    class NoCheckpoint(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NoCheckpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with workspace.engine.begin() as conn:
            cosigning.set_witness(conn, f"http://127.0.0.1:{server.server_port}", key, "admin")
        keys.hold(workspace, "A test hold.")
        with pytest.raises(CustodesError) as err:
            ledger_svc.confirm_restore(workspace, staff.admin)
        assert err.value.code == "witness_unreachable" and keys.held(workspace)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.postgres
def test_two_hosts_on_one_postgresql_store_share_the_witness_without_a_hold(
    tmp_path: Path, pg_url: str
) -> None:
    """A second host (its own folder, the same store and key) signs after the first: the
    store remembers what the witness cosigned for both, so neither is taken for a restore."""
    from conftest import make_workspace
    from custodes.synthetic import staff as staff_mod

    first = make_workspace(tmp_path / "host1", pg_url)
    people = staff_mod.one_per_role(first)
    folder = tmp_path / "witness"
    ledger_svc.run_witness(first, people.admin, folder, wit.free_port())
    try:
        shutil.copytree(
            first.home, tmp_path / "host2", ignore=shutil.ignore_patterns("checkpoints")
        )
        second = open_workspace(tmp_path / "host2", pg_url)
        for ws in (first, second, first, second):
            people.login("officer")
            assert "\u2014 witness.local " in ledger_svc.checkpoint(ws, people.admin)["note"]
            assert keys.held(ws) is None
        vkey = wit.Signer.decode((folder / "witness.key").read_text()).verifier
        assert audit.audit_store(second, witness=vkey).ok
        second.close()
    finally:
        _stop(folder)
        first.close()
