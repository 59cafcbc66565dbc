"""The store's schema revision is read without Alembic on every open; these hold that shortcut
to Alembic's own view of the migrations."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from custodes.store import engine as store_engine


def test_the_head_read_from_file_names_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(store_engine.MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    assert scripts.get_current_head() == store_engine.head_revision()
    for script in scripts.walk_revisions():  # each revision is its file's number, one chain
        assert script.path.rsplit("/", 1)[1][:4] == script.revision
        assert len(script.nextrev) <= 1


def test_an_outdated_store_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest
    import sqlalchemy as sa

    from custodes.errors import WorkspaceError

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert store_engine.current_revision(engine) is None
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0001')"))
    with pytest.raises(WorkspaceError) as err:
        store_engine.check_current(engine)
    assert err.value.code == "store_outdated"
