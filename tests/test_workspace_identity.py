"""A workspace that cannot fork (#24 item 4): it records its store and its keys' identity, opens
no other store and never a new empty one, `init` refuses a store signed by another key and a
second bootstrap, and a second host joins a deployment without making a store, key or user."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from conftest import PASSWORD, make_workspace
from custodes.cli import app
from custodes.errors import ConflictError, CustodesError, InputError, WorkspaceError
from custodes.services import ledger as ledger_svc
from custodes.services import workspace as ws_svc
from custodes.store import identity
from custodes.store.tables import meta, users
from custodes.synthetic import staff as staff_mod
from custodes.workspace import RECORD, open_workspace

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_store_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTODES_STORE_URL", raising=False)
    monkeypatch.delenv("CUSTODES_LEDGER_KEY", raising=False)
    monkeypatch.delenv("CUSTODES_SECRETS_KEY", raising=False)


def _code(exc: pytest.ExceptionInfo[CustodesError]) -> str:
    return exc.value.code


def _user_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one()


def _signed_checkpoint(ws, admin) -> int:  # type: ignore[no-untyped-def]
    return ledger_svc.checkpoint(ws, admin)["size"]


def test_the_record_names_the_store_without_its_password_and_the_keys(
    tmp_path: Path, pg_url: str
) -> None:
    url = sa.engine.make_url(pg_url).set(password="not-kept").render_as_string(False)
    ws = make_workspace(tmp_path / "w", url)
    record_file = ws.home / RECORD
    record = json.loads(record_file.read_text())
    assert "not-kept" not in record_file.read_text()
    assert record["store_url"] == sa.engine.make_url(pg_url).render_as_string(False)
    assert record_file.stat().st_mode & 0o777 == 0o600
    held = identity.read(ws.engine)
    assert {k: record[k] for k in identity.KEYS} == held
    assert held[identity.LEDGER_VKEY] == ledger_svc.keys.load_signer(ws).verifier.vkey
    ws.close()
    # With CUSTODES_STORE_URL unset, the workspace opens its recorded PostgreSQL store — it
    # does not make an empty custodes.db beside it (the reported fork).
    again = open_workspace(tmp_path / "w")
    assert again.engine.dialect.name == "postgresql"
    assert not (tmp_path / "w" / "custodes.db").exists()
    again.close()
    result = runner.invoke(app, ["status", "--home", str(tmp_path / "w"), "--json"])
    assert "store_missing" not in result.output and "store_outdated" not in result.output


def test_no_silent_fallback_to_a_new_sqlite_store(tmp_path: Path) -> None:
    home = tmp_path / "w"
    make_workspace(home).close()
    (home / "custodes.db").rename(tmp_path / "elsewhere.db")
    for wal in home.glob("custodes.db-*"):
        wal.unlink()
    with pytest.raises(WorkspaceError) as exc:
        open_workspace(home)
    assert _code(exc) == "store_missing" and "restore" in exc.value.message
    with pytest.raises(WorkspaceError) as exc:  # the old advice, init, makes no second store
        ws_svc.init(home, admin="chief2", password="x" * 16)
    assert _code(exc) == "store_missing"
    assert not (home / "custodes.db").exists()
    result = runner.invoke(app, ["status", "--home", str(home), "--json"])
    assert result.exit_code == 2 and "store_missing" in result.output
    assert not (home / "custodes.db").exists()


def test_another_store_is_refused_unless_it_is_the_same_store(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_workspace(a).close()
    make_workspace(b).close()
    with pytest.raises(WorkspaceError) as exc:
        open_workspace(a, f"sqlite:///{b / 'custodes.db'}")
    assert _code(exc) == "store_mismatch"
    with pytest.raises(WorkspaceError) as exc:  # nor does init switch the record to it
        ws_svc.init(a, f"sqlite:///{b / 'custodes.db'}")
    assert _code(exc) == "store_mismatch"
    # The same store named another way is the same store.
    same = open_workspace(a, f"sqlite:///{a}/../a/custodes.db")
    same.close()


def test_a_store_that_records_another_ledger_key_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_workspace(a).close()
    make_workspace(b).close()
    # b's record pasted into a (a copied folder mixed with another deployment's files)
    record = json.loads((a / RECORD).read_text())
    record[identity.LEDGER_VKEY] = json.loads((b / RECORD).read_text())[identity.LEDGER_VKEY]
    (a / RECORD).write_text(json.dumps(record))
    with pytest.raises(WorkspaceError) as exc:
        open_workspace(a)
    assert _code(exc) == "store_mismatch" and "ledger key" in exc.value.message


def test_a_record_with_a_key_name_edited_is_refused(tmp_path: Path) -> None:
    """#23 left open, a flip of workspace.json (the campaign's, SQLite seed
    928433391191883035: "secrets_id" to "{ecrets_id"): one bit of a key's name dropped that
    key, and with it the check of the store's secrets key, as in a record made before the key
    was kept. A key custodes does not write is refused."""
    a = tmp_path / "a"
    make_workspace(a).close()
    text = (a / RECORD).read_text()
    for name, flipped in (
        (identity.SECRETS_ID, "{ecrets_id"),
        (identity.LEDGER_VKEY, "ledger_vkez"),
    ):
        (a / RECORD).write_text(text.replace(f'"{name}"', f'"{flipped}"'))
        with pytest.raises(WorkspaceError) as exc:
            open_workspace(a)
        assert _code(exc) == "bad_record"


def test_init_refuses_a_second_bootstrap(tmp_path: Path) -> None:
    home = tmp_path / "w"
    ws_svc.init(home, admin="chief", password="x" * 16)
    with pytest.raises(ConflictError) as exc:
        ws_svc.init(home, admin="chief2", password="y" * 16)
    assert _code(exc) == "already_bootstrapped"
    ws = open_workspace(home)
    assert _user_count(ws.engine) == 1
    ws.close()
    result = runner.invoke(
        app, ["init", "--home", str(home), "--admin", "chief3", "--password-stdin"], input="z" * 16
    )
    assert result.exit_code == 2 and "already_bootstrapped" in result.output


@pytest.mark.postgres
def test_init_on_a_second_host_makes_no_second_key_and_refuses_another_key(
    tmp_path: Path, pg_url: str
) -> None:
    first = make_workspace(tmp_path / "host1", pg_url)
    staff_mod.administrators(first, password=PASSWORD)
    users_before = _user_count(first.engine)
    # The reported fork: init on a second machine against the same database.
    with pytest.raises(ConflictError) as exc:
        ws_svc.init(tmp_path / "host2", pg_url, admin="chief2", password="x" * 16)
    assert _code(exc) == "join_instead"
    assert not (tmp_path / "host2" / "keys" / "ledger.key").exists()
    assert _user_count(first.engine) == users_before
    # A host that brings a key of its own (another deployment's) is refused as well.
    other = tmp_path / "other"
    make_workspace(other).close()
    (tmp_path / "host3" / "keys").mkdir(parents=True)
    shutil.copy(other / "keys" / "ledger.key", tmp_path / "host3" / "keys" / "ledger.key")
    with pytest.raises(ConflictError) as exc:
        ws_svc.init(tmp_path / "host3", pg_url)
    assert _code(exc) == "ledger_key_mismatch"
    first.close()


def _legacy(home: Path, ws) -> None:  # type: ignore[no-untyped-def]
    """Make `home` look like a workspace made before the record: no workspace.json, no
    identity rows in its store."""
    (home / RECORD).unlink()
    with ws.engine.begin() as conn:
        conn.execute(sa.delete(meta).where(meta.c.key.in_(identity.KEYS)))


def test_a_workspace_made_before_the_record_is_refused_until_init_records_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "old"
    ws = make_workspace(home)
    people = staff_mod.administrators(ws, password=PASSWORD)
    size = _signed_checkpoint(ws, people.admin)
    _legacy(home, ws)
    ws.close()
    with pytest.raises(WorkspaceError) as exc:
        open_workspace(home)
    assert _code(exc) == "unrecorded_workspace" and "custodes init" in exc.value.message
    ws_svc.init(home)  # its key signed the store's checkpoints: unambiguous, recorded
    ws = open_workspace(home)
    assert (
        identity.read(ws.engine)[identity.LEDGER_VKEY]
        == json.loads((home / RECORD).read_text())[identity.LEDGER_VKEY]
    )
    assert ledger_svc.verify_store(ws, people.admin).ok
    assert _signed_checkpoint(ws, people.admin) >= size
    ws.close()


def test_an_old_workspace_whose_key_did_not_sign_its_store_is_refused(tmp_path: Path) -> None:
    home, other = tmp_path / "old", tmp_path / "other"
    ws = make_workspace(home)
    people = staff_mod.administrators(ws, password=PASSWORD)
    _signed_checkpoint(ws, people.admin)
    _legacy(home, ws)
    ws.close()
    make_workspace(other).close()
    (home / "keys" / "ledger.key").unlink()
    shutil.copy(other / "keys" / "ledger.key", home / "keys" / "ledger.key")
    with pytest.raises(ConflictError) as exc:
        ws_svc.init(home)
    assert _code(exc) == "ledger_key_mismatch"
    assert not (home / RECORD).exists()


@pytest.mark.postgres
def test_a_second_host_joins_and_both_sign_one_ledger(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host1 = make_workspace(tmp_path / "host1", pg_url)
    people = staff_mod.administrators(host1, password=PASSWORD)
    first = _signed_checkpoint(host1, people.admin)
    keys = tmp_path / "host1" / "keys"

    # Refusals first: nothing is made by a join that cannot be checked.
    empty = sa.engine.make_url(pg_url).set(database="postgres").render_as_string(False)
    with pytest.raises(CustodesError) as exc:  # a store that is no deployment's: not made
        ws_svc.join(tmp_path / "x", empty, ledger_key=str(keys / "ledger.key"))
    assert _code(exc) in ("store_outdated", "not_a_deployment")
    other = tmp_path / "other"
    make_workspace(other).close()
    with pytest.raises(ConflictError) as exc:
        ws_svc.join(
            tmp_path / "x",
            pg_url,
            ledger_key=str(other / "keys" / "ledger.key"),
            secrets_key=str(keys / "secrets.key"),
        )
    assert _code(exc) == "ledger_key_mismatch"
    with pytest.raises(ConflictError) as exc:
        ws_svc.join(
            tmp_path / "x",
            pg_url,
            ledger_key=str(keys / "ledger.key"),
            secrets_key=str(other / "keys" / "secrets.key"),
        )
    assert _code(exc) == "secrets_key_mismatch"
    with pytest.raises(InputError) as exc:
        ws_svc.join(tmp_path / "x", pg_url)
    assert _code(exc) == "bad_argument"
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConflictError) as exc:
        ws_svc.join(other, pg_url, ledger_key=str(keys / "ledger.key"))
    assert _code(exc) == "workspace_exists"

    # The operator copied both key files to host2; join checks them and records the store.
    users_before = _user_count(host1.engine)
    result = runner.invoke(
        app,
        [
            "join",
            "--home",
            str(tmp_path / "host2"),
            "--store-url",
            pg_url,
            "--ledger-key",
            str(keys / "ledger.key"),
            "--secrets-key",
            str(keys / "secrets.key"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["vkey"] == ledger_svc.keys.load_signer(host1).verifier.vkey
    assert _user_count(host1.engine) == users_before
    assert (tmp_path / "host2" / "keys" / "ledger.key").stat().st_mode & 0o777 == 0o600
    host2 = open_workspace(tmp_path / "host2")  # CUSTODES_STORE_URL unset: the recorded store
    assert host2.engine.dialect.name == "postgresql"

    # Both hosts sign (an administrator's session works on either: one store).
    second = _signed_checkpoint(host2, people.admin)
    third = _signed_checkpoint(host1, people.second_admin)
    assert first < second < third
    for ws in (host1, host2):
        report = ledger_svc.verify_store(ws, people.admin)
        assert report.ok, report.problems

    # A key other than the ledger's, set on host2 later, signs nothing.
    monkeypatch.setenv("CUSTODES_LEDGER_KEY", str(other / "keys" / "ledger.key"))
    with pytest.raises(ConflictError) as exc:
        _signed_checkpoint(host2, people.admin)
    assert _code(exc) == "ledger_key_mismatch"
    host1.close()
    host2.close()


def test_a_key_made_later_for_the_same_ledger_signs_nothing(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "w")
    people = staff_mod.administrators(ws, password=PASSWORD)
    _signed_checkpoint(ws, people.admin)
    (ws.keys / "ledger.key").unlink()  # lost, or removed to make another
    ledger_svc.keygen(ws, people.admin)
    with pytest.raises(ConflictError) as exc:
        _signed_checkpoint(ws, people.admin)
    assert _code(exc) == "ledger_key_mismatch"
    ws.close()
