"""A small C2SP tlog-witness (https://c2sp.org/tlog-witness@v1.0.0) an oversight body can run.

It cosigns a log's checkpoint only when the log proves the new tree extends the last one it
cosigned. State (origin -> size, root, the cosigned note) lives in SQLite and is checked and
advanced in one IMMEDIATE transaction, so concurrent submissions cannot roll a log back.

The HTTP layer is the standard library's ThreadingHTTPServer: one POST endpoint, no framework
needed, so an oversight body can run the witness with nothing but custodes installed. Beside
the standard endpoint it answers ``GET <prefix>/checkpoint?origin=ORIGIN`` with the last
checkpoint it cosigned for that log (the log's signature and its own cosignature): what an
auditor's `ledger verify --witness` and an administrator's `ledger confirm-restore` compare the
log with. (tlog-witness defines no read endpoint; this one serves only what the witness signed.)

`spawn` starts a witness as a separate process with its own folder (its key, its state, its
log), as the demo and the tests run one; in production it is its own service, run by its own
user (docs/ledger.md).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from custodes.errors import InputError
from custodes.tlog.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    unb64,
)
from custodes.tlog.tree import EMPTY_ROOT, ProofError, verify_consistency

MAX_BODY = 64 * 1024
DEFAULT_PORT = 7380


@dataclass
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def keygen(name: str, key_file: Path) -> Signer:
    """Create a witness key (Ed25519 cosignature/v1) in a new file readable only by its owner."""
    try:
        signer = Signer.generate(name, ALG_COSIGNATURE_V1)
    except NoteError as exc:
        raise InputError(f"Not a usable witness name: {exc}.", code="bad_argument") from None
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(signer.encode() + "\n")
    return signer


class Witness:
    def __init__(self, state_path: Path, signer: Signer, logs: list[Verifier]) -> None:
        self.state_path = state_path
        self.signer = signer
        self.logs: dict[str, list[Verifier]] = {}
        for v in logs:
            self.logs.setdefault(v.name, []).append(v)
        if not state_path.exists():  # owner-only whatever the umask
            os.close(os.open(state_path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS witness_state (origin TEXT PRIMARY KEY, "
                "size INTEGER NOT NULL, root BLOB NOT NULL)"
            )
            columns = {r[1] for r in db.execute("PRAGMA table_info(witness_state)")}
            if "note" not in columns:  # a state file from before the cosigned note was kept
                db.execute("ALTER TABLE witness_state ADD COLUMN note TEXT")

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.state_path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return Answer(400, "body is not UTF-8\n")
        head, sep, note_text = text.partition("\n\n")
        lines = head.split("\n")
        size = lines[0][4:]
        # isdigit() alone takes "²" (and int() then fails): a size is ASCII digits
        if not sep or not lines[0].startswith("old ") or not (size.isascii() and size.isdigit()):
            return Answer(400, "body must start with 'old <size>' and a blank line\n")
        old = int(size)
        try:
            proof = [unb64(x, "proof line") for x in lines[1:]]
            if len(proof) > 63:
                raise NoteError("too many proof lines")
            note = Note.parse(note_text)
            cp = Checkpoint.parse_body(note.text)
        except NoteError as exc:
            return Answer(400, f"{exc}\n")
        keys = self.logs.get(cp.origin)
        if keys is None:
            return Answer(404, "unknown log origin\n")
        try:
            if not note.verified_by(keys):
                return Answer(403, "no signature by a key trusted for this log\n")
        except NoteError:
            return Answer(403, "the log's signature does not verify\n")
        if old > cp.size:
            return Answer(400, "old size is larger than the checkpoint's size\n")
        if cp.size == 0 and cp.root != EMPTY_ROOT:
            return Answer(422, "a size-0 checkpoint must carry the empty root\n")
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT size, root FROM witness_state WHERE origin = ?", (cp.origin,)
            ).fetchone()
            known_size, known_root = row if row else (0, EMPTY_ROOT)
            if old != known_size:
                db.execute("ROLLBACK")
                return Answer(409, f"{known_size}\n", "text/x.tlog.size")
            try:
                if old == 0 and proof:
                    raise ProofError("a proof from size 0 must be empty")
                verify_consistency(old, cp.size, known_root, cp.root, proof, allow_empty_old=True)
            except ProofError as exc:
                db.execute("ROLLBACK")
                return Answer(422, f"consistency proof: {exc}\n")
            line = self.signer.sign(note.text.encode(), int(time.time()))
            log_sigs = [s for s in note.signatures if any(k.id == s.key_id for k in keys)]
            cosigned = Note(note.text, log_sigs)
            cosigned.add(line)
            db.execute(
                "INSERT INTO witness_state (origin, size, root, note) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(origin) DO UPDATE SET size = excluded.size, "
                "root = excluded.root, note = excluded.note",
                (cp.origin, cp.size, cp.root, cosigned.render()),
            )
            db.execute("COMMIT")
        finally:
            db.close()
        return Answer(200, line)

    def latest(self, origin: str) -> Answer:
        """The last checkpoint this witness cosigned for `origin`, as a signed note."""
        db = self._db()
        try:
            row = db.execute(
                "SELECT note FROM witness_state WHERE origin = ?", (origin,)
            ).fetchone()
        finally:
            db.close()
        if row is None or row[0] is None:
            return Answer(404, "no checkpoint cosigned for that origin\n")
        return Answer(200, row[0], "text/plain; charset=utf-8")


def make_server(witness: Witness, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "custodes-witness"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            origin = parse_qs(parts.query).get("origin", [""])[0]
            if parts.path.rstrip("/").split("/")[-1] != "checkpoint" or not origin:
                self._send(Answer(404, "not found\n"))
                return
            self._send(witness.latest(origin))

        def do_POST(self) -> None:
            if self.path.rstrip("/").split("/")[-1] != "add-checkpoint":
                self._send(Answer(404, "not found\n"))
                return
            declared = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding") or declared is None:
                self._send(Answer(411, "a Content-Length is required\n"), close=True)
                return
            if not (
                declared.isascii() and declared.strip().isdigit()
            ):  # "-1", "abc", "1e9": refused, never read
                self._send(Answer(400, "bad Content-Length\n"), close=True)
                return
            length = int(declared)
            if length > MAX_BODY:
                self._send(Answer(413, "body too large\n"), close=True)
                return
            self._send(witness.add_checkpoint(self.rfile.read(length)))

        def _send(self, a: Answer, *, close: bool = False) -> None:
            data = a.body.encode()
            self.send_response(a.status)
            self.send_header("Content-Type", a.content_type)
            self.send_header("Content-Length", str(len(data)))
            if close:  # the unread body must not be taken for the next request
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: object) -> None:  # quiet; no bodies logged
            pass

    return ThreadingHTTPServer((host, port), Handler)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def running(folder: Path) -> tuple[int, str] | None:
    """The pid and URL of the witness `spawn` started in `folder`, if it still answers."""
    try:
        pid_s, url = (folder / "witness.pid").read_text().split()
        os.kill(int(pid_s), 0)
        host, port = urlsplit(url).hostname, urlsplit(url).port
        with socket.create_connection((host or "127.0.0.1", port or 80), timeout=2):
            return int(pid_s), url
    except (OSError, ValueError):
        return None


def spawn(folder: Path, name: str, logs: list[str], host: str, port: int) -> tuple[int, str, str]:
    """A witness in its own process and folder (key, state, log, pid): reused while it runs,
    else started (`custodes witness serve`) and awaited. Returns (pid, url, its verifier key)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file = folder / "witness.key"
    signer = Signer.decode(key_file.read_text()) if key_file.exists() else keygen(name, key_file)
    found = running(folder)
    if found:
        return found[0], found[1], signer.verifier.vkey
    url = f"http://{host}:{port}"
    argv = [sys.executable, "-m", "custodes", "witness", "serve", "--key", str(key_file)]
    for vkey in logs:
        argv += ["--log", vkey]
    argv += ["--state", str(folder / "witness.db"), "--host", host, "--port", str(port)]
    fd = os.open(folder / "witness.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    proc = subprocess.Popen(  # our own interpreter and command, no shell
        argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True
    )
    os.close(fd)
    fd = os.open(folder / "witness.pid", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{proc.pid} {url}\n")
    for _ in range(300):  # bounded: 30 s at most for the interpreter to start and listen
        if proc.poll() is not None:
            raise InputError(
                f"The witness did not start (see {folder / 'witness.log'}).",
                code="witness_unreachable",
            )
        if running(folder):
            return proc.pid, url, signer.verifier.vkey
        time.sleep(0.1)
    proc.terminate()
    raise InputError("The witness did not start listening in time.", code="witness_unreachable")
