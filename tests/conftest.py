"""Shared fixtures: real workspaces on SQLite and on the local PostgreSQL server, and real
signed-in users made through the services (`custodes.synthetic.staff`)."""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from custodes.access import CheckedCall, enter
from custodes.services import records as records_svc
from custodes.services import workspace as ws_svc
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace, open_workspace

# Sessions built once per run (the templates') are reused for its whole length: the
# inactivity timeout (15 minutes by default) is lengthened for the tests, and tested itself by
# test_access_sessions.py::test_an_idle_session_ends.
os.environ.setdefault("CUSTODES_IDLE_MINUTES", "720")
# The tests' Spark data are hundreds of rows: two shuffle partitions, not eight (a quarter of
# the tasks, the same answers; tests/test_spark_engine.py compares them item by item).
os.environ.setdefault("CUSTODES_SPARK_PARTITIONS", "2")
# The tests' JVMs (the Spark driver, the standalone cluster's master, workers and executors, each
# launcher) live for seconds to minutes on a few hundred rows: most of their CPU went to the
# optimizing JIT compiler (C2) and parallel GC threads, work that never pays back so soon. The
# client compiler only and one GC thread: the same programs and answers, test_spark_engine.py
# in 0.63× the CPU (375.7 → 237.7 s, measured in a cgroup; docs/performance.md). Every JVM
# reads this variable (and says so on its stderr); custodes itself sets no JVM option.
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

# The fixtures that the parts of a split test module share (a module each, registered here so
# that every part finds them without importing them).
pytest_plugins = (
    "shared_api",
    "shared_attacks",
    "shared_ledger",
    "shared_matching",
    "shared_pipeline",
    "shared_web",
)

PG_ADMIN_URL = os.environ.get(
    "CUSTODES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# The password every test user sets: a constant for the tests only (custodes itself fixes none;
# its helpers make a random one unless given this).
PASSWORD = "correct horse battery staple"
TEST_PASSWORD = PASSWORD


# The files that start a Spark session in the test process: under `make test` (pytest-xdist,
# `--dist loadfile`) they go to one worker as one unit, one after the other, and share that
# session (one JVM started and warmed instead of one per worker). test_spark_engine.py runs
# last of them: its standalone cluster stops the session at the end.
SPARK_FILES = (
    "test_engines_alike.py",
    "test_intake_checks.py",
    "test_matching_accuracy.py",
    "test_rules_engines.py",
    "test_spark_engine.py",
)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile`, whole files to each worker in their order, with the Spark files one
    unit. (`--dist loadgroup` with `xdist_group` marks would say the same, but pytest-xdist 3.8
    suffixes the group to `item._nodeid`, which pytest 9 no longer reads: the groups are
    silently ignored and the tests spread one by one.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SparkFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "spark" if Path(scope).name in SPARK_FILES else scope

    return SparkFilesTogether(config, log)  # type: ignore[arg-type]


@pytest.fixture(scope="session", autouse=True)
def _cli_built_once() -> Iterator[None]:
    """Typer's test runner builds the Click group from the Typer app at every invocation,
    inspecting every command's signature (a fifth of the suite's CPU went there, measured with
    py-spy): for custodes' app it takes the group the root keeps (`root.click_group`, built
    again when a module registers more), the one the command line itself uses."""
    import typer.testing

    from custodes.cli import root

    build = typer.testing._get_command

    def built(typer_app: Any) -> Any:
        return root.click_group() if typer_app is root.app else build(typer_app)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", built)
        yield


@pytest.fixture(scope="session", autouse=True)
def _passwords_hashed_once() -> Iterator[None]:
    """Each password's argon2id hash made once per run (full cost, a real salted hash) and
    stored for every user who sets that password, and each right password checked against a
    hash once per run: the test password is set by a dozen users, and signed in with as many
    times, in each test that builds its own staff, and every enrolment attempt hashes its
    password before the code is checked, each a full-cost hash or check (≈ 0.2 s of CPU). A
    password too weak is still refused every time, and a wrong password, a missing hash (the
    dummy check) and the first check of each right one still run argon2 in full."""
    from custodes.access import credentials

    hash_password, password_ok = credentials.hash_password, credentials.password_ok
    made: dict[str, str] = {}
    verified: set[tuple[str, str]] = set()

    def hash_once(password: str) -> str:
        if password not in made:
            made[password] = hash_password(password)
        return made[password]

    def ok_once(stored: str | None, password: str) -> bool:
        if stored is not None and (stored, password) in verified:
            return True
        ok = password_ok(stored, password)
        if ok and stored is not None:
            verified.add((stored, password))
        return ok

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(credentials, "hash_password", hash_once)
        mp.setattr(credentials, "password_ok", ok_once)
        yield


def make_workspace(home: Path, store_url: str | None = None) -> Workspace:
    """A new workspace made the way 'custodes init' makes it (store, secrets, ledger key)."""
    ws_svc.init(home, store_url, origin="custodes.test/ledger")
    return open_workspace(home, store_url)


def keyed_in(ws: Workspace, keyer, confirmer, folder: Path):  # type: ignore[no-untyped-def]
    """A request received on paper: keyed in by one staff member with the scan's hash, and
    confirmed against the scan by a second (the way staff enter a request; a request in an
    agency's name otherwise comes from the agency's own account)."""
    import hashlib

    from custodes.services import requests as requests_svc

    scan = hashlib.sha256(f"scan of {folder}".encode()).hexdigest()
    sub = requests_svc.submit(ws, keyer, folder, paper_sha256=scan)
    if not sub.duplicate:
        requests_svc.confirm_paper(ws, confirmer, sub.request_id)
    return sub


def one_for_review(folder: Path, n: int = 1) -> None:
    """Move the date of birth of `n` no-TIN, undamaged items of a generated request thirty
    years back (a generation: never read as a typo without a TIN), so that processing sends
    exactly that kind of item to review. (A blank date of birth no longer does: an item with
    only a name and an address is not identified, never reviewed.)"""
    import csv

    with open(folder / "truth.csv") as fh:
        truth = {r["item_id"]: r for r in csv.DictReader(fh)}
    with open(folder / "items.csv") as fh:
        rows = list(csv.DictReader(fh))
    chosen = [r for r in rows if truth[r["item_id"]]["defect"] == "none" and not r["tin"]][:n]
    for row in chosen:
        row["dob"] = f"{int(row['dob'][:4]) - 30}{row['dob'][4:]}"
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def workspace(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """A new workspace: a copy of one made once per run by `custodes init`'s service (with its
    staff when the test also asks for `staff`), so a test pays a folder copy instead of the
    keys, the migrations and a dozen full-cost password hashes."""
    monkeypatch.delenv("CUSTODES_STORE_URL", raising=False)
    name = "_staffed_template" if "staff" in request.fixturenames else "_empty_template"
    template: Template = request.getfixturevalue(name)
    home = tmp_path / "ws"
    shutil.copytree(template.home, home)
    ws = open_workspace(home)
    yield ws
    ws.close()


@pytest.fixture
def staff(request: pytest.FixtureRequest, workspace: Workspace) -> Staff:
    """Two administrators and one signed-in user per other role, in `workspace` (made once per
    run in the template `workspace` copies: the copies share the sessions)."""
    t: Template = request.getfixturevalue("_staffed_template")
    return Staff(workspace, dict(t.callers.callers), t.callers.password, dict(t.callers.keys))


@pytest.fixture
def fresh_staff(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], AbstractContextManager[Staff]]:
    """For a hypothesis test: `with fresh_staff() as staff:` gives each example its own copy
    of the staffed workspace, so no example sees what an earlier one left (a function-scoped
    fixture is shared by all of a test's examples)."""
    monkeypatch.delenv("CUSTODES_STORE_URL", raising=False)
    t: Template = request.getfixturevalue("_staffed_template")
    examples = itertools.count()

    @contextmanager
    def make() -> Iterator[Staff]:
        home = tmp_path / f"example-{next(examples)}"
        shutil.copytree(t.home, home)
        ws = open_workspace(home)
        try:
            yield Staff(ws, dict(t.callers.callers), t.callers.password, dict(t.callers.keys))
        finally:
            ws.close()
            shutil.rmtree(home)

    return make


@dataclass
class Template:
    home: Path
    db: Path
    callers: Staff


def _in_folder_template(root: Path, with_staff: bool) -> Template:
    """A workspace whose store is the SQLite file inside its folder (as `workspace` gives),
    closed so that copying the folder copies a consistent store."""
    home = root / "ws"
    with pytest.MonkeyPatch.context() as mp:  # whatever test asks first, the same template
        for name in os.environ:
            if name.startswith("CUSTODES_") and name != "CUSTODES_IDLE_MINUTES":
                mp.delenv(name)
        ws = make_workspace(home)
        people = staff_mod.one_per_role(ws, password=PASSWORD) if with_staff else Staff(ws)
        ws.close()
    return Template(home, home / "custodes.db", people)


@pytest.fixture(scope="session")
def _empty_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return _in_folder_template(tmp_path_factory.mktemp("empty-template"), with_staff=False)


@pytest.fixture(scope="session")
def _staffed_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return _in_folder_template(tmp_path_factory.mktemp("staffed-template"), with_staff=True)


@pytest.fixture(scope="session")
def _master_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A 3,000-person synthetic workspace with its staff, built once and copied per test
    (the copies share the sessions, so the same callers work in every copy)."""
    root = tmp_path_factory.mktemp("template")
    home, db = root / "ws", root / "ws.db"
    ws = make_workspace(home, f"sqlite:///{db}")
    people = staff_mod.one_per_role(ws, password=PASSWORD)
    records_svc.generate(ws, people.admin, 3000, 11)
    ws.close()
    return Template(home, db, people)


def copy_template(t: Template, dest: Path) -> tuple[Workspace, Staff]:
    home = dest / "master-ws"
    shutil.copytree(t.home, home)
    shutil.copy(t.db, dest / "master-ws.db")
    ws = open_workspace(home, f"sqlite:///{dest / 'master-ws.db'}")
    return ws, Staff(ws, dict(t.callers.callers), t.callers.password, dict(t.callers.keys))


@pytest.fixture
def master(_master_template: Template, tmp_path: Path) -> Iterator[tuple[Workspace, Staff]]:
    ws, people = copy_template(_master_template, tmp_path)
    yield ws, people
    ws.close()


@pytest.fixture
def master_ws(master: tuple[Workspace, Staff]) -> Workspace:
    return master[0]


@pytest.fixture
def people(master: tuple[Workspace, Staff]) -> Staff:
    """The callers of `master_ws` (admin, admin2, officer, approver, rule-steward, auditor,
    requester)."""
    return master[1]


@pytest.fixture
def call() -> Callable[[Workspace, Staff | object, str, str], CheckedCall]:
    """call(ws, staff, name, action): a call through the door, for tests of a room."""

    def make(ws: Workspace, people: Staff, name: str, action: str) -> CheckedCall:
        return enter(ws, people[name], action)

    return make  # type: ignore[return-value]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"custodes_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(
            f"PostgreSQL is required for this test and is not reachable at "
            f"{PG_ADMIN_URL} ({exc.orig}); start it (make postgres) or set "
            "CUSTODES_TEST_PG_URL."
        )
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture
def sign_in():  # type: ignore[no-untyped-def]
    """sign_in(home, store_url=None) -> {role: env} with a live session (or key) per role,
    for driving the CLI: the administrators and one user per other role, made through the
    services."""
    from custodes.access import credentials

    def make(home: str | Path, store_url: str | None = None) -> dict[str, dict[str, str]]:
        ws = open_workspace(home, store_url)
        try:
            credentials.ensure_secrets_key(ws)
            people = staff_mod.one_per_role(ws, password=PASSWORD)
            base = {"CUSTODES_STORE_URL": store_url} if store_url else {}
            envs = {}
            for role, name in (
                ("administrator", "admin"),
                ("second_administrator", "admin2"),
                ("officer", "officer"),
                ("approver", "approver"),
                ("rule_steward", "rule-steward"),
                ("auditor", "auditor"),
            ):
                # the session one_per_role just opened (no second password check)
                envs[role] = base | {"CUSTODES_SESSION": people.tokens[name]}
            from custodes.services import users as users_svc

            key = users_svc.key(ws, people.admin, "requester")["key"]
            users_svc.confirm(ws, people.second_admin, "requester")
            envs["requester"] = base | {"CUSTODES_SESSION": key}
            return envs
        finally:
            ws.close()

    return make
