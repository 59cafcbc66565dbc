"""`custodes serve` for real (uvicorn on a loopback port, a separate process), driven by the
README's curl examples exactly as written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Template, copy_template
from custodes.access import sessions
from custodes.services import requests as requests_svc
from custodes.services import rules, users
from custodes.synthetic.staff import PASSWORD


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    env["CUSTODES_STORE_URL"] = url
    cmd = [sys.executable, "-m", "custodes", "serve", "--port", str(port), "--home", str(home)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/v1/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
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
        log = server.communicate(timeout=30)[0].decode()
    # the server's log names no person: paths carry opaque ids only
    assert "Bearer" not in log and PASSWORD not in log
