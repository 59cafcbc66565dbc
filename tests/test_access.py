"""Access: bootstrap, sign-in, the role × action table, immediate suspension (including an
action in flight), two-administrator reinstatement, expiring grants, separation of duties."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custodes.access import service as acc
from custodes.errors import ConflictError, InputError
from custodes.ledger import log
from custodes.ledger.events import Event
from custodes.store.tables import access_log, sessions
from custodes.workspace import Workspace

PW = "correct horse battery"


@pytest.fixture
def admin(workspace: Workspace) -> Iterator[acc.Actor]:
    acc.create_user(workspace, "root-admin", PW, ["administrator"], by=None)
    token = acc.login(workspace, "root-admin", PW)
    with workspace.engine.connect() as conn:
        yield acc.authenticate(conn, token)


def _user(ws: Workspace, admin: acc.Actor, name: str, *roles: str, **kw) -> str:
    acc.create_user(ws, name, PW, list(roles), by=admin, **kw)
    return acc.login(ws, name, PW)


def test_first_user_is_the_only_bootstrap(workspace: Workspace) -> None:
    with pytest.raises(InputError) as exc:
        acc.create_user(workspace, "boss", PW, ["officer"], by=None)
    assert exc.value.code == "bad_role"
    with pytest.raises(InputError) as exc:
        acc.create_user(workspace, "boss", "short", ["administrator"], by=None)
    assert exc.value.code == "weak_password"
    with pytest.raises(InputError) as exc:
        acc.create_user(workspace, "Bad Name!", PW, ["administrator"], by=None)
    assert exc.value.code == "bad_user_name"
    acc.create_user(workspace, "boss", PW, ["administrator"], by=None)
    with pytest.raises(acc.AccessDenied):  # a second bootstrap is refused
        acc.create_user(workspace, "other", PW, ["administrator"], by=None)


def test_login_and_refusals_are_recorded(workspace: Workspace, admin: acc.Actor) -> None:
    for name, pw in (("root-admin", "wrong password!!"), ("nobody", PW)):
        with pytest.raises(acc.AccessDenied) as exc:
            acc.login(workspace, name, pw)
        assert exc.value.code == "bad_credentials"
        assert "wrong password" in exc.value.message  # same words for both: no user probing
    for token in (None, "not-a-token"):
        with pytest.raises(acc.AccessDenied) as exc:
            acc.authorize(workspace, token, "process")
        assert exc.value.code in ("not_signed_in", "session_ended")
    with workspace.engine.connect() as conn:
        refused = conn.execute(
            sa.select(sa.func.count()).select_from(access_log).where(~access_log.c.allowed)
        ).scalar()
    assert refused == 4
    token = acc.login(workspace, "root-admin", PW)
    assert acc.logout(workspace, token)
    with pytest.raises(acc.AccessDenied) as exc:
        acc.authorize(workspace, token, "users.read")
    assert exc.value.code == "session_ended"


def test_role_action_table(workspace: Workspace, admin: acc.Actor) -> None:
    tokens = {}
    for role in acc.ROLES:
        if role == "administrator":
            continue
        tokens[role] = _user(workspace, admin, role.replace("_", "-"), role)
    tokens["administrator"] = acc.login(workspace, "root-admin", PW)
    for action, allowed in acc.ACTIONS.items():
        for role, token in tokens.items():
            if role in allowed:
                assert acc.authorize(workspace, token, action).name
            else:
                with pytest.raises(acc.AccessDenied) as exc:
                    acc.authorize(workspace, token, action)
                assert exc.value.code == "forbidden" and action.split(".")[0] in exc.value.message
    with workspace.engine.connect() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(access_log)).scalar()
    assert logged >= len(acc.ACTIONS) * len(tokens)


def test_suspension_is_immediate(workspace: Workspace, admin: acc.Actor) -> None:
    token = _user(workspace, admin, "clerk", "officer")
    other = acc.issue_key(workspace, "clerk", by=admin, days=30)  # an API key is a session too
    assert acc.authorize(workspace, token, "process").name == "clerk"
    assert acc.authorize(workspace, other, "process").name == "clerk"
    with pytest.raises(InputError):
        acc.suspend(workspace, "clerk", " ", by=admin)
    _user(workspace, admin, "ben", "approver")
    with workspace.engine.connect() as conn:
        assert acc.active_holders(conn, "approver") == {"ben"}
    acc.suspend(workspace, "ben", "on leave", by=admin)
    with workspace.engine.connect() as conn:  # suspending an approver unlocks nothing
        assert acc.active_holders(conn, "approver") == set()
    res = acc.suspend(workspace, "clerk", "left the agency", by=admin)
    assert res["sessions_ended"] == 2
    for t in (token, other):
        with pytest.raises(acc.AccessDenied) as exc:
            acc.authorize(workspace, t, "process")
        assert exc.value.code == "session_ended"
    with pytest.raises(acc.AccessDenied) as exc:
        acc.login(workspace, "clerk", PW)
    assert exc.value.code == "suspended"
    with pytest.raises(ConflictError):
        acc.suspend(workspace, "clerk", "again", by=admin)
    with pytest.raises(ConflictError) as exc:  # no new key for a suspended user
        acc.issue_key(workspace, "clerk", by=admin)
    assert exc.value.code == "suspended"
    for call in (
        lambda: acc.suspend(workspace, "nobody", "r", by=admin),
        lambda: acc.grant(workspace, "nobody", "officer", by=admin, basis="b"),
        lambda: acc.issue_key(workspace, "nobody", by=admin),
        lambda: acc.reinstate(workspace, "nobody", by=admin),
    ):
        with pytest.raises(InputError) as exc:
            call()
        assert exc.value.code == "unknown_user"


def test_an_action_in_flight_cannot_commit_after_suspension(
    workspace: Workspace, admin: acc.Actor
) -> None:
    token = _user(workspace, admin, "clerk", "officer")
    acc.authorize(workspace, token, "process")  # allowed when it starts
    started, suspended = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def action() -> None:
        reset = log.append_guard.set(acc.session_guard(token))
        try:
            started.set()
            suspended.wait(10)
            with workspace.engine.begin() as conn:
                log.append(conn, [Event("request.transition", actor="clerk")])
            outcome["ok"] = True
        except acc.AccessDenied as exc:
            outcome["refused"] = exc.code
        finally:
            log.append_guard.reset(reset)

    t = threading.Thread(target=action)
    t.start()
    started.wait(10)
    acc.suspend(workspace, "clerk", "insider risk", by=admin)
    suspended.set()
    t.join(20)
    assert outcome == {"refused": "session_ended"}
    with workspace.engine.connect() as conn:
        actors = conn.execute(sa.text("SELECT count(*) FROM ledger_events WHERE actor = 'clerk'"))
        assert actors.scalar() == 0


def test_reinstatement_needs_a_second_administrator(workspace: Workspace, admin: acc.Actor) -> None:
    _user(workspace, admin, "second-admin", "administrator")
    with workspace.engine.connect() as conn:
        second = acc.authenticate(conn, acc.login(workspace, "second-admin", PW))
    _user(workspace, admin, "clerk", "officer")
    acc.suspend(workspace, "clerk", "review", by=admin)
    _user(workspace, admin, "active-one", "officer")
    with pytest.raises(ConflictError) as exc:
        acc.reinstate(workspace, "active-one", by=admin)
    assert exc.value.code == "not_suspended"
    first = acc.reinstate(workspace, "clerk", by=admin)
    assert first["status"] == "suspended" and "second administrator" in first["pending"]
    with pytest.raises(acc.AccessDenied) as exc:
        acc.reinstate(workspace, "clerk", by=admin)
    assert exc.value.code == "separation_of_duties"
    assert acc.reinstate(workspace, "clerk", by=second)["status"] == "active"
    assert acc.login(workspace, "clerk", PW)


def test_expired_grant_behaves_like_a_suspended_role(
    workspace: Workspace, admin: acc.Actor
) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=120)
    token = _user(workspace, admin, "detailee", "officer", basis="detail order 26-04", expires=soon)
    assert acc.authorize(workspace, token, "process")
    with workspace.engine.begin() as conn:  # day 121
        conn.execute(
            sa.text("UPDATE grants SET expires_at = :t WHERE user_name = 'detailee'"),
            {"t": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)},
        )
    with pytest.raises(acc.AccessDenied) as exc:
        acc.authorize(workspace, token, "process")
    assert exc.value.code == "forbidden"
    listed = {u["user"]: u for u in acc.listing(workspace)}
    g = listed["detailee"]["grants"][0]
    assert g["basis"] == "detail order 26-04" and g["expired"] is True


def test_separation_of_duties(workspace: Workspace, admin: acc.Actor) -> None:
    with pytest.raises(ConflictError) as exc:
        acc.create_user(workspace, "boss2", PW, ["administrator", "approver"], by=admin)
    assert exc.value.code == "separation_of_duties"
    with pytest.raises(acc.AccessDenied) as exc:
        acc.grant(workspace, "root-admin", "officer", by=admin, basis="self")
    assert exc.value.code == "separation_of_duties"
    _user(workspace, admin, "agency-x", "requester")
    with pytest.raises(ConflictError):
        acc.grant(workspace, "agency-x", "officer", by=admin, basis="b")
    token = _user(workspace, admin, "clerk", "officer")
    with workspace.engine.connect() as conn:
        clerk = acc.authenticate(conn, token)
    with pytest.raises(acc.AccessDenied) as exc:  # an officer cannot create users
        acc.create_user(workspace, "mine", PW, ["approver"], by=clerk)
    assert exc.value.code == "forbidden"


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.sets(st.sampled_from(acc.ROLES), min_size=1, max_size=3), min_size=1, max_size=4)
)
def test_no_role_assignment_breaks_separation(workspace: Workspace, role_sets) -> None:
    """Whatever roles are asked for, nobody ends up holding an exclusive pair."""
    with workspace.engine.begin() as conn:
        for t in ("grants", "sessions", "users"):
            conn.execute(sa.text(f"DELETE FROM {t}"))
    acc.create_user(workspace, "root-admin", PW, ["administrator"], by=None)
    with workspace.engine.connect() as conn:
        admin = acc.authenticate(conn, acc.login(workspace, "root-admin", PW))
    for i, roles in enumerate(role_sets):
        try:
            acc.create_user(workspace, f"u{i}", PW, sorted(roles), by=admin)
        except ConflictError:
            assert any(pair <= roles for pair in acc.EXCLUSIVE)
        for extra in acc.ROLES:
            with contextlib.suppress(ConflictError, InputError):
                acc.grant(workspace, f"u{i}", extra, by=admin, basis="b")
    with workspace.engine.connect() as conn:
        for u in acc.listing(workspace):
            held = acc.roles_of(conn, u["user"])
            assert not any(pair <= held for pair in acc.EXCLUSIVE), (u["user"], held)
        assert conn.execute(sa.select(sa.func.count()).select_from(sessions)).scalar() >= 1


# --- the command line -------------------------------------------------------------------------

# Commands that need no session: they create the workspace or the first administrator, sign
# in or out, or read only public material (rule files, an exported ledger, a witness's own key).
OPEN_COMMANDS = {
    "init",
    "login",
    "logout",
    "rules list",
    "rules show",
    "rules lint",
    "witness keygen",
    "witness serve",
    "ledger verify",  # an exported ledger offline; auditing the store signs in
}


def test_every_command_signs_in_for_a_listed_action() -> None:
    import inspect
    import re

    import typer.main

    from custodes.cli import app

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd.callback

    seen = 0
    for name, callback in walk(typer.main.get_command(app), []):
        source = inspect.getsource(inspect.unwrap(callback))
        actions = re.findall(r'_open\(home, "([a-z.]+)"', source)
        actions += re.findall(r'"(review\.[a-z]+)"', source)
        if "_registry_list(" in source:  # the shared listing helper signs in for reading
            actions.append("registry.read")
        if name in OPEN_COMMANDS and name != "ledger verify":
            assert "_open(" not in source, name
            continue
        assert actions, f"{name} does not sign in"
        assert all(a in acc.ACTIONS for a in actions), (name, actions)
        seen += 1
    assert seen > 35


def test_cli_sign_in_roles_and_suspension(tmp_path, sign_in) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from custodes.cli import app

    runner = CliRunner()
    home = ["--home", str(tmp_path / "w")]
    r = runner.invoke(
        app, ["init", *home, "--admin", "chief", "--password-stdin", "--json"], input=PW + "\n"
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["admin"] == "chief"
    r = runner.invoke(app, ["status", *home])
    assert r.exit_code == 2 and "not_signed_in" in r.output
    r = runner.invoke(app, ["login", "chief", "--password-stdin", *home], input="nope\n")
    assert r.exit_code == 2 and "bad_credentials" in r.output
    r = runner.invoke(app, ["login", "chief", "--password-stdin", *home, "--json"], input=PW + "\n")
    chief = {"CUSTODES_SESSION": json.loads(r.stdout)["session"]}
    r = runner.invoke(
        app,
        [
            "users",
            "add",
            "olga",
            "--role",
            "officer",
            "--password-stdin",
            "--basis",
            "detail order 7",
            "--expires",
            "2099-12-31",
            *home,
        ],
        input=PW + "\n",
        env=chief,
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "users",
            "add",
            "self",
            "--role",
            "administrator",
            "--role",
            "approver",
            "--password-stdin",
            *home,
        ],
        input=PW + "\n",
        env=chief,
    )
    assert r.exit_code == 2 and "separation_of_duties" in r.output
    r = runner.invoke(app, ["users", "grant", "chief", "--role", "officer", *home], env=chief)
    assert r.exit_code == 2 and "separation_of_duties" in r.output
    r = runner.invoke(app, ["login", "olga", "--password-stdin", *home, "--json"], input=PW + "\n")
    olga = {"CUSTODES_SESSION": json.loads(r.stdout)["session"]}
    r = runner.invoke(app, ["users", "list", *home], env=olga)
    assert r.exit_code == 2 and "forbidden" in r.output
    r = runner.invoke(app, ["requests", "list", *home, "--json"], env=olga)
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    r = runner.invoke(app, ["users", "list", *home, "--json"], env=chief)
    olga_row = next(u for u in json.loads(r.stdout) if u["user"] == "olga")
    assert olga_row["grants"][0]["basis"] == "detail order 7"
    r = runner.invoke(app, ["users", "suspend", "olga", "--reason", "left", *home], env=chief)
    assert r.exit_code == 0 and "1 session(s) ended" in r.output
    r = runner.invoke(app, ["requests", "list", *home], env=olga)
    assert r.exit_code == 2 and "session_ended" in r.output
    r = runner.invoke(app, ["users", "reinstate", "olga", *home], env=chief)
    assert r.exit_code == 0 and "second administrator" in r.output
    # The stored session: login without --json keeps it for this shell user; logout ends it.
    r = runner.invoke(app, ["login", "chief", "--password-stdin", *home], input=PW + "\n")
    assert r.exit_code == 0
    assert runner.invoke(app, ["requests", "list", *home]).exit_code == 2  # chief: not a role
    assert runner.invoke(app, ["users", "list", *home]).exit_code == 0
    assert runner.invoke(app, ["logout", *home]).exit_code == 0
    r = runner.invoke(app, ["users", "list", *home])
    assert r.exit_code == 2 and "not_signed_in" in r.output


def test_second_factor(workspace: Workspace, admin: acc.Actor, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import urllib.parse

    import pyotp

    _user(workspace, admin, "ben", "approver")
    monkeypatch.setenv(acc.TOTP_ROLES_ENV, "approver")
    with pytest.raises(acc.AccessDenied) as exc:
        acc.login(workspace, "ben", PW)
    assert exc.value.code == "totp_required"
    uri = acc.enroll_totp(workspace, "ben", by=admin)
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
    for code in (None, "000000"):
        with pytest.raises(acc.AccessDenied) as exc:
            acc.login(workspace, "ben", PW, totp=code)
        assert exc.value.code == "bad_totp"
    assert acc.login(workspace, "ben", PW, totp=pyotp.TOTP(secret).now())


def test_inspection_trail(master_ws: Workspace, tmp_path, sign_in) -> None:  # type: ignore[no-untyped-def]
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from custodes.cli import app
    from custodes.records import master
    from custodes.requests.generator import generate_request
    from custodes.requests.intake import submit

    runner = CliRunner()
    envs = sign_in(master_ws.home, master_ws.store_url)
    home = ["--home", str(master_ws.home)]
    records = pq.read_table(master.current(master_ws).path("people"), columns=["record_id"])
    rec, other = records["record_id"][0].as_py(), records["record_id"][1].as_py()
    generate_request(master_ws, "irc-6103-i-2", 20, seed=1, out=tmp_path / "req")
    rid = submit(master_ws, tmp_path / "req").request_id
    officer, auditor = envs["officer"], envs["auditor"]

    def show(*args: str, env=officer):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["records", "show", *args, *home, "--json"], env=env)

    r = show(rec, "--purpose", "locate for case review", "--request", rid)
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["record_id"] == rec and shown["addresses"]
    assert show(rec, "--purpose", "curious").exit_code == 2  # purpose too short
    r = show(rec, "--purpose", "just looking around here")  # no request linked
    assert r.exit_code == 2 and "no_case" in r.output
    r = show("rec-nope", "--purpose", "locate for case review", "--request", rid)
    assert r.exit_code == 2 and "unknown_record" in r.output
    r = show(rec, "--purpose", "locate for case review", "--request", rid, env=envs["approver"])
    assert r.exit_code == 2 and "forbidden" in r.output
    r = runner.invoke(
        app,
        ["records", "flag-sensitive", other, "--reason", " ", *home],
        env=envs["administrator"],
    )
    assert r.exit_code == 2 and "bad_argument" in r.output
    r = runner.invoke(
        app,
        ["records", "flag-sensitive", other, "--reason", "public figure", *home],
        env=envs["administrator"],
    )
    assert r.exit_code == 0, r.output
    assert show(other, "--purpose", "locate for case review", "--request", rid).exit_code == 0
    r = runner.invoke(app, ["audit", "inspections", "--spike", "1", *home, "--json"], env=auditor)
    rep = json.loads(r.stdout)
    assert rep["inspections"] == 5  # the approver's attempt never reached the record
    assert [x["reason"] for x in rep["without_open_request"]] == ["no_case"]
    assert [x["record_id"] for x in rep["sensitive"]] == [other]
    assert rep["volume_spikes"][0]["inspections"] == 2
    assert rep["actions_by_suspended_users"] == []
    r = runner.invoke(app, ["audit", "inspections", *home], env=officer)
    assert r.exit_code == 2 and "forbidden" in r.output
    with master_ws.engine.connect() as conn:
        types = conn.execute(sa.text("SELECT type FROM ledger_events")).scalars().all()
    assert types.count("record.inspected") == 2
    assert types.count("record.inspection_refused") == 3


def test_rule_set_change_needs_a_second_steward(master_ws: Workspace, tmp_path, sign_in) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil

    import yaml
    from typer.testing import CliRunner

    from custodes.cli import app
    from custodes.rules.active import in_force
    from custodes.rules.ruleset import REFERENCE, load

    runner = CliRunner()
    envs = sign_in(master_ws.home, master_ws.store_url)
    steward = envs["rule_steward"]
    with master_ws.engine.connect() as conn:
        admin = acc.authenticate(conn, envs["administrator"]["CUSTODES_SESSION"])
    acc.create_user(master_ws, "steward-two", PW, ["rule_steward"], by=admin)
    second = {**steward, "CUSTODES_SESSION": acc.login(master_ws, "steward-two", PW)}
    home = ["--home", str(master_ws.home)]
    changed = tmp_path / "rules"
    shutil.copytree(REFERENCE, changed)
    doc = yaml.safe_load((changed / "ruleset.yaml").read_text())
    doc["parameters"]["official_case_cap"]["value"] = 100  # counsel tightens the cap
    (changed / "ruleset.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    before = in_force(master_ws).sha256
    assert before == load().sha256
    r = runner.invoke(app, ["rules", "propose", str(changed), *home, "--json"], env=envs["officer"])
    assert r.exit_code == 2 and "forbidden" in r.output
    r = runner.invoke(app, ["rules", "propose", str(changed), *home, "--json"], env=steward)
    assert r.exit_code == 0, r.output
    sha = json.loads(r.stdout)["ruleset_sha256"]
    assert in_force(master_ws).sha256 == before  # proposed is not in force
    r = runner.invoke(app, ["rules", "propose", str(changed), *home], env=second)
    assert r.exit_code == 2 and "already_proposed" in r.output
    r = runner.invoke(app, ["rules", "approve", "ffff", *home], env=second)
    assert r.exit_code == 2 and "unknown_ruleset" in r.output
    r = runner.invoke(app, ["rules", "approve", sha[:12], *home], env=steward)
    assert r.exit_code == 2 and "separation_of_duties" in r.output
    r = runner.invoke(app, ["rules", "approve", sha[:12], *home], env=second)
    assert r.exit_code == 0, r.output
    assert in_force(master_ws).sha256 == sha
    assert in_force(master_ws).parameters["official_case_cap"] == 100
    r = runner.invoke(app, ["rules", "changes", *home, "--json"], env=second)
    assert [c["state"] for c in json.loads(r.stdout)] == ["active"]
    # The approved copy in the workspace cannot be edited behind the stewards' backs.
    kept = master_ws.home / "rules" / sha / "ruleset.yaml"
    kept.write_text(kept.read_text().replace("100", "5000"))
    with pytest.raises(ConflictError) as exc:
        in_force(master_ws)
    assert exc.value.code == "ruleset_tampered"


def test_a_long_job_stops_when_its_actor_is_suspended(master_ws: Workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The CLI's progress callback re-checks the session at every chunk; here the actor is
    suspended after the first chunk and the link stops before writing anything."""
    from custodes.matching import service as matching
    from custodes.requests.generator import generate_request
    from custodes.requests.intake import submit

    acc.create_user(master_ws, "chief", PW, ["administrator"], by=None)
    with master_ws.engine.connect() as conn:
        chief = acc.authenticate(conn, acc.login(master_ws, "chief", PW))
    token = _user(master_ws, chief, "clerk", "officer")
    generate_request(master_ws, "irc-6103-i-2", 300, seed=2, out=tmp_path / "req")
    rid = submit(master_ws, tmp_path / "req").request_id
    matching.train(master_ws, rid)
    seen: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        with master_ws.engine.connect() as conn:
            acc.authenticate(conn, token)  # what the CLI's _recheck does
        seen.append(stage)
        if stage == "prepare":
            acc.suspend(master_ws, "clerk", "mid-run", by=chief)

    with pytest.raises(acc.AccessDenied) as exc:
        matching.link(master_ws, rid, progress=progress)
    assert exc.value.code == "session_ended" and seen == ["prepare"]
    assert not (master_ws.home / "requests" / rid / "match" / "linked.parquet").exists()
