"""Shared fixtures: real workspaces on SQLite and on the local PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from custodes.records.generator import generate_master
from custodes.workspace import Workspace, init_workspace, open_workspace

PG_ADMIN_URL = os.environ.get(
    "CUSTODES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.delenv("CUSTODES_STORE_URL", raising=False)
    ws, _ = init_workspace(tmp_path / "ws")
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def _master_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3,000-person synthetic workspace, built once and copied per test."""
    home = tmp_path_factory.mktemp("template") / "ws"
    ws, _ = init_workspace(home, f"sqlite:///{home}.db")
    generate_master(ws, 3000, seed=11)
    ws.close()
    return home


@pytest.fixture
def master_ws(_master_template: Path, tmp_path: Path) -> Iterator[Workspace]:
    home = tmp_path / "master-ws"
    shutil.copytree(_master_template, home)
    shutil.copy(f"{_master_template}.db", tmp_path / "master-ws.db")
    ws = open_workspace(home, f"sqlite:///{tmp_path / 'master-ws.db'}")
    yield ws
    ws.close()


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
            sa.text(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


TEST_PASSWORD = "correct horse battery"


@pytest.fixture
def sign_in():  # type: ignore[no-untyped-def]
    """sign_in(home, store_url=None) -> {role: env} with a live session per role (an admin
    'admin' and one user per other role, named after it), for driving the CLI."""
    from custodes.access import service as acc

    def make(home: str | Path, store_url: str | None = None) -> dict[str, dict[str, str]]:
        ws = open_workspace(home, store_url)
        try:
            if not acc.has_users(ws):
                acc.create_user(ws, "admin", TEST_PASSWORD, ["administrator"], by=None)
            token = acc.login(ws, "admin", TEST_PASSWORD)
            with ws.engine.connect() as conn:
                admin = acc.authenticate(conn, token)
            base = {"CUSTODES_STORE_URL": store_url} if store_url else {}
            envs = {"administrator": base | {"CUSTODES_SESSION": token}}
            for role in acc.ROLES:
                if role == "administrator":
                    continue
                name = role.replace("_", "-")
                acc.create_user(ws, name, TEST_PASSWORD, [role], by=admin)
                envs[role] = base | {"CUSTODES_SESSION": acc.login(ws, name, TEST_PASSWORD)}
            return envs
        finally:
            ws.close()

    return make
