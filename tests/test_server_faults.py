"""Server faults (#26 item 2): what the machine does to custodes, not what a user sends. Each
fault is a coded error, leaves nothing half-done, and the next try completes.

How each fault is made, without root and without disturbing anyone else's tests:
- a read-only workspace: the command runs in its own mount namespace (`unshare -rm`, an
  unprivileged user namespace) where the workspace is bind-mounted read-only;
- a full disk: the command runs under a file-size limit (`RLIMIT_FSIZE`, with `SIGXFSZ`
  ignored, so a write past it fails with `EFBIG` as a full disk fails with `ENOSPC`) — a small
  tmpfs or a loop device would need root;
- `custodes serve` killed: SIGKILL, then a new server on the same workspace.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import PASSWORD, PG_ADMIN_URL, make_workspace
from custodes.access import sessions
from custodes.services import decisions, matching, records, requests, rules, users
from custodes.store.tables import disclosures, jobs, ledger_events
from custodes.synthetic import staff as staff_mod
from custodes.workspace import read_record, write_record
from servers import free_port


@dataclass
class Ready:
    """A workspace whose request is approved for release, and a session per role."""

    home: Path
    url: str
    rid: str
    env: dict[str, dict[str, str]]
    root: Path


def _ready(root: Path, url: str | None) -> Ready:
    home = root / "ws"
    ws = make_workspace(home, url)
    try:
        people = staff_mod.one_per_role(ws, password=PASSWORD)
        records.generate(ws, people.admin, 300, 5)
        rules.register_parties(ws, people.admin, "irc-6103-i-2")
        requests.generate(ws, people.admin, "irc-6103-i-2", 20, 2, root / "req")
        rid = requests.submit(ws, people["requester"], root / "req").request_id
        matching.train(ws, people["officer"], rid)
        decisions.process(ws, people["officer"], rid)
        if decisions.next_step(ws, people["officer"], rid)["next"] == "review":
            decisions.review_resolve(ws, people["officer"], rid, "WITHHOLD", "not sure enough")
        decisions.prepare(ws, people["officer"], rid)
        decisions.approve(ws, people["approver"], rid)
        base = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
        base["CUSTODES_STORE_URL"] = ws.store_url
        env = {
            name: base | {"CUSTODES_SESSION": sessions.login(ws, name, PASSWORD)}
            for name in ("officer", "admin", "auditor")
        }
        key = users.key(ws, people.admin, "requester")["key"]
        users.confirm(ws, people.second_admin, "requester")
        env["requester"] = base | {"CUSTODES_SESSION": key}
        return Ready(home, ws.store_url, rid, env, root)
    finally:
        ws.close()


def _copy_ready(t: Ready, root: Path, url: str) -> Ready:
    """A copy of the prepared workspace `t` in `root` whose store is at `url` (already a copy
    of `t`'s): the folder copied, its record pointed at the copy's store, each session's
    environment too (the sessions live in the store, so they hold in the copy)."""
    shutil.copytree(t.root, root, dirs_exist_ok=True)
    home = root / t.home.relative_to(t.root)
    record = read_record(home)
    assert record is not None
    write_record(home, url, record)
    # The sessions were opened when the module's first test made the template: the tests'
    # long inactivity timeout (conftest), not the default 15 minutes, so that a loaded machine
    # does not end them between that test and the last.
    idle = {"CUSTODES_IDLE_MINUTES": os.environ["CUSTODES_IDLE_MINUTES"]}
    env = {who: e | {"CUSTODES_STORE_URL": url} | idle for who, e in t.env.items()}
    return Ready(home, url, t.rid, env, root)


@pytest.fixture(scope="module")
def _ready_pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ready, str]]:
    """The approved request on PostgreSQL, prepared once for the module (the staff's dozen
    full-cost password hashes, the records, the model): each test gets a copy of its database
    (CREATE DATABASE ... TEMPLATE) and of its folder."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"custodes_tmpl_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    try:
        yield _ready(tmp_path_factory.mktemp("ready-pg"), url.render_as_string(False)), name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def ready_pg(_ready_pg_template: tuple[Ready, str], pg_url: str, tmp_path: Path) -> Ready:
    template, name = _ready_pg_template
    db = sa.engine.make_url(pg_url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:  # pg_url's empty database, remade as the template's copy
            conn.execute(sa.text(f'DROP DATABASE "{db}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{db}" TEMPLATE "{name}"'))
    finally:
        admin.dispose()
    return _copy_ready(template, tmp_path / "ready", pg_url)


@pytest.fixture(scope="module")
def _ready_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Ready:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CUSTODES_STORE_URL", raising=False)
        return _ready(tmp_path_factory.mktemp("ready-sqlite"), None)


@pytest.fixture
def ready_sqlite(
    _ready_sqlite_template: Ready, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Ready:
    monkeypatch.delenv("CUSTODES_STORE_URL", raising=False)
    t = _ready_sqlite_template
    file = Path(t.url.removeprefix("sqlite:///")).relative_to(t.root)
    return _copy_ready(t, tmp_path / "ready", f"sqlite:///{tmp_path / 'ready' / file}")


def _custodes(
    ready: Ready, who: str, *args: str, read_only: bool = False, fsize: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`custodes ARGS --home HOME` as `who`, perhaps with the workspace read-only or under a
    file-size limit."""
    cmd = [sys.executable, "-m", "custodes", *args, "--home", str(ready.home)]
    if read_only:
        h = shlex.quote(str(ready.home))
        mount = f"mount --bind {h} {h} && mount -o remount,ro,bind {h} && exec "
        cmd = ["unshare", "-rm", "sh", "-c", mount + shlex.join(cmd)]

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))  # type: ignore[arg-type]

    return subprocess.run(
        cmd,
        env=ready.env[who],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit if fsize is not None else None,
    )


def _can_mount_read_only(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir()
    p = shlex.quote(str(probe))
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount --bind {p} {p} && mount -o remount,ro,bind {p}"],
        capture_output=True,
    )
    probe.rmdir()
    return r.returncode == 0


def _count(url: str, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()
            )
    finally:
        engine.dispose()


def _types_since(url: str, n: int) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = sa.select(ledger_events.c.type).order_by(ledger_events.c.idx).offset(n)
            return [t for (t,) in conn.execute(q)]
    finally:
        engine.dispose()


def _coded(r: subprocess.CompletedProcess[str], code: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert f"({code})" in r.stderr + r.stdout and "internal error" not in r.stderr, r.stderr


# --- a read-only workspace --------------------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_read_only_workspace_is_a_coded_error_and_the_next_try_completes(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if not _can_mount_read_only(tmp_path):
        pytest.skip("no unprivileged mount namespace here (unshare -rm) to make it read-only")
    ready: Ready = request.getfixturevalue(f"ready_{'pg' if store == 'postgresql' else 'sqlite'}")
    out = ready.root / "response"
    r = _custodes(ready, "officer", "release", ready.rid, "--out", str(out), read_only=True)
    _coded(r, "read_only")
    assert _count(ready.url, disclosures) == 0
    assert _count(ready.url, ledger_events, ledger_events.c.type == "release.done") == 0
    # writable again: the same command completes, once
    r = _custodes(ready, "officer", "release", ready.rid, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert _count(ready.url, ledger_events, ledger_events.c.type == "release.done") == 1
    assert _count(ready.url, disclosures) == _count(
        ready.url, ledger_events, ledger_events.c.type == "disclosure"
    )


# --- a full disk ------------------------------------------------------------------------------


def test_a_full_disk_during_release_is_a_coded_error_and_the_next_try_completes(
    ready_pg: Ready,
) -> None:
    """The store is PostgreSQL (elsewhere); the files custodes writes — the response, the
    checkpoint copy — meet a full disk."""
    ready = ready_pg
    out = ready.root / "response"
    r = _custodes(ready, "officer", "release", ready.rid, "--out", str(out), fsize=64)
    _coded(r, "disk_full")
    assert _count(ready.url, disclosures) == 0
    assert _count(ready.url, ledger_events, ledger_events.c.type == "release.done") == 0
    assert not out.exists() or not any(out.iterdir())  # no half-written response
    r = _custodes(ready, "officer", "release", ready.rid, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert _count(ready.url, ledger_events, ledger_events.c.type == "release.done") == 1
    released = _count(ready.url, disclosures)
    assert released == _count(ready.url, ledger_events, ledger_events.c.type == "disclosure")
    body = json.loads((out / "response.json").read_text())
    assert body["request_id"] == ready.rid


def test_a_full_disk_during_import_is_a_coded_error_and_the_next_try_completes(
    ready_pg: Ready,
) -> None:
    ready = ready_pg
    people = ready.root / "people.csv"
    people.write_text(
        "tin,tin_type,first_name,middle_name,last_name,suffix,dob\n"
        "123456789,SSN,ANA,,ROE,,1980-02-29\n"
    )
    addresses = ready.root / "addresses.csv"
    addresses.write_text(
        "tin,tax_year,street,unit,city,state,zip\n123456789,2024,1 MAIN ST,,SPRINGFIELD,IL,62701\n"
    )
    before = sorted(p.relative_to(ready.home) for p in ready.home.rglob("*"))
    changes = _count(ready.url, ledger_events)
    r = _custodes(ready, "admin", "records", "import", str(people), str(addresses), fsize=64)
    _coded(r, "disk_full")
    assert sorted(p.relative_to(ready.home) for p in ready.home.rglob("*")) == before
    # nothing proposed: the ledger holds only the attempt, as it holds every call
    assert _types_since(ready.url, changes) == ["access"]
    r = _custodes(ready, "admin", "records", "import", str(people), str(addresses))
    assert r.returncode == 0, r.stderr
    assert "confirm" in r.stdout.lower()


# --- `custodes serve` killed with jobs in hand ------------------------------------------------


def _job_rows(url: str, ids: list[str]) -> dict[str, dict[str, object]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = sa.select(jobs).where(jobs.c.id.in_(ids))
            return {r.id: dict(r._mapping) for r in conn.execute(q)}
    finally:
        engine.dispose()


def test_serve_killed_with_jobs_in_hand_fails_them_and_removes_their_uploads(
    ready_sqlite: Ready, tmp_path: Path
) -> None:
    """Eight uploads an agency asked to be taken in the background (each 30,000 items, so that
    the one worker is still busy when the server dies); SIGKILL; a new server on the same
    workspace fails every job the dead one held, with its reason, and removes their staged
    uploads; the agency's next submission goes through."""
    import csv

    import httpx

    from test_api_serve import _serve

    ready = ready_sqlite
    with open(ready.root / "req" / "items.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    big = ready.root / "big.csv"
    with open(big, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**rows[n % len(rows)], "item_id": f"item-k{n}"} for n in range(30_000))
    files = {
        "envelope": ("envelope.json", (ready.root / "req" / "envelope.json").read_bytes()),
        "items": ("items.csv", big.read_bytes()),
    }
    headers = {
        "Authorization": f"Bearer {ready.env['requester']['CUSTODES_SESSION']}",
        "Prefer": "respond-async",
    }
    server, base, _ = _serve(ready.home, ready.url, tmp_path / "serve.log", "--job-quota", "50")
    started = []
    try:
        for _ in range(8):
            r = httpx.post(f"{base}/v1/requests", files=files, headers=headers, timeout=120)
            assert r.status_code == 202, r.text
            started.append(r.json()["id"])
    finally:
        server.kill()
        server.wait(timeout=30)
    held = [i for i, row in _job_rows(ready.url, started).items() if row["state"] != "succeeded"]
    assert held, "the server ended every job before it was killed: nothing was tested"
    staging = ready.home / "staging"
    assert len(list(staging.iterdir())) == len(held)  # each held job's upload, left behind
    server, base, _ = _serve(ready.home, ready.url, tmp_path / "serve2.log")
    try:
        after = _job_rows(ready.url, held)
        for row in after.values():
            assert row["state"] == "failed", row
            assert json.loads(str(row["problem"]))["code"] == "server_restarted"
        assert list(staging.iterdir()) == []
        del headers["Prefer"]
        r = httpx.post(f"{base}/v1/requests", files=files, headers=headers, timeout=120)
        assert r.status_code in (200, 201), r.text
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- the system clock stepping back during a session ------------------------------------------


def test_the_clock_stepping_back_during_a_session_neither_ends_nor_stretches_it(
    staff: staff_mod.Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sessions' clock is `access.sessions.now` (the code reads the time through it; the
    rest of custodes calls `datetime.now` directly, so only the sessions' clock can be stepped
    here). An officer works; the clock steps back two hours (a bad NTP step, a VM restored)
    and is put right again: the session lives on throughout — it is neither ended as idle when
    the clock returns, nor does its last use move back in time."""
    from custodes.access import door
    from custodes.access import sessions as sessions_mod
    from custodes.store.tables import sessions as sessions_table

    ws, officer = staff.ws, staff["officer"]
    # The staff's sessions come from a template made when the run began, perhaps longer ago
    # than the default timeout: one use under the tests' long timeout makes it fresh first.
    assert door.enter(ws, officer, "process").actor == "officer"
    monkeypatch.delenv("CUSTODES_IDLE_MINUTES")  # the default, 15 minutes
    real = sessions_mod.now

    def last_use() -> object:
        with ws.engine.connect() as conn:
            q = sa.select(sessions_table.c.last_used_at).where(
                sessions_table.c.token_sha256 == officer.token_sha256
            )
            return conn.execute(q).scalar_one()

    assert door.enter(ws, officer, "process").actor == "officer"
    used = last_use()
    monkeypatch.setattr(sessions_mod, "now", lambda: real() - dt.timedelta(hours=2))
    assert door.enter(ws, officer, "process").actor == "officer"  # still live
    assert last_use() == used  # the last use does not go back with the clock
    monkeypatch.setattr(sessions_mod, "now", real)  # the clock is put right
    assert door.enter(ws, officer, "process").actor == "officer"  # not ended as idle


# --- PostgreSQL restarted in the middle of a release ------------------------------------------


@pytest.fixture
def private_pg() -> Iterator[tuple[str, Callable[[], None]]]:
    """A PostgreSQL server of this test's own (initdb + pg_ctl in a temporary folder, on a free
    port), so that restarting it disturbs no other test: its URL and a `restart()`."""
    import glob
    import shutil
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins and shutil.which("initdb") is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) here")
    bindir = Path(bins[-1]).parent if bins else Path(str(shutil.which("initdb"))).parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="custodes-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres")
    data = root / "data"

    def pg(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    for attempt in range(3):  # a port found free may be taken before the server binds it
        port = free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = ["-l", str(root / "log")]
        ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, *log, "-w"]
        try:
            pg(*ctl, "start")
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                said = (root / "log").read_text() if (root / "log").exists() else "(no log)"
                pytest.fail(f"PostgreSQL did not start:\n{said}")
    try:
        yield (
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
            lambda: pg(*ctl, "-m", "fast", "restart"),
        )
    finally:
        subprocess.run([*as_postgres, *ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_restarted_in_the_middle_of_a_release(
    private_pg: tuple[str, Callable[[], None]], tmp_path: Path
) -> None:
    """The release has recorded its intent and written its response, and waits to record the
    disclosures (held there by a lock on the table); PostgreSQL restarts. The release ends
    with a coded error and nothing recorded; run again, it resumes and completes, once."""
    url, restart = private_pg
    ready = _ready(tmp_path, url)
    out = ready.root / "response"
    engine = sa.create_engine(url)
    locker = engine.connect()
    locker.begin()
    locker.execute(sa.text("LOCK TABLE disclosures IN ACCESS EXCLUSIVE MODE"))
    cmd = [sys.executable, "-m", "custodes", "release", ready.rid, "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--home", str(ready.home)],
        env=ready.env["officer"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        waiting = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE '%disclosures%'"
        )
        with engine.connect() as watch:
            while not watch.execute(waiting).scalar():  # until the release waits on the lock
                watch.rollback()  # a new transaction: pg_stat_activity is read afresh
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
        restart()
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        locker.invalidate()
        engine.dispose()
    assert proc.returncode == 2 and "(store_unreachable)" in err, err
    assert _count(url, disclosures) == 0
    assert _count(url, ledger_events, ledger_events.c.type == "release.done") == 0
    r = _custodes(ready, "officer", "release", ready.rid, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "resum" in (r.stdout + r.stderr).lower()
    assert _count(url, ledger_events, ledger_events.c.type == "release.done") == 1
    assert _count(url, disclosures) == _count(
        url, ledger_events, ledger_events.c.type == "disclosure"
    )
    r = _custodes(ready, "auditor", "ledger", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
