"""The attack on custodes, rerun as a script: the real CLI (its Typer app, in this process)
against a workspace set up through it, one test per item of the 2026 attack: one
administrator alone, SQL from headers and paths, other users, personal data in ids, a
rewritten store, release trusting the disk, agencies' lanes, the trail, and suspension."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

from conftest import PASSWORD
from shared_attacks import Shell, _code


def test_1_one_administrator_cannot_release_alone(attack) -> None:  # type: ignore[no-untyped-def]
    sh, _ = attack
    for staff_member in ("olga", "ben", "deputy"):
        assert _code(sh("chief", "users", "key", staff_member), "key_not_allowed")
    r = sh(
        "chief",
        "users",
        "add",
        "chief-alt",
        "--role",
        "approver",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert _code(r, "password_by_enrolment")
    r = sh("chief", "users", "add", "chief-alt", "--role", "approver", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["pending"] == ["approver"]
    assert _code(sh("chief", "users", "confirm", "chief-alt"), "separation_of_duties")
    # Keys an administrator minted and nobody confirmed end with the administrator.
    key = json.loads(sh("ann", "users", "key", "agency-ice", "--json").stdout)["key"]
    assert sh("chief", "users", "suspend", "ann", "--reason", "insider").returncode == 0
    sh.tokens["minted"] = key
    assert _code(sh("minted", "requests", "list"), "session_ended")


def test_2_no_sql_from_headers_or_paths(attack) -> None:  # type: ignore[no-untyped-def]
    sh, root = attack
    evil = root / "evil"
    shutil.copytree(root / "req", evil)
    leak = root / "leak.csv"
    header = (
        f"item_id\") > 500 THEN 'x' END) AS col FROM items WHERE false; COPY (SELECT * FROM "
        f"read_parquet('{root}/ws/bulk/master/*/people.parquet')) TO '{leak}'; --"
    )
    lines = (evil / "items.csv").read_text().splitlines()
    lines[0] += ',"' + header.replace('"', '""') + '"'
    (evil / "items.csv").write_text("\n".join([lines[0], *(ln + ",x" for ln in lines[1:])]) + "\n")
    assert _code(sh("agency-ice", "submit", str(evil)), "bad_column_name")
    rid = (root / "rid").read_text()
    out = root / f"x.csv' (HEADER); COPY (SELECT 1) TO '{leak}'; --.csv"
    r = sh("olga", "outcomes", rid, "--out", str(out))
    assert _code(r, "bad_path")  # a folder of that name does not exist; nothing ran
    odd = root / "x.csv' (HEADER); COPY (SELECT 1) TO 'leak'; --.csv"
    assert sh("olga", "outcomes", rid, "--out", str(odd)).returncode == 0  # just a file name
    assert not leak.exists() and odd.exists()


def test_3_other_users_read_nothing(attack) -> None:  # type: ignore[no-untyped-def]
    _, root = attack
    home = root / "ws"
    for path in [home, *home.rglob("*")]:
        if not path.is_symlink():
            assert path.stat().st_mode & 0o077 == 0, path
    nobody = 65534
    root.chmod(0o755)  # let the other user reach the folder, as on a shared machine
    try:
        for target in (home / "custodes.db", next(home.rglob("people.parquet"))):
            r = subprocess.run(["cat", str(target)], user=nobody, capture_output=True)
            assert r.returncode != 0 and not r.stdout
    finally:
        root.chmod(0o700)


def test_3_an_exposed_workspace_is_refused(attack) -> None:  # type: ignore[no-untyped-def]
    sh, root = attack
    db = root / "ws" / "custodes.db"
    db.chmod(0o644)
    try:
        r = sh("olga", "requests", "list")
        assert _code(r, "workspace_exposed") and "chmod -R go-rwx" in r.stderr
    finally:
        db.chmod(0o600)


def test_4_personal_data_never_rides_in_an_id(attack) -> None:  # type: ignore[no-untyped-def]
    sh, root = attack
    bad = root / "bad-ids"
    shutil.copytree(root / "req", bad)
    rows = list(csv.reader((bad / "items.csv").open()))
    rows[1][0] = "SULLIVAN HAROLD dob 2016-03-16 ssn 592 98 4507"
    with (bad / "items.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert _code(sh("agency-ice", "submit", str(bad)), "bad_item_id")
    rid = (root / "rid").read_text()
    r = sh(
        "olga",
        "records",
        "show",
        "592-98-4507",
        "--purpose",
        "locate for the case",
        "--request",
        rid,
    )
    assert _code(r, "bad_record_id")


def test_5_a_rewritten_store_does_not_verify(attack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sh, root = attack
    assert sh("chief", "ledger", "checkpoint").returncode == 0
    copy = tmp_path / "ws"
    shutil.copytree(root / "ws", copy)
    import sqlite3

    db = sqlite3.connect(copy / "custodes.db")
    db.execute("DELETE FROM ledger_checkpoints")
    db.commit()
    db.close()
    r = Shell(copy, sh.tokens)("ida", "ledger", "verify")
    assert r.returncode == 1 and "missing from the store" in r.stdout


def test_6_7_release_trusts_nothing_on_disk_and_happens_once(attack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sh, root = attack
    copy = tmp_path / "ws"
    shutil.copytree(root / "ws", copy)
    rid = (root / "rid").read_text()
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = copy / "requests" / rid / "decisions" / "outcomes.parquet"
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        if r["outcome"] == "WITHHOLD" and r["candidate"]:
            r["outcome"], r["record_id"] = "DISCLOSE", r["candidate"]
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(path)), path)
    r = Shell(copy, sh.tokens)("olga", "release", rid, "--out", str(tmp_path / "out"))
    # Refused before anything is read from it: the file no longer hashes to what the ledger
    # recorded when it was written (#23: file_tampered; before, release's own content check).
    assert _code(r, "file_tampered") and not (tmp_path / "out" / "response.csv").exists()
    r = Shell(copy, sh.tokens)("ida", "ledger", "verify")
    assert r.returncode == 1 and "outcomes.parquet" in r.stdout


def test_9_agencies_stay_in_their_lane(attack) -> None:  # type: ignore[no-untyped-def]
    sh, root = attack
    doj = root / "doj"
    shutil.copytree(root / "req", doj)
    env = json.loads((doj / "envelope.json").read_text())
    env["agency"] = "U.S. Department of Justice"
    (doj / "envelope.json").write_text(json.dumps(env))
    assert _code(sh("agency-ice", "submit", str(doj)), "other_agency")
    scan = root / "doj-letter.pdf"  # staff key in only a request received on paper
    scan.write_bytes(b"%PDF-1.4 the Department's letter")
    keyed = sh("olga", "submit", str(doj), "--paper", str(scan), "--json")
    other = json.loads(keyed.stdout)["request_id"]
    assert other not in sh("agency-ice", "requests", "list", "--json").stdout
    assert _code(sh("agency-ice", "withdraw", other, "--reason", "mine now"), "unknown_request")


def test_11_12_13_trail_second_factor_and_files(attack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sh, root = attack
    r = sh("ida", "ledger", "export", str(tmp_path / "exp"), "--bodies")
    assert r.returncode == 0
    out = sh("ida", "ledger", "status", "--json")
    assert out.returncode == 0
    # The second factor's policy is the store's, not the environment's.
    assert sh("chief", "users", "policy", "--totp-roles", "approver").returncode == 0
    assert sh("deputy", "users", "policy", "--confirm").returncode == 0
    env_bypass = sh(None, "login", "ben", "--password-stdin", stdin=PASSWORD + "\n")
    assert env_bypass.returncode == 2 and "one-time code" in env_bypass.stderr
    assert _code(sh(None, "login", "ben", "--totp", "123456"), "bad_argument")
    # A planted symlink is never followed.
    planted = tmp_path / "resp"
    planted.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (planted / "response.csv").symlink_to(victim)
    rid = (root / "rid").read_text()
    assert _code(sh("olga", "release", rid, "--out", str(planted)), "output_exists")
    assert victim.read_text() == "precious"


def test_the_audit_sees_no_action_by_a_suspended_user(attack) -> None:  # type: ignore[no-untyped-def]
    sh, _ = attack
    r = sh("ida", "audit", "inspections", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["actions_by_suspended_users"] == []
