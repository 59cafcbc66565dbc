"""The core, without any face: every service takes a Caller and refuses — with the registered
code, recorded in the access log — a suspended caller, an ended session, a caller without the
role, and a forged one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import inspect
import pkgutil

import pytest
import sqlalchemy as sa

import custodes.services as services_pkg
from conftest import PASSWORD
from custodes.access import ACTIONS, SERVICES, Caller, caller, sessions
from custodes.errors import REGISTRY, AccessDenied
from custodes.ledger import anchors
from custodes.services import records, users
from custodes.store import tables
from custodes.store.tables import access_log
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff

# Every public module of custodes.services, found rather than listed: importing them all here also
# declares every service in `SERVICES`, whichever tests run with this file (alone, it
# would otherwise miss the services of the modules nothing else imported).
MODULES = tuple(
    importlib.import_module(f"{services_pkg.__name__}.{m.name}")
    for m in pkgutil.iter_modules(services_pkg.__path__)
    if not m.name.startswith("_")  # a private helper of a service module (`_worker`)
)


def _args(fn) -> list[None]:  # type: ignore[no-untyped-def]
    params = list(inspect.signature(fn).parameters.values())[1:]  # after the CheckedCall
    return [
        None
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _refusals(staff: Staff) -> dict[str, Caller]:
    ws = staff.ws
    ended = caller(ws, sessions.login(ws, "auditor", PASSWORD))
    sessions.logout(ws, sessions.login(ws, "auditor", PASSWORD))
    with ws.engine.begin() as conn:  # end exactly that session (as custodes would)
        anchors.update_rows(
            conn,
            "auditor",
            tables.sessions,
            tables.sessions.c.token_sha256 == ended.token_sha256,
            ended_at=dt.datetime.now(dt.UTC),
            ended_reason="signed_out",
        )
    staff_mod.add(staff, "to-suspend", ["officer", "approver", "auditor"])
    suspended = staff["to-suspend"]
    staff_mod.add(staff, "admin3", ["administrator"])
    users.suspend(ws, staff.admin, "to-suspend", "test")
    staff_mod.add(staff, "idle", ["auditor"])
    with ws.engine.begin() as conn:  # every grant expired: no role at all (time moved on)
        anchors.update_rows(
            conn,
            "admin",
            tables.grants,
            tables.grants.c.user_name == "idle",
            expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        )
    forged = dataclasses.replace(staff["officer"], name="admin", roles=frozenset({"administrator"}))
    return {
        "suspended": suspended,
        "session_ended": ended,
        "forbidden": staff["idle"],
        "forged": forged,
    }


def test_every_service_is_declared_and_listed() -> None:
    declared = {k for k in SERVICES}
    public = {
        f"{m.__name__}.{name}"
        for m in MODULES
        for name, fn in vars(m).items()
        if inspect.isfunction(fn) and fn.__module__ == m.__name__ and not name.startswith("_")
    }
    undeclared = public - declared - set(services_pkg.OPEN)
    assert not undeclared, f"services without a door: {sorted(undeclared)}"
    assert all(action in ACTIONS for _, action in SERVICES.values())
    # every module found holds services (a module that silently stopped being found would not)
    holders = {fn.__module__ for fn, _ in SERVICES.values()}
    assert {m.__name__ for m in MODULES} <= holders
    assert {"custodes.services.reports", "custodes.services.jobs"} <= holders


def test_every_service_refuses_at_the_door(staff: Staff) -> None:
    ws = staff.ws
    bad = _refusals(staff)
    expected = {
        "suspended": "suspended",
        "session_ended": "session_ended",
        "forbidden": "forbidden",
    }
    with ws.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(access_log)).scalar()
    tried = 0
    for name, (fn, _action) in sorted(SERVICES.items()):
        for kind, who in bad.items():
            with pytest.raises(AccessDenied) as exc:
                fn(ws, who, *_args(fn))
            code = exc.value.code
            if kind == "forged":  # someone else's name on a real token
                assert code in ("not_signed_in", "suspended"), (name, code)
            else:
                assert code == expected[kind], (name, kind, code)
            assert REGISTRY[code].kind is type(exc.value) or issubclass(
                type(exc.value), REGISTRY[code].kind
            )
            tried += 1
    with ws.engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(access_log)).scalar()
    assert after - before == tried  # every refusal is on the record


def test_a_service_takes_only_a_caller(staff: Staff) -> None:
    with pytest.raises(TypeError):
        records.summary(staff.ws, "admin")  # type: ignore[arg-type]
