"""Hostile load from a valid caller (#26 item 3): bodies limited as they stream, before parsing
and before authentication (the console's file fields too); Parquet and inline JSON limited by
what they decode to, not only their bytes; a quota of jobs per caller and staff work ahead of
agencies'; and a coded error, never an internal one, for input nested or sized to break a
parser (envelope JSON, CSV header, agreement and rule-set YAML), through the API and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import PASSWORD, Template, copy_template
from custodes.access import sessions
from custodes.app import create_app
from custodes.cli import app as cli
from custodes.errors import InputError, RateLimited
from custodes.requests import intake
from custodes.requests.format import ITEM_COLUMNS
from custodes.rules.provisions import REFERENCE
from custodes.services import jobs as jobs_svc
from custodes.services import requests as requests_svc
from custodes.services import rules, users
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace
from servers import serve

DEEP = 200_000  # levels of nesting: far past any recursive parser's limit
runner = CliRunner()


# --- a server of its own: bodies are limited before they are read --------------------------


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, _master_template: Template
) -> Iterator[tuple[int, Path, str]]:
    """`custodes serve` with small body limits and its own temporary folder (TMPDIR): the
    port, that folder and an agency's API key."""
    root = tmp_path_factory.mktemp("served")
    ws, people = copy_template(_master_template, root)
    key = users.key(ws, people.admin, "requester")["key"]
    users.confirm(ws, people.second_admin, "requester")
    home, url = ws.home, str(ws.engine.url)
    ws.close()
    spool = root / "tmp"
    spool.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
    env |= {
        "CUSTODES_STORE_URL": url,
        "CUSTODES_API_MAX_BODY": str(64 << 10),
        "CUSTODES_API_MAX_INLINE": str(256 << 10),
        "CUSTODES_INSECURE_COOKIES": "1",
        "TMPDIR": str(spool),
    }
    cmd = [sys.executable, "-m", "custodes", "serve", "--home", str(home)]
    server, port = serve(lambda port: [*cmd, "--port", str(port)], env, root / "serve.log")
    try:
        yield port, spool, key
    finally:
        server.terminate()
        server.wait(timeout=30)


def _exchange(port: int, head: bytes, body_parts: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send a request's head and these parts of its body (perhaps not all of it), then read
    the answer: the server must answer without the rest of the body (a server that waited for
    it would time out here, failing the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head)
        for part in body_parts:
            s.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head_end = data.index(b"\r\n\r\n")
        lines = data[:head_end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        body = data[head_end + 4 :]
        want = int(headers.get("content-length", "0"))
        while len(body) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _problem(status: int, headers: dict[str, str], body: bytes, code: str) -> None:
    assert headers["content-type"].startswith("application/problem+json"), (status, body)
    doc = json.loads(body)
    assert (status, doc["code"], doc["status"]) == (413, code, 413), doc


def test_a_chunked_body_over_its_limit_is_refused_while_it_streams(
    served: tuple[int, Path, str],
) -> None:
    """No Content-Length: counted chunk by chunk and refused once past the limit (64 KiB for
    a JSON call here), the rest never sent; the same for an inline submission (256 KiB)."""
    port, _, key = served
    for path, size in (("/v1/sessions", 64 << 10), ("/v1/requests", 256 << 10)):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        parts = [_chunk(b" " * (16 << 10)) for _ in range(size // (16 << 10) + 1)]
        status, headers, body = _exchange(port, head, parts)
        code = "body_too_large" if path == "/v1/sessions" else "file_too_large"
        _problem(status, headers, body, code)
        assert headers["connection"] == "close"


def test_a_body_declared_over_its_limit_is_refused_unread(served: tuple[int, Path, str]) -> None:
    port = served[0]
    head = (
        "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {1 << 30}\r\n\r\n"
    ).encode()
    _problem(*_exchange(port, head, []), "body_too_large")
    # an inline submission has its own limit, below a file upload's
    head = head.replace(b"/v1/sessions", b"/v1/requests")
    _problem(*_exchange(port, head, []), "file_too_large")


@pytest.mark.parametrize("path", ["/ledger/check-export", "/rules", "/registries/agreements"])
def test_a_console_upload_without_a_live_session_is_refused_before_its_body_is_read(
    served: tuple[int, Path, str], path: str
) -> None:
    """A 900 MB upload is declared (1 MiB for an agreement, whose limit that is); only its
    first 64 KiB are sent. Without a cookie, and with a cookie that is no live session, the
    console answers at once (the sign-in; the session-ended page), so nothing of the file is
    parsed or spooled to the temp folder."""
    port, spool, _ = served
    cookie = "custodes_session"  # its name with CUSTODES_INSECURE_COOKIES (plain HTTP)
    boundary = "b0undary"
    first = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; '
        'filename="x.zip"\r\nContent-Type: application/zip\r\n\r\n'
    ).encode() + b"\0" * (64 << 10)
    for extra, want in (("", 303), (f"Cookie: {cookie}=not-a-session\r\n", 401)):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{extra}"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {(1 << 20) if 'agreements' in path else 900 << 20}\r\n\r\n"
        ).encode()
        status, headers, _ = _exchange(port, head, [first])
        assert status == want, (path, extra, status)
        if want == 303:
            assert headers["location"] == "/sign-in"
        assert list(spool.iterdir()) == []
    if "agreements" in path:  # past its limit, refused by its declared length, cookie or not
        head = head.replace(b"Content-Length: 1048576", f"Content-Length: {900 << 20}".encode())
        _problem(*_exchange(port, head, [first]), "file_too_large")


# --- Parquet and inline JSON: limited by what they decode to -------------------------------


def _dictionary_items(path: Path, rows: int, value: str = "x") -> None:
    """An items.parquet of `rows` rows whose every column is one dictionary-encoded value:
    a file of a few kilobytes that decodes to as many rows as asked."""
    indices = pa.array(np.zeros(rows, np.int8))
    column = pa.DictionaryArray.from_arrays(indices, pa.array([value]))
    table = pa.table({name: column for name in ITEM_COLUMNS})
    pq.write_table(table, path, use_dictionary=True, compression="zstd")


def _request_folder(folder: Path, items: str = "items.parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    envelope = {
        "provision": "irc-6103-i-2",
        "agency": "U.S. Immigration and Customs Enforcement",
        "signer": {"name": "A", "title": "B", "role": "C"},
        "statutory_authority": "26 U.S.C. 6103(i)(2)",
        "reason": "r",
        "taxable_periods": [2023],
        "fields_requested": ["address"],
        "items": items,
    }
    (folder / "envelope.json").write_text(json.dumps(envelope))
    return folder


def test_a_parquet_file_of_more_rows_than_a_request_may_hold_is_refused_before_decoding(
    tmp_path: Path,
) -> None:
    """Five million and one dictionary-encoded rows in a file of a few kilobytes: refused by
    the file's metadata under the default limit, before a row is decoded."""
    folder = _request_folder(tmp_path / "req")
    _dictionary_items(folder / "items.parquet", intake.MAX_ITEMS + 1)
    assert (folder / "items.parquet").stat().st_size < 1 << 20
    with pytest.raises(InputError) as refused:
        intake.check(folder)
    assert refused.value.code == "too_many_rows"
    assert f"{intake.MAX_ITEMS:,}" in refused.value.message


def test_a_parquet_file_that_decodes_past_the_byte_limit_is_refused_while_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few enough rows, but each value 400 characters long: 20,000 rows decode to far more
    than the file's size (and than the limit, lowered to 1 MiB here), while the file itself
    is under the limit."""
    monkeypatch.setattr(intake, "MAX_ITEMS_BYTES", 1 << 20)
    folder = _request_folder(tmp_path / "req")
    _dictionary_items(folder / "items.parquet", 20_000, "y" * 400)
    assert (folder / "items.parquet").stat().st_size < 1 << 20
    with pytest.raises(InputError) as refused:
        intake.check(folder)
    assert refused.value.code == "file_too_large"


# --- job quotas, and staff work ahead of agencies' ------------------------------------------


def test_a_caller_has_a_quota_of_jobs_and_staff_work_goes_first(
    master: tuple[Workspace, Staff], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, people = master
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    requests_svc.generate(ws, people.admin, "irc-6103-i-2", 20, 2, tmp_path / "req")
    rid = requests_svc.submit(ws, people["requester"], tmp_path / "req").request_id
    monkeypatch.setenv("CUSTODES_JOB_QUOTA", "2")
    jobs = jobs_svc.Jobs(ws)
    release = threading.Event()
    try:
        # the worker is busy with someone's long job: whatever comes now waits
        jobs.queue.put((jobs_svc.STAFF, -1, (Future(), release.wait)))
        agency = [
            jobs.start(people["requester"], "submit", None, args=(tmp_path / "req",))
            for _ in range(2)
        ]
        with pytest.raises(RateLimited) as refused:
            jobs.start(people["requester"], "submit", None, args=(tmp_path / "req",))
        assert refused.value.code == "job_quota" and refused.value.retry_after > 0
        assert len(jobs_svc.rows.listing(ws.engine, agency[0]["actor"])) == 2  # none recorded
        train = jobs.start(people["officer"], "train", rid)  # queued after the agency's
        release.set()
        for job in (*agency, train):
            jobs.wait(job["id"], timeout=300)
        done = {j["id"]: jobs_svc.rows.get(ws.engine, j["id"]) for j in (*agency, train)}
        assert {d["state"] for d in done.values()} == {"succeeded"}
        staff_job = done[train["id"]]
        for job in agency:  # the officer's training ran to its end before any upload started
            assert staff_job["finished_at"] <= done[job["id"]]["started_at"]
        # the quota counts what waits or runs: with those ended, the agency may start again
        again = jobs.start(people["requester"], "submit", None, args=(tmp_path / "req",))
        jobs.wait(again["id"], timeout=300)
    finally:
        release.set()
        jobs.close()


# --- input built to break a parser: a coded error, through the API and the CLI -------------


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, _master_template: Template
) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    root = tmp_path_factory.mktemp("hostile-api")
    ws, people = copy_template(_master_template, root)
    tokens = {n: sessions.login(ws, n, PASSWORD) for n in ("admin", "rule-steward")}
    tokens["requester"] = users.key(ws, people.admin, "requester")["key"]
    users.confirm(ws, people.second_admin, "requester")
    home, url = ws.home, str(ws.engine.url)
    ws.close()
    with TestClient(create_app(home, url)) as client:
        yield client, tokens, root


def _bearer(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def _coded(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


def _deep_envelope() -> bytes:
    return b'{"items": "items.csv", "x": ' + b"[" * DEEP + b"]" * DEEP + b"}"


def _long_header_csv() -> bytes:
    return (",".join(ITEM_COLUMNS) + "," + "a" * (130 << 10) + "\n").encode()


def _deep_yaml() -> bytes:
    return b"id: x\nparameters: " + b"[" * DEEP + b"]" * DEEP + b"\n"


def _alias_bomb() -> bytes:
    """Nine lines that name "x" a billion times over (each list holds the last ten times)."""
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(8):
        prev, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    return ("\n".join(lines) + "\nid: x\n").encode()


def _zip(folder: Path) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def _rule_set_with(tmp: Path, text: bytes) -> Path:
    folder = tmp / "rules"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(REFERENCE, folder)
    (folder / "irc6103" / "d.yaml").write_bytes(text)
    return folder


def test_parser_breaking_input_gets_a_coded_error_over_the_api(
    api: tuple[TestClient, dict[str, str], Path],
) -> None:
    client, tokens, root = api
    csv_ok = (",".join(ITEM_COLUMNS) + "\n").encode()
    envelope = (_request_folder(root / "env", "items.csv") / "envelope.json").read_bytes()
    cases = {
        "an envelope nested 200,000 levels deep": (
            {"envelope": ("envelope.json", _deep_envelope()), "items": ("items.csv", csv_ok)},
            "bad_envelope",
        ),
        "an items header field over 128 KiB": (
            {"envelope": ("envelope.json", envelope), "items": ("items.csv", _long_header_csv())},
            "bad_csv",
        ),
    }
    for what, (files, code) in cases.items():
        r = client.post("/v1/requests", files=files, headers=_bearer(tokens, "requester"))
        assert r.status_code == 422 and r.json()["code"] == code, (what, r.text)
    # inline: the same envelope nested too deep, as JSON
    deep_inline = b'{"envelope": ' + b"[" * DEEP + b"]" * DEEP + b', "items": []}'
    r = client.post(
        "/v1/requests",
        content=deep_inline,
        headers=_bearer(tokens, "requester") | {"content-type": "application/json"},
    )
    _coded(r, 422, "bad_json")
    yaml_type = {"content-type": "application/yaml"}
    for text in (_deep_yaml(), _alias_bomb()):
        r = client.post(
            "/v1/registries/agreements", content=text, headers=_bearer(tokens, "admin") | yaml_type
        )
        _coded(r, 422, "bad_agreement")
    for text in (_deep_yaml(), _alias_bomb()):
        archive = _zip(_rule_set_with(root, text))
        r = client.post(
            "/v1/rules/changes",
            content=archive,
            headers=_bearer(tokens, "rule-steward") | {"content-type": "application/zip"},
        )
        _coded(r, 422, "bad_ruleset")


def test_parser_breaking_input_gets_a_coded_error_on_the_command_line(
    api: tuple[TestClient, dict[str, str], Path], tmp_path: Path
) -> None:
    client, tokens, _ = api
    home = str(client.app.state.ws.home)  # type: ignore[attr-defined]
    url = client.app.state.ws.store_url  # type: ignore[attr-defined]
    env = {"CUSTODES_STORE_URL": url}
    as_requester = env | {"CUSTODES_SESSION": tokens["requester"]}
    folder = _request_folder(tmp_path / "deep", "items.csv")
    (folder / "items.csv").write_bytes((",".join(ITEM_COLUMNS) + "\n").encode())
    (folder / "envelope.json").write_bytes(_deep_envelope())
    r = runner.invoke(cli, ["submit", str(folder), "--home", home], env=as_requester)
    assert r.exit_code == 2 and "(bad_envelope)" in r.output, r.output
    folder = _request_folder(tmp_path / "long", "items.csv")
    (folder / "items.csv").write_bytes(_long_header_csv())
    r = runner.invoke(cli, ["submit", str(folder), "--home", home], env=as_requester)
    assert r.exit_code == 2 and "(bad_csv)" in r.output, r.output
    as_admin = env | {"CUSTODES_SESSION": tokens["admin"]}
    for text in (_deep_yaml(), _alias_bomb()):
        (tmp_path / "agreement.yaml").write_bytes(text)
        r = runner.invoke(
            cli,
            ["agreements", "add", str(tmp_path / "agreement.yaml"), "--home", home],
            env=as_admin,
        )
        assert r.exit_code == 2 and "(bad_agreement)" in r.output, r.output
        r = runner.invoke(cli, ["rules", "lint", str(_rule_set_with(tmp_path, text))])
        assert r.exit_code == 1 and "d.yaml" in r.output, r.output
