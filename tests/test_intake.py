"""Intake (`custodes submit`) and the request lifecycle: every refusal, idempotence, states."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from custodes.errors import ConflictError, InputError
from custodes.ledger import log
from custodes.requests import intake
from custodes.requests.generator import generate_request
from custodes.requests.intake import submit
from custodes.requests.lifecycle import STATES, TRANSITIONS, transition
from custodes.store.tables import requests
from custodes.workspace import Workspace


@pytest.fixture
def request_dir(master_ws: Workspace, tmp_path: Path) -> Path:
    generate_request(master_ws, "irc-6103-i-2", 120, seed=5, out=tmp_path / "req")
    return tmp_path / "req"


def received(ws: Workspace) -> int:
    with ws.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(requests)).scalar() or 0


def test_submit_copies_hashes_and_records(master_ws: Workspace, request_dir: Path) -> None:
    sub = submit(master_ws, request_dir)
    assert sub.state == "received" and sub.items == 120 and not sub.duplicate
    folder = master_ws.home / "requests" / sub.request_id
    assert (folder / "envelope.json").exists() and (folder / "items.csv").exists()
    assert pq.read_table(folder / "items.parquet").num_rows == 120
    with master_ws.engine.connect() as conn:
        assert log.state(conn).size >= 2  # master import + request.received
    again = submit(master_ws, request_dir)
    assert again.duplicate and again.request_id == sub.request_id
    assert received(master_ws) == 1


def test_parquet_items_are_accepted(master_ws: Workspace, request_dir: Path) -> None:
    table = pacsv.read_csv(
        request_dir / "items.csv",
        convert_options=pacsv.ConvertOptions(column_types={"tin": "string", "zip": "string"}),
    )
    pq.write_table(table, request_dir / "items.parquet")
    env = json.loads((request_dir / "envelope.json").read_text())
    env["items"] = "items.parquet"
    (request_dir / "envelope.json").write_text(json.dumps(env))
    assert submit(master_ws, request_dir).items == 120


def _edit_items(d: Path, fn) -> None:  # type: ignore[no-untyped-def]
    lines = (d / "items.csv").read_text().splitlines(keepends=True)
    (d / "items.csv").write_text("".join(fn(lines)))


def _field(line: str, col: int, value: str) -> str:
    parts = line.rstrip("\n").split(",")
    parts[col] = value
    return ",".join(parts) + "\n"


REFUSALS = {
    "missing envelope": (lambda d: (d / "envelope.json").unlink(), "missing_envelope", None),
    "bad json": (
        lambda d: (d / "envelope.json").write_text('{"provision": }'),
        "bad_envelope",
        "envelope.json:1",
    ),
    "envelope lacks keys": (
        lambda d: (d / "envelope.json").write_text('{"provision": "x"}'),
        "bad_envelope",
        "missing key",
    ),
    "items file missing": (lambda d: (d / "items.csv").unlink(), "file_not_found", None),
    "missing column": (
        lambda d: _edit_items(
            d,
            lambda ls: [
                ",".join(x for i, x in enumerate(line.split(",")) if i != 13) for line in ls
            ],
        ),
        "missing_columns",
        "official_id",
    ),
    "not utf-8": (
        lambda d: (d / "items.csv").write_bytes(
            (d / "items.csv").read_bytes().replace(b"CASE-", b"CAS\xe9-", 1)
        ),
        "bad_encoding",
        "items.csv:2",
    ),
    "duplicate item id": (
        lambda d: _edit_items(
            d, lambda ls: [*ls[:5], _field(ls[5], 0, ls[2].split(",")[0]), *ls[6:]]
        ),
        "duplicate_item_id",
        "items.csv:6: item_id repeats the one on line 3",
    ),
    "empty item id": (
        lambda d: _edit_items(d, lambda ls: [*ls[:4], _field(ls[4], 0, ""), *ls[5:]]),
        "empty_item_id",
        "items.csv:5",
    ),
    "oversize field": (
        lambda d: _edit_items(d, lambda ls: [*ls[:7], _field(ls[7], 12, "C" * 600), *ls[8:]]),
        "oversize_field",
        "items.csv:8 [case_number]",
    ),
    "no items": (lambda d: _edit_items(d, lambda ls: ls[:1]), "no_items", None),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_intake_refusals(master_ws: Workspace, request_dir: Path, name: str) -> None:
    mutate, code, where = REFUSALS[name]
    mutate(request_dir)
    with pytest.raises(InputError) as exc:
        submit(master_ws, request_dir)
    assert exc.value.code == code, exc.value.message
    if where:
        assert where in exc.value.message
    assert received(master_ws) == 0
    assert not any((master_ws.home / "requests").iterdir())  # nothing half-written


def test_file_size_limit(
    master_ws: Workspace, request_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "MAX_ITEMS_BYTES", 1000)
    with pytest.raises(InputError) as exc:
        submit(master_ws, request_dir)
    assert exc.value.code == "file_too_large"


def test_not_a_directory(master_ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        submit(master_ws, tmp_path / "nowhere")
    assert exc.value.code == "not_a_request"


def test_the_main_path_and_every_illegal_transition(
    master_ws: Workspace, request_dir: Path
) -> None:
    rid = submit(master_ws, request_dir).request_id
    path = [
        "checked",
        "matched",
        "decided",
        "in_review",
        "prepared",
        "approved",
        "released",
        "recalled",
    ]
    with master_ws.engine.begin() as conn:
        for state in path:
            transition(conn, rid, state, actor="officer")
    # Every pair not in the table is refused, from every state.
    for i, src in enumerate(STATES):
        for dst in STATES:
            if dst in TRANSITIONS[src]:
                continue
            other = f"{request_dir.name}-{i}-{dst}"
            d = request_dir.parent / other
            shutil.copytree(request_dir, d)
            env = json.loads((d / "envelope.json").read_text())
            env["note"] = other  # a different request, so intake does not recognise it
            (d / "envelope.json").write_text(json.dumps(env))
            r2 = submit(master_ws, d).request_id
            with master_ws.engine.begin() as conn:
                conn.execute(sa.update(requests).where(requests.c.id == r2).values(state=src))
                with pytest.raises(ConflictError) as exc:
                    transition(conn, r2, dst)
            assert exc.value.code == "illegal_transition"
            shutil.rmtree(d)
    with master_ws.engine.begin() as conn, pytest.raises(InputError):
        transition(conn, "req-nope", "checked")


def test_withdraw_from_the_command_line(
    master_ws: Workspace,
    request_dir: Path,
    sign_in,  # type: ignore[no-untyped-def]
) -> None:
    from typer.testing import CliRunner

    from custodes.cli import app

    runner = CliRunner()
    rid = submit(master_ws, request_dir).request_id
    args = ["--home", str(master_ws.home)]
    env = sign_in(master_ws.home, master_ws.store_url)["officer"]
    r = runner.invoke(app, ["withdraw", rid, "--reason", " ", *args], env=env)
    assert r.exit_code == 2 and "bad_argument" in r.output
    r = runner.invoke(app, ["withdraw", "req-nope", "--reason", "x", *args], env=env)
    assert r.exit_code == 2 and "unknown_request" in r.output
    r = runner.invoke(app, ["withdraw", rid, "--reason", "duplicate", *args, "--json"], env=env)
    assert r.exit_code == 0 and json.loads(r.stdout) == {
        "request_id": rid,
        "from": "received",
        "state": "withdrawn",
    }
    r = runner.invoke(app, ["withdraw", rid, "--reason", "again", *args], env=env)
    assert r.exit_code == 2 and "illegal_transition" in r.output
    r = runner.invoke(app, ["requests", "list", *args, "--json"], env=env)
    assert [x["state"] for x in json.loads(r.stdout)] == ["withdrawn"]
