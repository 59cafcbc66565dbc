"""The attack on custodes, rerun as a script: the real CLI (its Typer app, in this process: each
command opens the workspace, reads its session from the environment and exits with its code,
as the `custodes` command does), a fresh interpreter where the point is a process holding no
workspace, and a second Unix user where one is needed. Every step that broke a promise is now
refused or detected, with a coded error or an audit finding naming the place (issue "Close
every hole")."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSWORD
from custodes.access import sessions
from custodes.workspace import open_workspace
from shared_attacks import AGENCY, Shell


def _code(r, code: str) -> bool:  # type: ignore[no-untyped-def]
    return r.returncode == 2 and f"({code})" in r.stderr


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


# --- issue #22 ---------------------------------------------------------------------------------

PII_IDS = ("T513476877", "154.89.0135", "CHERYL.BARKLEY.19840811.2")


def test_22_6_agency_chosen_item_ids_never_reach_a_ledger_body(attack) -> None:  # type: ignore[no-untyped-def]
    """Ids that spell a TIN-like number, an SSN-like number and a name with a date of birth
    were accepted at intake and written verbatim into `disclosure` bodies. A body now carries
    only the item's salted commitment; the accounting still names each item for the auditor,
    with the salt that opens the commitment, and `report verify` checks it."""
    sh, root = attack
    folder = root / "pii-ids"
    shutil.copytree(root / "req", folder)
    with (folder / "truth.csv").open() as fh:
        clean = [r["item_id"] for r in csv.DictReader(fh) if r["defect"] == "none"]
    rows = list(csv.DictReader((folder / "items.csv").open()))
    with_tin = [r for r in rows if r["item_id"] in clean and r["tin"]][: len(PII_IDS)]
    for row, new in zip(with_tin, PII_IDS, strict=True):
        row["item_id"] = new
    with (folder / "items.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = sh("agency-ice", "submit", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    rid = json.loads(r.stdout)["request_id"]
    assert sh("olga", "process", rid).returncode == 0
    if json.loads(sh("olga", "next", rid, "--json").stdout)["state"] == "in_review":
        assert sh("olga", "review", rid, "--withhold-all", "--reason", "unsure").returncode == 0
    assert sh("olga", "prepare", rid).returncode == 0
    assert sh("ben", "approve", rid).returncode == 0
    assert sh("olga", "release", rid, "--out", str(root / "pii-out")).returncode == 0
    export = root / "pii-export"
    assert sh("ida", "ledger", "export", str(export), "--bodies").returncode == 0
    bodies = (export / "bodies.jsonl").read_text()
    for pii in PII_IDS:
        assert pii not in bodies
    disclosed = [
        json.loads(json.loads(line)["body"])
        for line in bodies.splitlines()
        if f'"request_id\\":\\"{rid}\\"' in line and '\\"type\\":\\"disclosure\\"' in line
    ]
    assert disclosed and all("item_sha256" in b and "item_id" not in b for b in disclosed)
    # The auditor's accounting names the items (from the store) and verifies against the export.
    report = root / "pii-accounting.csv"
    assert sh("ida", "report", "accounting", "--out", str(report)).returncode == 0
    mine = [r for r in csv.DictReader(report.open()) if r["request_id"] == rid]
    assert set(PII_IDS) <= {r["item_id"] for r in mine}
    assert sh("ida", "ledger", "export", str(root / "pii-export2"), "--bodies").returncode == 0
    verify = ["report", "verify", str(report), "--export", str(root / "pii-export2"), "--json"]
    r = subprocess.run(  # open to anyone holding the export: no workspace, no session
        [sys.executable, "-m", "custodes", *verify],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout


def test_22_7_agencies_see_roles_never_staff_names(attack) -> None:  # type: ignore[no-untyped-def]
    """An agency's key read which officer processed its request and which approvers could
    release it (whom to pressure, which account to guess). It now reads roles, under the
    same keys; staff still see names."""
    sh, root = attack
    staff_names = {"chief", "deputy", "olga", "ben", "ida", "ann"}
    rid = (root / "rid").read_text()
    seen = json.loads(sh("agency-ice", "requests", "show", rid, "--json").stdout)
    actors = {h["actor"] for h in seen["history"]}
    assert {"officer", "approver"} <= actors and not actors & staff_names
    assert "olga" in sh("olga", "requests", "show", rid, "--json").stdout
    listed = sh("agency-ice", "requests", "list", "--json").stdout
    assert not any(f'"{n}"' in listed for n in staff_names)
    # A prepared request: who prepared it and who may approve, as roles.
    folder = root / "to-prepare"
    shutil.copytree(root / "req", folder)
    env = json.loads((folder / "envelope.json").read_text())
    env["reason"] = env["reason"] + " (second request)"
    (folder / "envelope.json").write_text(json.dumps(env))
    r = sh("agency-ice", "submit", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    new = json.loads(r.stdout)["request_id"]
    assert sh("olga", "process", new).returncode == 0
    if json.loads(sh("olga", "next", new, "--json").stdout)["state"] == "in_review":
        assert sh("olga", "review", new, "--withhold-all", "--reason", "unsure").returncode == 0
    assert sh("olga", "prepare", new).returncode == 0
    step = json.loads(sh("agency-ice", "next", new, "--json").stdout)
    assert step["prepared_by"] == "officer" and step["eligible_approvers"] == ["approver"]
    staff_step = json.loads(sh("olga", "next", new, "--json").stdout)
    assert staff_step["prepared_by"] == "olga" and "ben" in staff_step["eligible_approvers"]
    # The sign-in lockout is no weapon: invented names lock nobody, and guessing ida's
    # password on this machine backs off this machine only, not ida at her desk.
    for i in range(6):
        r = sh(None, "login", f"nobody-{i}", "--password-stdin", stdin="x" * 12 + "\n")
        assert _code(r, "bad_credentials")
    for _ in range(5):
        r = sh(None, "login", "ida", "--password-stdin", stdin="wrong password!!\n")
        assert _code(r, "bad_credentials")
    r = sh(None, "login", "ida", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 2 and "(locked)" in r.stderr
    ws = open_workspace(root / "ws")
    try:
        assert sessions.login(ws, "ida", PASSWORD, client="198.51.100.7")
    finally:
        ws.close()


def test_22_10_an_agency_key_is_no_console_cookie_and_outcomes_reads_are_logged(attack) -> None:  # type: ignore[no-untyped-def]
    """An agency's API key, set as the console's cookie, opened the console as the agency;
    and reading a request's outcomes (the addresses about to be disclosed) over HTTP was in
    the access log with no request id."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from custodes.app import create_app
    from custodes.store.tables import access_log

    sh, root = attack
    rid = (root / "rid").read_text()
    home = root / "ws"
    with TestClient(create_app(home), client=("198.51.100.30", 40000)) as web:
        web.cookies.set("__Host-custodes_session", sh.tokens["agency-ice"])
        r = web.get("/", follow_redirects=False)
        assert r.status_code == 401 and "console takes only a session" in r.text
        assert rid not in r.text
        web.cookies.clear()
        r = web.get(
            f"/v1/requests/{rid}", headers={"Authorization": f"Bearer {sh.tokens['agency-ice']}"}
        )
        assert r.status_code == 200  # the key still works where it belongs: the API
        r = web.get(
            f"/v1/requests/{rid}/outcomes?limit=5",
            headers={"Authorization": f"Bearer {sh.tokens['olga']}"},
        )
        assert r.status_code == 200 and r.json()["items"]
    ws = open_workspace(home)
    try:
        with ws.engine.connect() as conn:
            refused = conn.execute(
                sa.select(access_log.c.reason)
                .where(access_log.c.action == "session", access_log.c.allowed.is_(False))
                .order_by(access_log.c.id.desc())
                .limit(1)
            ).scalar()
            read = conn.execute(
                sa.select(access_log.c.user_name, access_log.c.request_id)
                .where(access_log.c.action == "outcomes")
                .order_by(access_log.c.id.desc())
                .limit(1)
            ).one()
    finally:
        ws.close()
    assert refused == "not_a_console_session"
    assert tuple(read) == ("olga", rid)


def test_22_3_the_console_cookie_is_no_bearer_token(attack) -> None:  # type: ignore[no-untyped-def]
    """Another local user's server on 127.0.0.1:9999 received the console cookie, and it
    worked as `Authorization: Bearer` on the API and keyed the forms' anti-forgery token.
    Now the console's session is its own kind: the API refuses it, the console refuses API
    credentials, the cookie is `__Host-` (Secure, HttpOnly, SameSite=Strict, Path=/), and the
    anti-forgery token cannot be computed from the cookie."""
    import hashlib
    import hmac

    from fastapi.testclient import TestClient

    from custodes.app import create_app

    sh, root = attack
    rid = (root / "rid").read_text()
    with TestClient(
        create_app(root / "ws"), base_url="https://testserver", client=("198.51.100.31", 40000)
    ) as web:
        r = web.post(
            "/sign-in", data={"name": "olga", "password": PASSWORD}, follow_redirects=False
        )
        assert r.status_code == 303, r.text
        set_cookie = r.headers["set-cookie"]
        assert set_cookie.startswith("__Host-custodes_session=")
        for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
            assert attribute.lower() in set_cookie.lower(), (attribute, set_cookie)
        assert "domain=" not in set_cookie.lower()
        cookie = web.cookies["__Host-custodes_session"]
        page = web.get(f"/requests/{rid}")
        assert page.status_code == 200
        # the stolen cookie as a bearer token on the API: refused, with its code
        stolen = web.get(f"/v1/requests/{rid}", headers={"Authorization": f"Bearer {cookie}"})
        assert stolen.status_code == 401 and stolen.json()["code"] == "console_session"
        # the anti-forgery token is not the cookie's HMAC any more
        old = hmac.new(cookie.encode(), b"custodes/csrf/v1", hashlib.sha256).hexdigest()
        assert old not in page.text and 'name="csrf"' in page.text
        forged = web.post(
            f"/requests/{rid}/withdraw",
            data={"reason": "forged", "csrf": old},
            follow_redirects=False,
        )
        assert forged.status_code == 403 and "anti-forgery" in forged.text
        web.cookies.clear()
        # an API session (the command line's) offered as the console's cookie: refused
        web.cookies.set("__Host-custodes_session", sh.tokens["olga"])
        r = web.get("/", follow_redirects=False)
        assert r.status_code == 401 and "console takes only a session" in r.text


def test_22_2_an_officer_alone_cannot_make_up_a_request_to_browse(attack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An officer posted a one-item request in an agency's name, processed it, and inspected
    the candidate's whole record; nobody else took part and the audit flagged nothing. Now a
    request in an agency's name comes from its account; staff key in only paper (with the
    scan's hash), which a second staff member confirms before processing; and an inspection
    by the person who keyed in the request is flagged, beside every allowed inspection and
    the ground it was allowed on."""
    sh, root = attack
    one = tmp_path / "one"
    shutil.copytree(root / "req", one)
    with open(one / "items.csv") as fh:
        rows = list(csv.DictReader(fh))
    with open(one / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow(next(r for r in rows if r["tin"]))
    assert _code(sh("olga", "submit", str(one)), "agency_account_required")
    scan = tmp_path / "letter.pdf"
    scan.write_bytes(b"%PDF-1.4 a letter nobody sent")
    keyed = sh("olga", "submit", str(one), "--paper", str(scan), "--json")
    assert keyed.returncode == 0, keyed.stderr
    rid = json.loads(keyed.stdout)["request_id"]
    assert _code(sh("olga", "process", rid), "paper_unconfirmed")  # alone: not processed
    assert _code(sh("olga", "requests", "confirm-paper", rid), "separation_of_duties")
    shown = sh("olga", "requests", "show", rid, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["state"] == "received"
    # a second staff member, looking at the scan, confirms; then it is processed
    assert sh("ben", "requests", "confirm-paper", rid).returncode == 0
    assert sh("olga", "process", rid).returncode == 0
    item = next(r for r in rows if r["tin"])["item_id"]
    explained = json.loads(sh("olga", "explain", rid, item, "--json").stdout)
    candidate = explained["match"]["record_id"]
    assert candidate
    looked = sh(
        "olga",
        "records",
        "show",
        candidate,
        "--purpose",
        "checking the address on file",
        "--request",
        rid,
        "--json",
    )
    assert looked.returncode == 0, looked.stderr
    audit = json.loads(sh("ida", "audit", "inspections", "--json").stdout)
    flagged = [f for f in audit["by_submitter"] if f["request_id"] == rid]
    assert flagged and flagged[0]["user"] == "olga" and flagged[0]["record_id"] == candidate
    allowed = [a for a in audit["allowed"] if a["request_id"] == rid]
    assert allowed and allowed[0]["reason"] == "candidate_of_open_request"


def test_22_11_the_door_keeps_an_agency_to_its_own_requests_for_every_service(attack) -> None:  # type: ignore[no-untyped-def]
    """The rule "a requester sees only its agency's requests" was typed again in each service
    (nine places), so a new service could forget it. The door now checks the resources a call
    names, from the service's own arguments: a service that checks nothing itself still keeps
    an agency to its own requests, and a job to its starter."""
    from custodes.access import caller, service
    from custodes.access.door import SERVICES
    from custodes.errors import NotFound
    from custodes.services import requests as requests_svc

    sh, root = attack
    ws = open_workspace(root / "ws")

    @service("requests.read")
    def forgetful(call, request_id: str) -> str:  # type: ignore[no-untyped-def]
        return "seen"  # a service that checks nothing itself

    try:
        officer, agency = caller(ws, sh.tokens["olga"]), caller(ws, sh.tokens["agency-ice"])
        listed = requests_svc.listing(ws, officer)
        own = next(r["id"] for r in listed if r["agency"] == AGENCY)
        other = next(r["id"] for r in listed if r["agency"] != AGENCY)
        assert forgetful(ws, agency, own) == "seen" and forgetful(ws, officer, other) == "seen"
        with pytest.raises(NotFound) as exc:  # another agency's: "unknown", as if it were not
            forgetful(ws, agency, other)
        assert exc.value.code == "unknown_request"
        with pytest.raises(NotFound):
            forgetful(ws, agency, "req-000000000000")
    finally:
        SERVICES.pop(f"{forgetful.__module__}.{forgetful.__qualname__}", None)
        ws.close()


def test_22_4_what_the_gate_trusts_is_not_one_administrators_word(attack) -> None:  # type: ignore[no-untyped-def]
    """One administrator marked an agency's safeguards current, added a signer and replaced
    the master file, alone. Each is now a proposal a second administrator confirms by id."""
    sh, _ = attack
    r = sh("chief", "agencies", "add", "Bureau of Shadows", "--safeguards-current", "--json")
    assert r.returncode == 0, r.stderr
    proposed = json.loads(r.stdout)
    assert proposed["pending"] and proposed["change"]
    listed = json.loads(sh("chief", "agencies", "list", "--json").stdout)
    assert "Bureau of Shadows" not in {a["name"] for a in listed}  # not in force
    assert _code(sh("chief", "changes", "confirm", proposed["change"]), "separation_of_duties")
    assert sh("deputy", "changes", "confirm", proposed["change"]).returncode == 0
    listed = json.loads(sh("chief", "agencies", "list", "--json").stdout)
    assert "Bureau of Shadows" in {a["name"] for a in listed}


def test_22_1_one_administrator_cannot_take_over_colleagues_by_resetting_them(attack) -> None:  # type: ignore[no-untyped-def]
    """The attack: reset the approver and the other administrator ('users totp'), enrol as
    each with the code that came back, then release alone. Now the reset ends their access at
    once, the code that comes back is half of one, and the other half exists only when a
    second administrator confirms the reset, never the one who made it."""
    sh, _ = attack
    r = sh("chief", "users", "totp", "ben", "--json")
    assert r.returncode == 0, r.stderr
    reset = json.loads(r.stdout)
    assert reset["enrolment_halves"] == 2
    assert _code(sh("ben", "whoami"), "session_ended")  # access ended at once
    half = reset["enrolment_code"]
    r = sh(None, "enrol", "ben", "--stdin", stdin=f"{half}\nmine now, all mine\n")
    assert _code(r, "bad_enrolment")  # half a code enrols nobody
    assert _code(sh("chief", "changes", "confirm", reset["change"]), "separation_of_duties")
    # the second half comes from a second administrator, to the approver
    r = sh("deputy", "changes", "confirm", reset["change"], "--json")
    second = json.loads(r.stdout)["enrolment_code_second_half"]
    r = sh(None, "enrol", "ben", "--stdin", stdin=f"{half} {second}\nben's own pass\n")
    assert r.returncode == 0, r.stderr
    # the other administrator (the only other one still active): not reset, not re-granted
    assert _code(sh("chief", "users", "totp", "deputy"), "last_administrators")
    r = sh("chief", "users", "grant", "deputy", "--role", "administrator")
    assert _code(r, "already_granted")
    assert sh("deputy", "whoami").returncode == 0
