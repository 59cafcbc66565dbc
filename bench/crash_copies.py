"""The crash campaign's workspaces (bench/crash.py): the one made through the services, its
copies (a folder and a store: SQLite files, or a PostgreSQL template database), and how a copy
runs the CLI (a process forked from a zygote that imported custodes once, or `--spawn`)."""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from one_for_review import one_for_review

CRASH = Path(__file__).resolve().with_name("crash.py")  # the zygote runs `crash.py --zygote`
PG_ADMIN_URL = os.environ.get(
    "CUSTODES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PROVISION = "irc-6103-i-2"
AGENCY = "U.S. Immigration and Customs Enforcement"


# --- one workspace copy: its folder, its store, and how to run the CLI on it -----------------


@dataclass
class Copy:
    root: Path  # holds the workspace folder `ws`, the outputs `out`, and (SQLite) `store.db`
    url: str
    tokens: dict[str, str]
    req: Path  # the generated request folder the agency submits (shared, read only)

    @property
    def home(self) -> Path:
        return self.root / "ws"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def cli(
        self, who: str, *args: str, failpoint: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
        env |= {
            "CUSTODES_SESSION": self.tokens[who],
            "CUSTODES_STORE_URL": self.url,
            "CUSTODES_IDLE_MINUTES": "720",
        }
        if failpoint:
            env["CUSTODES_FAILPOINT"] = failpoint
        argv = [*args, "--home", str(self.home)]
        if SPAWN:
            return subprocess.run(
                [sys.executable, "-m", "custodes", *argv],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
        return _zygote().run(argv, {k: v for k, v in env.items() if k.startswith("CUSTODES")})


# Each command runs in a process of its own, killed with SIGKILL at its failpoint. By default
# that process is forked from a "zygote" that has imported custodes once (as Android starts
# apps): the command then costs its work, not the ~2 s of imports a `python -m custodes` pays
# on a loaded machine, and the campaign's hundreds of kills fit in minutes. `--spawn` runs
# `python -m custodes` itself for each command instead.
SPAWN = False
_local = threading.local()


class Zygote:
    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODES")}
        self.proc = subprocess.Popen(
            [sys.executable, str(CRASH), "--zygote"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.dir = Path(tempfile.mkdtemp(prefix="crash-zygote-"))
        atexit.register(shutil.rmtree, self.dir, True)

    def run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        out, err = self.dir / "stdout", self.dir / "stderr"
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(
            json.dumps({"argv": argv, "env": env, "out": str(out), "err": str(err)}) + "\n"
        )
        self.proc.stdin.flush()
        rc = json.loads(self.proc.stdout.readline())["rc"]
        return subprocess.CompletedProcess(argv, rc, out.read_text(), err.read_text())


def _zygote() -> Zygote:
    if not hasattr(_local, "zygote"):
        _local.zygote = Zygote()
    return _local.zygote


def zygote_main() -> None:
    """The zygote: import the CLI once, then fork one child per command read from stdin (a
    JSON line: argv, the CUSTODES_* environment, files for stdout and stderr) and answer with
    the child's exit status (-9: killed at its failpoint)."""
    import importlib

    from custodes import failpoints
    from custodes.cli import main as cli_main
    from custodes.cli.commands import load_all

    load_all()
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the command's own process
            code = 70
            try:
                os.environ.update(cmd["env"])
                importlib.reload(failpoints)  # it reads CUSTODES_FAILPOINT when loaded
                for fd, name in ((1, cmd["out"]), (2, cmd["err"])):
                    f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.dup2(f, fd)
                    os.close(f)
                sys.argv = ["custodes", *cmd["argv"]]
                cli_main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)


class Backend:
    """Where stores live and how one is copied."""

    name = "sqlite"

    def new_url(self, root: Path) -> str:
        return f"sqlite:///{root / 'store.db'}"

    def copy(self, src: Copy, dest_root: Path) -> str:
        dest_root.mkdir(parents=True)
        for f in src.root.glob("store.db*"):
            shutil.copy(f, dest_root / f.name)
        return self.new_url(dest_root)

    def drop(self, url: str) -> None:
        pass

    def close(self) -> None:
        pass


class Postgres(Backend):
    name = "postgresql"

    def __init__(self) -> None:
        self.admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.made: list[str] = []
        self.lock = threading.Lock()

    def _url(self, name: str) -> str:
        return (
            sa.engine.make_url(PG_ADMIN_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    def _create(self, template: str | None = None) -> str:
        name = f"custodes_crash_{uuid.uuid4().hex[:12]}"  # made here, never from input
        with self.admin.connect() as conn:
            conn.execute(
                sa.text(
                    f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
                )
            )
        self.made.append(name)
        return name

    def new_url(self, root: Path) -> str:
        return self._url(self._create())

    def copy(self, src: Copy, dest_root: Path) -> str:
        dest_root.mkdir(parents=True)
        with self.lock:  # a template database takes one copy at a time
            return self._url(self._create(sa.engine.make_url(src.url).database))

    def drop(self, url: str) -> None:
        name = sa.engine.make_url(url).database
        with self.admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        if name in self.made:
            self.made.remove(name)

    def close(self) -> None:
        for name in list(self.made):
            self.drop(self._url(name))
        self.admin.dispose()


def clone(backend: Backend, src: Copy, dest_root: Path) -> Copy:
    """A copy of `src` (folder and store) at `dest_root`; its outputs too."""
    url = backend.copy(src, dest_root)
    shutil.copytree(src.home, dest_root / "ws", symlinks=True)
    if src.out.exists():
        shutil.copytree(src.out, dest_root / "out", symlinks=True)
    else:
        (dest_root / "out").mkdir(mode=0o700)
    return Copy(dest_root, url, src.tokens, src.req)


def prepare_workspace(backend: Backend, root: Path, people: int, items: int, seed: int) -> Copy:
    """A workspace with its staff signed in, a master file and a generated request (with one
    item moved to review), made through the services once; every run copies it."""
    from custodes.access import sessions
    from custodes.services import records, requests, rules, users
    from custodes.services import workspace as ws_svc
    from custodes.synthetic import staff as staff_mod
    from custodes.workspace import open_workspace

    root.mkdir(parents=True)
    url = backend.new_url(root)
    home = root / "ws"
    ws_svc.init(home, url, origin="custodes.crash/ledger")
    ws = open_workspace(home, url)
    try:
        staff = staff_mod.one_per_role(ws, agency=AGENCY, password=secrets.token_urlsafe(18))
        records.generate(ws, staff.admin, people, seed)
        rules.register_parties(ws, staff.admin, PROVISION)
        req = root / "req"
        requests.generate(ws, staff.admin, PROVISION, items, seed, req)
        one_for_review(req)
        tokens = {
            n: sessions.login(ws, n, staff.password)
            for n in ("admin", "officer", "approver", "auditor")
        }
        tokens["requester"] = users.key(ws, staff.admin, "requester")["key"]
        users.confirm(ws, staff.second_admin, "requester")
    finally:
        ws.close()
    (root / "out").mkdir(mode=0o700)
    return Copy(root, url, tokens, req)
