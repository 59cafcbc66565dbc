"""The tamper campaign's workspace (bench/tamper.py): one that has lived a full cycle, built
through the services once, and its copies (the folder, and the store: a SQLite file, or a
PostgreSQL database made from it as a template)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from one_for_review import one_for_review

PG_ADMIN_URL = os.environ.get(
    "CUSTODES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


# --- the workspace that has lived a full cycle -------------------------------------------------


@dataclass
class Base:
    """A built workspace: its folder, its store (a SQLite file, or a PostgreSQL template
    database), the callers (their sessions live in the store, so they work in every copy) and
    the requests by what happens to them next."""

    home: Path
    store: str  # "sqlite" | "postgresql"
    url: str
    callers: dict[str, Any]
    password: str
    rids: dict[str, str]
    baseline: dict[str, Any] = field(default_factory=dict)


def build(root: Path, store: str, people: int = 500, items: int = 40) -> Base:
    from custodes import rules as rules_pkg
    from custodes.errors import CustodesError
    from custodes.services import decisions, matching, records, reports, requests
    from custodes.services import rules as rules_svc
    from custodes.services import workspace as ws_svc
    from custodes.services.rules import register_parties
    from custodes.synthetic import staff as staff_mod
    from custodes.workspace import open_workspace

    home = root / "base" / "ws"
    home.parent.mkdir(parents=True)
    if store == "sqlite":
        url = f"sqlite:///{root / 'base' / 'ws.db'}"
    else:
        url = _pg_create(f"custodes_tamper_{uuid.uuid4().hex[:10]}")
    ws_svc.init(home, url, origin="custodes.tamper/ledger")
    ws = open_workspace(home, url)
    staff = staff_mod.one_per_role(ws)
    officer, approver, agency = staff["officer"], staff["approver"], staff["requester"]
    records.generate(ws, staff.admin, people, 11)
    register_parties(ws, staff.admin, "irc-6103-i-2")
    rids = {}
    for n, name in enumerate(("recalled", "released", "approved", "received")):
        folder = root / "base" / f"req-{name}"
        requests.generate(ws, staff.admin, "irc-6103-i-2", items, 3 + n, folder)
        if name == "approved":
            one_for_review(folder)
        key = {"idempotency_key": f"tamper-{name}", "payload_sha256": "0" * 64}
        rids[name] = requests.submit(ws, agency, folder, **key).request_id
    matching.train(ws, officer, rids["recalled"])
    for name in ("recalled", "released", "approved"):
        rid = rids[name]
        decisions.process(ws, officer, rid)
        if name == "approved":  # an inspection serving the open request, then the review
            page = decisions.outcomes_page(ws, officer, rid, limit=1000)["items"]
            cand = next(r["record_id"] for r in page if r["record_id"])
            records.show(ws, officer, cand, purpose="confirm the candidate", request_id=rid)
            records.flag_sensitive(ws, staff.admin, cand, "a public figure")
        if decisions.next_step(ws, officer, rid)["state"] == "in_review":
            decisions.review_resolve(ws, officer, rid, "WITHHOLD", "not sure enough")
        decisions.prepare(ws, officer, rid)
        decisions.approve(ws, approver, rid)
        if name != "approved":
            decisions.release(ws, officer, rid)
    decisions.download(ws, agency, rids["recalled"])
    decisions.recall(ws, officer, reason="court ruling", request_id=rids["recalled"])
    rules_folder = root / "base" / "rules"
    shutil.copytree(Path(rules_pkg.__file__).parent / "reference", rules_folder)
    text = (rules_folder / "ruleset.yaml").read_text()
    (rules_folder / "ruleset.yaml").write_text(text.replace('version: "', 'version: "t', 1))
    rules_svc.propose(ws, staff["rule-steward"], rules_folder)  # waits for a second steward
    with contextlib.suppress(CustodesError):  # a failed sign-in (the throttle's row)
        ws_svc.login(ws, "officer", "not the password")
    out = root / "base" / "reports"
    out.mkdir()
    year = dt.datetime.now(dt.UTC).year
    reports.jct(ws, officer, year=year, out=out / "jct.csv")
    reports.request(ws, officer, rids["released"], out=out / "request.html")
    reports.incident_open(
        ws, officer, kind="disclosure", summary="a disclosure to the wrong office", request_id=None
    )
    base = Base(home, store, url, dict(staff.callers), staff.password, rids)
    ws.close()
    return base


# --- copies ------------------------------------------------------------------------------------


def _pg_admin() -> sa.Engine:
    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _pg_url(name: str) -> str:
    return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)


def _pg_create(name: str, template: str | None = None) -> str:
    eng = _pg_admin()
    with eng.connect() as conn:
        tpl = f' TEMPLATE "{template}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{tpl}'))  # names made here, not input
    eng.dispose()
    return _pg_url(name)


def pg_drop(name: str) -> None:
    eng = _pg_admin()
    with eng.connect() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    eng.dispose()


@dataclass
class Copy:
    home: Path
    url: str
    drop: Callable[[], None]


def fresh_copy(base: Base, dest: Path) -> Copy:
    """The base workspace's folder and store, copied (a template database on PostgreSQL)."""
    home = dest / "ws"
    shutil.copytree(base.home, home, symlinks=True)
    if base.store == "sqlite":
        db = dest / "ws.db"
        shutil.copy(sa.engine.make_url(base.url).database, db)
        return Copy(home, f"sqlite:///{db}", lambda: shutil.rmtree(dest, ignore_errors=True))
    name = f"custodes_tamper_{uuid.uuid4().hex[:10]}"
    url = _pg_create(name, template=sa.engine.make_url(base.url).database)

    def drop() -> None:
        pg_drop(name)
        shutil.rmtree(dest, ignore_errors=True)

    return Copy(home, url, drop)
