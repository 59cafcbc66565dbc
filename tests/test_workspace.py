"""The workspace and its transactional store, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import make_workspace
from custodes.errors import WorkspaceError
from custodes.store import engine as store_engine
from custodes.store.tables import metadata
from custodes.workspace import init_workspace, open_workspace, resolve_home


def test_init_creates_layout_and_is_idempotent(tmp_path: Path) -> None:
    ws, created = init_workspace(tmp_path / "w")
    assert created
    assert (ws.home / "custodes.db").exists()
    assert (ws.home / "bulk").is_dir() and (ws.home / "requests").is_dir()
    ws.close()
    ws2, created2 = init_workspace(tmp_path / "w")
    assert not created2
    ws2.close()


def test_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODES_HOME", str(tmp_path / "env-home"))
    assert resolve_home() == (tmp_path / "env-home").resolve()
    assert resolve_home(tmp_path / "arg") == (tmp_path / "arg").resolve()


def test_open_without_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="custodes init") as exc:
        open_workspace(tmp_path / "nothing")
    assert exc.value.code == "no_workspace"


def test_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(WorkspaceError, match="not a folder"):
        init_workspace(tmp_path / "f")


def test_outdated_store_is_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "w")
    with ws.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'old'"))
    ws.close()
    with pytest.raises(WorkspaceError) as exc:
        open_workspace(tmp_path / "w")
    assert exc.value.code == "store_outdated"


def test_unreachable_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as exc:
        init_workspace(tmp_path / "w", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert exc.value.code == "store_unreachable"


def _schema(engine: sa.Engine) -> dict[str, set[str]]:
    insp = sa.inspect(engine)
    return {
        t: {c["name"] for c in insp.get_columns(t)}
        for t in insp.get_table_names()
        if t != "alembic_version"
    }


def test_migrations_match_table_definitions(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "w")
    assert _schema(ws.engine) == {
        t.name: {c.name for c in t.columns} for t in metadata.sorted_tables
    }
    ws.close()


@pytest.mark.postgres
def test_postgresql_store(tmp_path: Path, pg_url: str) -> None:
    ws = make_workspace(tmp_path / "w", pg_url)
    assert ws.engine.dialect.name == "postgresql"
    assert store_engine.current_revision(ws.engine) == store_engine.head_revision()
    assert _schema(ws.engine) == {
        t.name: {c.name for c in t.columns} for t in metadata.sorted_tables
    }
    ws.close()
    ws2 = open_workspace(tmp_path / "w", pg_url)  # a second process sees the same store
    ws2.close()
