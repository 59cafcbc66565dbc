"""`custodes serve` for real (uvicorn on a loopback port, a separate process), driven by the
README's curl examples exactly as written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import PASSWORD, Template, copy_template
from custodes.access import sessions
from custodes.services import requests as requests_svc
from custodes.services import rules, users
from servers import START_TIMEOUT, serve


def _readme_api_block() -> str:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    return readme.split("```sh api\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_readme_curl_examples_against_custodes_serve(
    tmp_path: Path, _master_template: Template
) -> None:
    ws, people = copy_template(_master_template, tmp_path)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests_svc.generate(ws, people.admin, "irc-6103-i-2", 40, 2, tmp_path / "req")
    rid = requests_svc.submit(ws, people["requester"], tmp_path / "req").request_id
    from custodes.services import ledger

    ledger.checkpoint(ws, people.admin)  # what the log serves is the latest signed checkpoint
    token = sessions.login(ws, "officer", PASSWORD)
    key = users.key(ws, people.admin, "requester")["key"]
    users.confirm(ws, people.second_admin, "requester")
    home, url = ws.home, str(ws.engine.url)
    ws.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    env["CUSTODES_STORE_URL"] = url
    server_log = tmp_path / "server.log"
    server, port = serve(lambda port: [*_serve_cmd(home), "--port", str(port)], env, server_log)
    base = f"http://127.0.0.1:{port}"
    try:
        script = "set -euo pipefail\n" + _readme_api_block()
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env
            | {
                "URL": base,
                "TOKEN": token,
                "KEY": key,
                "STAFF": "auditor",
                "PASSWORD": PASSWORD,
                "REQ": rid,
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert '"status":"ok"' in out and '"token"' in out and rid in out
        assert '"kind":"process"' in out and "custodes.test/ledger" in out
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = server_log.read_text()
    # the server's log names no person: paths carry opaque ids only
    assert "Bearer" not in log and PASSWORD not in log


def _serve(
    home: Path, store_url: str, log: Path, *options: str
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """`custodes serve` with its log in a file (a pipe nobody reads would fill up and stop
    the server mid-load)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    env["CUSTODES_STORE_URL"] = store_url
    server, port = serve(lambda port: [*_serve_cmd(home), "--port", str(port), *options], env, log)
    return server, f"http://127.0.0.1:{port}", env


def _serve_cmd(home: Path) -> list[str]:
    return [sys.executable, "-m", "custodes", "serve", "--home", str(home)]


class _Load:
    """Many concurrent clients, each on its own keep-alive connection, calling back to back
    until told to stop: an agency's status reads and duplicate submissions (writes), and an
    officer's reads. Every answer's status is kept with what a 503 said."""

    def __init__(self, base: str, rid: str, key: str, token: str, req: Path) -> None:
        import threading

        self.base, self.rid, self.key, self.token = base, rid, key, token
        self.files = {
            "envelope": (req / "envelope.json").read_bytes(),
            "items": (req / "items.csv").read_bytes(),
        }
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[str, int, str | None, str | None, str]] = []
        self.threads: list[threading.Thread] = []

    def _client(self, kind: str) -> None:
        import httpx

        auth = self.token if kind == "officer" else self.key
        with httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {auth}"}, timeout=60
        ) as c:
            while not self.stop.is_set():
                try:
                    if kind == "submit":
                        r = c.post("/v1/requests", files=self.files)
                    elif kind == "officer":
                        r = c.get(f"/v1/requests/{self.rid}/next")
                    else:
                        r = c.get(f"/v1/requests/{self.rid}")
                except httpx.TransportError:  # the server closed: not an answer
                    if self.stop.wait(0.05):
                        return
                    continue
                code = r.json().get("code") if r.status_code >= 400 else None
                with self.lock:
                    self.answers.append(
                        (
                            kind,
                            r.status_code,
                            r.headers.get("retry-after"),
                            code,
                            r.headers.get("content-type", ""),
                        )
                    )

    def start(self, readers: int = 24, officers: int = 4, submitters: int = 4) -> None:
        import threading

        self.stop.clear()
        kinds = ["status"] * readers + ["officer"] * officers + ["submit"] * submitters
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in kinds]
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)
            assert not t.is_alive(), "a client got no answer within 120 s"


def _every_kind_answered(answers: list[tuple[str, int, str | None, str | None, str]]) -> bool:
    """Each kind of client had a result, and someone was turned away (past the limits)."""
    done = list(answers)
    ok = {kind for kind, status, *_ in done if status == 200}
    return ok == {"status", "officer", "submit"} and any(s == 503 for _, s, *_ in done)


def _until(enough: Callable[[], bool], load: _Load) -> None:
    """Let the clients call until `enough` answers are in (a count, not a wall-clock time:
    the same amount of load however loaded the machine); fail loudly if they never are."""
    deadline = time.monotonic() + START_TIMEOUT
    while not enough():
        if time.monotonic() > deadline:
            load.join()
            seen = sorted({(kind, status) for kind, status, *_ in load.answers})
            pytest.fail(f"not enough in {START_TIMEOUT:.0f} s: {len(load.answers)} answers {seen}")
        time.sleep(0.02)


@pytest.mark.slow
def test_overload_answers_200_or_503_and_sigterm_ends_the_server(
    tmp_path: Path, _master_template: Template
) -> None:
    """Past its limits the server answers every call either with its result or with 503 and
    Retry-After (nothing done: the refused reads left no access-log row); SIGTERM under load
    ends it within its grace period; the ledger verifies afterwards."""
    import signal

    import sqlalchemy as sa

    ws, people = copy_template(_master_template, tmp_path)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests_svc.generate(ws, people.admin, "irc-6103-i-2", 40, 2, tmp_path / "req")
    rid = requests_svc.submit(ws, people["requester"], tmp_path / "req").request_id
    token = sessions.login(ws, "officer", PASSWORD)
    auditor = sessions.login(ws, "auditor", PASSWORD)
    key = users.key(ws, people.admin, "requester")["key"]
    users.confirm(ws, people.second_admin, "requester")
    home, url = ws.home, str(ws.engine.url)

    def status_reads_recorded() -> int:
        with ws.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM access_log WHERE user_name = 'requester' "
                        "AND action = 'requests.read'"
                    )
                ).scalar_one()
            )

    before = status_reads_recorded()
    grace = 5
    limits = ("--admit-reads", "1", "--admit-writes", "1", "--admit-wait-ms", "20")
    server_log = tmp_path / "server.log"
    server, base, env = _serve(home, url, server_log, *limits, "--grace", str(grace))
    load = _Load(base, rid, key, token, tmp_path / "req")
    try:
        # 32 clients back to back against one read and one write slot, for a few seconds
        load.start()
        _until(lambda: len(load.answers) >= 300 and _every_kind_answered(load.answers), load)
        load.join()
        first = list(load.answers)
        # again, and SIGTERM while the clients keep calling
        load.answers.clear()
        load.start()
        _until(lambda: len(load.answers) >= 100, load)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(grace + 30)
        finally:
            load.join()
        assert server.poll() is not None, "the server did not end after SIGTERM"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
    log = server_log.read_text()
    during_stop = list(load.answers)

    statuses = {s for _, s, *_ in first + during_stop}
    odd = [a for a in first + during_stop if a[1] not in (200, 503)]
    assert statuses <= {200, 503}, odd[:5]
    for kind, status, retry_after, code, media in first + during_stop:
        if status == 503:
            assert retry_after and int(retry_after) >= 1, kind
            assert media.startswith("application/problem+json"), kind
            assert code in ("overloaded", "shutting_down"), code
    assert any(s == 503 for _, s, *_ in first), "the load never went past the limits"
    assert {k for k, s, *_ in first if s == 200} == {"status", "officer", "submit"}
    # every status read answered 200 left its access-log row, and no refused one did
    answered = sum(1 for k, s, *_ in first + during_stop if k == "status" and s == 200)
    in_flight = 24  # at most one per reader may have been cut off by the stop, unanswered
    recorded = status_reads_recorded() - before
    assert answered <= recorded <= answered + in_flight
    # no internal error, no traceback of a foreseeable condition
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    ws.close()

    verified = subprocess.run(
        [sys.executable, "-m", "custodes", "ledger", "verify", "--home", str(home)],
        env=env | {"CUSTODES_SESSION": auditor},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_serve_on_a_unix_socket_in_a_folder_only_its_owner_opens(
    tmp_path: Path, _master_template: Template
) -> None:
    """Issue #22, item 3: on a shared host, any local user reaches a loopback port (and cookies
    are not kept apart by port). `serve --uds PATH` serves on a Unix socket whose folder must
    be the owner's alone; an open folder is refused, and on TCP loopback `serve` warns when
    other accounts can log in."""
    import httpx

    from custodes.cli.serve import other_login_users

    ws, _ = copy_template(_master_template, tmp_path / "t")
    home, url = ws.home, str(ws.engine.url)
    ws.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    env["CUSTODES_STORE_URL"] = url
    cmd = [sys.executable, "-m", "custodes", "serve", "--home", str(home), "--uds"]
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    refused = subprocess.run(
        [*cmd, str(shared / "custodes.sock")], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "(bad_path)" in refused.stderr
    assert "chmod 700" in refused.stderr and not (shared / "custodes.sock").exists()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    sock = private / "custodes.sock"
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen([*cmd, str(sock)], env=env, stdout=log, stderr=log)
    try:
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://custodes") as c:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    r = c.get("/v1/health")
                    break
                except httpx.TransportError:
                    assert server.poll() is None, (tmp_path / "serve.log").read_text()
                    assert time.monotonic() < deadline, "the server did not answer on its socket"
                    time.sleep(0.05)
            assert r.status_code == 200
            assert c.get("/v1/requests").status_code == 401  # the door is the same
    finally:
        server.terminate()
        server.wait(60)
    passwd = (
        "root:x:0:0:root:/root:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "olga:x:1000:1000::/home/olga:/bin/bash\n"
        "svc:x:998:998::/var/lib/svc:/bin/sh\n"
        "nobody:x:65534:65534::/nonexistent:/bin/sh\n"
        "ben:x:1001:1001::/home/ben:/usr/sbin/nologin\n"
    )
    assert other_login_users(passwd, me=1000) == ["root"]
    assert other_login_users(passwd, me=0) == ["olga"]


def test_an_internal_error_is_logged_by_type_and_place_only(tmp_path: Path, staff) -> None:  # type: ignore[no-untyped-def]
    """#23 finding 4: an unexpected failure in a served app (here a store missing a table,
    whose driver error quotes the SQL and its parameters) answers 500 with no detail, and
    the server's log names the exception's type and place: no traceback, no submitted value."""
    import json
    import sqlite3
    import urllib.error

    ws = staff.ws
    token = sessions.login(ws, "officer", PASSWORD)
    home = ws.home
    ws.close()
    with sqlite3.connect(home / "custodes.db") as db:
        db.execute("DROP TABLE requests")
    value = "req-5ec7e7c0ffee"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    server_log = tmp_path / "server.log"
    server, port = serve(lambda port: [*_serve_cmd(home), "--port", str(port)], env, server_log)
    base = f"http://127.0.0.1:{port}"
    try:
        req = urllib.request.Request(
            f"{base}/v1/requests/{value}", headers={"Authorization": f"Bearer {token}"}
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(req, timeout=10)
        assert answer.value.code == 500
        body = answer.value.read().decode()
        assert json.loads(body)["code"] == "internal" and value not in body
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = server_log.read_text()
    assert "OperationalError at " in out, out
    assert value not in out.replace(f"/v1/requests/{value}", ""), out  # only the access line
    assert "Traceback" not in out and "SELECT" not in out, out
