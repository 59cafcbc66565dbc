"""No call is answered before what it recorded is durable: `custodes serve` killed (SIGKILL, by
a failpoint) between a group commit's writes and its commit answers nothing for the calls in
that group, and every call it did answer has its access-log row and ledger leaf."""

from __future__ import annotations

import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from conftest import Template, copy_template
from custodes.services import users
from servers import serve


def test_a_kill_before_the_commit_answers_no_call_whose_leaf_is_not_durable(
    tmp_path: Path, _master_template: Template
) -> None:
    ws, people = copy_template(_master_template, tmp_path)
    key = users.key(ws, people.admin, "requester")["key"]
    users.confirm(ws, people.second_admin, "requester")

    def recorded() -> tuple[int, int]:
        with ws.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT count(*) FROM access_log WHERE user_name = 'requester'")
            ).scalar_one()
            leaves = conn.execute(
                sa.text("SELECT count(*) FROM ledger_events WHERE type = 'access'")
            ).scalar_one()
        return int(rows), int(leaves)

    rows_before, leaves_before = recorded()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    env |= {
        "CUSTODES_STORE_URL": str(ws.engine.url),
        "CUSTODES_FAILPOINT": "group_commit.before_commit:4",
    }
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "custodes", "serve", "--home", str(ws.home)]
    server, port = serve(lambda port: [*cmd, "--port", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        answered = 0
        for _ in range(10):  # one call after another: each is its own group
            call = urllib.request.Request(
                f"{base}/v1/requests", headers={"Authorization": f"Bearer {key}"}
            )
            try:
                with urllib.request.urlopen(call, timeout=60) as r:
                    assert r.status == 200
                answered += 1
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError):
                break
        server.wait(60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
    assert server.returncode == -9  # killed at the failpoint, not ended otherwise
    assert answered == 3  # the fourth call's group never committed: it got no answer
    rows, leaves = recorded()
    assert rows - rows_before == answered  # every answered call's row is there, no other
    assert leaves - leaves_before == answered  # and its leaf
