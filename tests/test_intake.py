"""Intake (`custodes submit`) and the request lifecycle: every refusal, idempotence, states."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from conftest import Template, copy_template, keyed_in
from custodes.errors import AccessDenied, ConflictError, InputError, NotFound
from custodes.ledger import log
from custodes.requests import intake
from custodes.requests.lifecycle import STATES, TRANSITIONS, transition
from custodes.services.requests import generate as generate_request
from custodes.services.requests import submit
from custodes.store.tables import requests
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace


@pytest.fixture(scope="module")
def _drawn(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Path:
    """The request the tests here submit (120 items, seed 5), drawn once from a copy of the
    template's master file (every test's workspace is a copy of the same) and copied per test."""
    root = tmp_path_factory.mktemp("intake-request")
    ws, people = copy_template(_master_template, root)
    try:
        generate_request(ws, people.admin, "irc-6103-i-2", 120, seed=5, out=root / "req")
    finally:
        ws.close()
    return root / "req"


@pytest.fixture
def request_dir(_drawn: Path, tmp_path: Path) -> Path:
    shutil.copytree(_drawn, tmp_path / "req")
    return tmp_path / "req"


def received(ws: Workspace) -> int:
    with ws.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(requests)).scalar() or 0


def test_submit_copies_hashes_and_records(
    master_ws: Workspace, request_dir: Path, people: Staff
) -> None:
    sub = submit(master_ws, people["requester"], request_dir)
    assert sub.state == "received" and sub.items == 120 and not sub.duplicate
    folder = master_ws.home / "requests" / sub.request_id
    assert (folder / "envelope.json").exists() and (folder / "items.csv").exists()
    assert pq.read_table(folder / "items.parquet").num_rows == 120
    with master_ws.engine.connect() as conn:
        assert log.state(conn).size >= 2  # master import + request.received
    again = submit(master_ws, people["requester"], request_dir)
    assert again.duplicate and again.request_id == sub.request_id
    assert received(master_ws) == 1


def test_parquet_items_are_accepted(master_ws: Workspace, request_dir: Path, people: Staff) -> None:
    table = pacsv.read_csv(
        request_dir / "items.csv",
        convert_options=pacsv.ConvertOptions(column_types={"tin": "string", "zip": "string"}),
    )
    pq.write_table(table, request_dir / "items.parquet")
    env = json.loads((request_dir / "envelope.json").read_text())
    env["items"] = "items.parquet"
    (request_dir / "envelope.json").write_text(json.dumps(env))
    assert submit(master_ws, people["requester"], request_dir).items == 120


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
def test_intake_refusals(master_ws: Workspace, request_dir: Path, name: str, people: Staff) -> None:
    mutate, code, where = REFUSALS[name]
    mutate(request_dir)
    with pytest.raises((InputError, NotFound)) as exc:
        submit(master_ws, people["requester"], request_dir)
    assert exc.value.code == code, exc.value.message
    if where:
        assert where in exc.value.message
    assert received(master_ws) == 0
    assert not any((master_ws.home / "requests").iterdir())  # nothing half-written


def test_file_size_limit(
    master_ws: Workspace, request_dir: Path, monkeypatch: pytest.MonkeyPatch, people: Staff
) -> None:
    monkeypatch.setattr(intake, "MAX_ITEMS_BYTES", 1000)
    with pytest.raises(InputError) as exc:
        submit(master_ws, people["requester"], request_dir)
    assert exc.value.code == "file_too_large"


def test_not_a_directory(master_ws: Workspace, tmp_path: Path, people: Staff) -> None:
    with pytest.raises(InputError) as exc:
        submit(master_ws, people["requester"], tmp_path / "nowhere")
    assert exc.value.code == "not_a_request"


def test_the_main_path_and_every_illegal_transition(
    master_ws: Workspace, request_dir: Path, people: Staff
) -> None:
    rid = submit(master_ws, people["requester"], request_dir).request_id
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
    # Every pair not in the table is refused, from every state: a second request put in each
    # state in turn (a refused transition changes nothing, so one request serves every pair).
    env = json.loads((request_dir / "envelope.json").read_text())
    env["note"] = "another"  # a different request, so intake does not recognise it
    (request_dir / "envelope.json").write_text(json.dumps(env))
    r2 = submit(master_ws, people["requester"], request_dir).request_id
    assert r2 != rid
    for src in STATES:
        for dst in STATES:
            if dst in TRANSITIONS[src]:
                continue
            with master_ws.engine.begin() as conn:
                conn.execute(sa.update(requests).where(requests.c.id == r2).values(state=src))
                with pytest.raises(ConflictError) as exc:
                    transition(conn, r2, dst, actor="officer")
                assert (
                    conn.execute(
                        sa.select(requests.c.state).where(requests.c.id == r2)
                    ).scalar_one()
                    == src
                )
            assert exc.value.code == "illegal_transition"
    with master_ws.engine.begin() as conn, pytest.raises(NotFound):
        transition(conn, "req-nope", "checked", actor="officer")


def test_withdraw_from_the_command_line(
    master_ws: Workspace,
    request_dir: Path,
    sign_in,  # type: ignore[no-untyped-def]
    people: Staff,
) -> None:
    from typer.testing import CliRunner

    from custodes.cli import app

    runner = CliRunner()
    rid = submit(master_ws, people["requester"], request_dir).request_id
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


# --- regressions from the attack (issue "Close every hole") ----------------------------------


@pytest.mark.parametrize(
    "item_id",
    [
        "SULLIVAN HAROLD dob 2016-03-16 ssn 592 98 4507",
        "100000000",
        "001-11-1001",
        "case-123-45-6789",
        "=HYPERLINK(1)",
        "born-1965-03-04",
        "x" * 65,
        "-leading-dash",
    ],
)
def test_item_ids_must_be_opaque(
    master_ws: Workspace, request_dir: Path, people: Staff, item_id: str
) -> None:
    _edit_items(request_dir, lambda ls: [*ls[:3], _field(ls[3], 0, f'"{item_id}"'), *ls[4:]])
    with pytest.raises(InputError) as exc:
        submit(master_ws, people["requester"], request_dir)
    assert exc.value.code == "bad_item_id" and "items.csv:4 [item_id]" in exc.value.message
    assert item_id not in exc.value.message
    assert received(master_ws) == 0


@pytest.mark.parametrize(
    "header",
    [
        "item_id\") > 500 THEN 'x' END) AS col FROM items WHERE false; COPY (SELECT 1) TO "
        "'/tmp/leak.csv'; --",
        "extra\ncolumn",
        'quote"d',
        "semi;colon",
        "dash--comment",
    ],
)
def test_a_header_never_reaches_sql(
    master_ws: Workspace, request_dir: Path, people: Staff, tmp_path: Path, header: str
) -> None:
    """An extra column named like a statement is refused before any SQL reads the rows (the
    2026 attack wrote the whole master file to a file of its choice through such a header)."""
    quoted = '"' + header.replace('"', '""') + '"'
    _edit_items(
        request_dir,
        lambda ls: [
            ls[0].rstrip("\n") + "," + quoted + "\n",
            *(line.rstrip("\n") + ",x\n" for line in ls[1:]),
        ],
    )
    with pytest.raises(InputError) as exc:
        submit(master_ws, people["requester"], request_dir)
    assert exc.value.code == "bad_column_name"
    assert not Path("/tmp/leak.csv").exists()


def test_an_extra_column_with_a_plain_name_is_kept(
    master_ws: Workspace, request_dir: Path, people: Staff
) -> None:
    _edit_items(
        request_dir,
        lambda ls: [
            ls[0].rstrip("\n") + ",alien_number\n",
            *(line.rstrip("\n") + ",A1\n" for line in ls[1:]),
        ],
    )
    sub = submit(master_ws, people["requester"], request_dir)
    assert (
        "alien_number"
        in pq.read_schema(master_ws.request_folder(sub.request_id) / "items.parquet").names
    )


def test_a_requester_submits_only_for_its_agency(
    master_ws: Workspace, request_dir: Path, people: Staff
) -> None:
    env = json.loads((request_dir / "envelope.json").read_text())
    env["agency"] = "U.S. Department of Justice"
    (request_dir / "envelope.json").write_text(json.dumps(env))
    with pytest.raises(AccessDenied) as exc:
        submit(master_ws, people["requester"], request_dir)
    assert exc.value.code == "other_agency"
    assert received(master_ws) == 0


def test_bad_values_are_reported_not_swallowed(
    master_ws: Workspace, request_dir: Path, people: Staff
) -> None:
    env = json.loads((request_dir / "envelope.json").read_text())
    env["provision"] = 42
    (request_dir / "envelope.json").write_text(json.dumps(env))
    with pytest.raises(InputError) as exc:
        submit(master_ws, people["requester"], request_dir)
    assert exc.value.code == "bad_envelope" and "provision must be text" in exc.value.message
    env["provision"] = "irc-6103-i-2"
    (request_dir / "envelope.json").write_text(json.dumps(env))
    _edit_items(
        request_dir,
        lambda ls: [
            *ls[:2],
            _field(ls[2], 5, "not-a-date"),
            _field(ls[3], 5, "03/04/1965"),
            *ls[4:],
        ],
    )
    sub = submit(master_ws, people["requester"], request_dir)
    assert sub.warnings_total == 2
    assert sub.warnings[0].startswith("items.csv:3 [dob]") and "03/04" not in "".join(sub.warnings)


def test_an_unclosed_quote_is_reported_where_it_opens(
    master_ws: Workspace, request_dir: Path, people: Staff
) -> None:
    _edit_items(request_dir, lambda ls: [*ls[:4], _field(ls[4], 1, '"ANNA'), *ls[5:]])
    with pytest.raises(InputError) as exc:
        submit(master_ws, people["requester"], request_dir)
    assert exc.value.code == "bad_csv" and "items.csv:5" in exc.value.message


def test_bom_and_crlf_copies_are_the_same_request(
    master_ws: Workspace, request_dir: Path, people: Staff, tmp_path: Path
) -> None:
    first = submit(master_ws, people["requester"], request_dir)
    copy = tmp_path / "copy"
    shutil.copytree(request_dir, copy)
    (copy / "envelope.json").write_bytes(
        b"\xef\xbb\xbf" + (copy / "envelope.json").read_bytes().replace(b"\n", b"\r\n")
    )
    (copy / "items.csv").write_bytes((copy / "items.csv").read_bytes().replace(b"\n", b"\r\n"))
    again = submit(master_ws, people["requester"], copy)
    assert again.duplicate and again.request_id == first.request_id


def test_a_requester_sees_and_withdraws_only_its_agency(
    master_ws: Workspace, request_dir: Path, people: Staff, tmp_path: Path
) -> None:
    from custodes.services import requests as svc

    mine = submit(master_ws, people["requester"], request_dir).request_id
    other = tmp_path / "other"
    shutil.copytree(request_dir, other)
    env = json.loads((other / "envelope.json").read_text())
    env["agency"] = "U.S. Department of Justice"
    (other / "envelope.json").write_text(json.dumps(env))
    theirs = keyed_in(master_ws, people["officer"], people["approver"], other).request_id
    assert [r["id"] for r in svc.listing(master_ws, people["requester"])] == [mine]
    assert {r["id"] for r in svc.listing(master_ws, people["officer"])} == {mine, theirs}
    for fn, args in ((svc.status, (theirs,)), (svc.withdraw, (theirs, "not ours"))):
        with pytest.raises(NotFound) as exc:  # 404, not 403: existence does not leak
            fn(master_ws, people["requester"], *args)
        assert exc.value.code == "unknown_request"
    assert svc.withdraw(master_ws, people["requester"], mine, "sent twice")["state"] == "withdrawn"
