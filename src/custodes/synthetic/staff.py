"""Real users for the demo, the benchmarks and the tests, made through the door.

Nothing here bypasses the door: the first administrator is bootstrapped, a second one is
created and enrols with their (whole, bootstrap) code, every other user is created by one
administrator, confirmed by the other and enrols with the two halves of their code (one from
each administrator); an agency account gets a key that the
second administrator confirms. The callers returned are ordinary signed-in callers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from custodes.access import (
    Caller,
    CheckedCall,
    caller,
    enrolment,
    enter,
    grants,
    sessions,
    users,
)
from custodes.access.roles import PRIVILEGED
from custodes.rules import registry
from custodes.workspace import Workspace


def random_password() -> str:
    return secrets.token_urlsafe(18)


@dataclass
class Staff:
    """Signed-in callers by user name, the password every helper-made user set (random unless
    the caller chooses one: no password is fixed in the source), the API key each agency
    account was issued here (shown once, like `custodes users key`) and the session token of
    each sign-in made here (for a test driving the CLI as that user)."""

    ws: Workspace
    callers: dict[str, Caller] = field(default_factory=dict)
    password: str = field(default_factory=random_password, repr=False)
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    tokens: dict[str, str] = field(default_factory=dict, repr=False)  # each login's session

    def __getitem__(self, name: str) -> Caller:
        return self.callers[name]

    @property
    def admin(self) -> Caller:
        return self.callers[ADMINS[0]]

    @property
    def second_admin(self) -> Caller:
        return self.callers[ADMINS[1]]

    def login(self, name: str) -> Caller:
        self.tokens[name] = sessions.login(self.ws, name, self.password)
        self.callers[name] = caller(self.ws, self.tokens[name])
        return self.callers[name]


ADMINS = ("admin", "admin2")


def administrators(ws: Workspace, password: str | None = None) -> Staff:
    """The first two administrators (bootstrapped, enrolled, signed in); idempotent when
    given the same `password` (random when none is given)."""
    staff = Staff(ws, password=password or random_password())
    if not users.has_users(ws):
        users.bootstrap_admin(ws, ADMINS[0], staff.password)
    first = staff.login(ADMINS[0])
    if ADMINS[1] not in _names(ws):
        code = enrolment.create_user(_as(ws, first), ADMINS[1], ["administrator"])["enrolment_code"]
        enrolment.enrol(ws, ADMINS[1], code, staff.password)
    staff.login(ADMINS[1])
    return staff


def add(
    staff: Staff,
    name: str,
    roles: list[str],
    *,
    enrol: bool = True,
    agency: str | None = None,
    basis: str | None = None,
) -> str | None:
    """Create `name` with `roles` (confirmed by the second administrator), enrol and sign in.
    A requester account gets a confirmed key instead. Returns the enrolment code when
    `enrol` is false (for someone to use later), else None."""
    ws, first, second = staff.ws, staff.admin, staff.second_admin
    if name in _names(ws):  # made by an earlier run
        if "requester" in roles:
            _agency_key(staff, name)
        elif enrol:
            staff.login(name)
        return None
    if agency is not None:  # proposed by one administrator, confirmed by the other
        proposed = registry.add_agency(
            enter(ws, first, "registry.change"), agency, safeguards_current=True, open_findings=0
        )
        grants.confirm_change(_as(ws, second, "users.confirm"), proposed["change"])
    info = enrolment.create_user(_as(ws, first), name, roles, basis=basis, agency=agency)
    code: str = info["enrolment_code"]
    if info["change"]:
        done = grants.confirm_change(_as(ws, second, "users.confirm"), info["change"])
        if done["enrolment_code_second_half"]:
            code = f"{code} {done['enrolment_code_second_half']}"
    if "requester" in roles:
        _agency_key(staff, name)
        return None
    if not enrol:
        return code
    enrolment.enrol(ws, name, code, staff.password)
    staff.login(name)
    return None


def whole_code(ws: Workspace, second: Caller, issued: dict[str, Any]) -> str:
    """The usable enrolment code of a user that one administrator added or reset (`issued`,
    what that returned): its first half and the second half that `second`, another
    administrator, receives by confirming the change."""
    done = grants.confirm_change(_as(ws, second, "users.confirm"), issued["change"])
    return f"{issued['enrolment_code']} {done['enrolment_code_second_half']}"


def one_per_role(
    ws: Workspace,
    agency: str = "U.S. Immigration and Customs Enforcement",
    *,
    password: str | None = None,
) -> Staff:
    """Administrators plus one user per other role, named after it (rule_steward is
    'rule-steward'), each with `password` (random when none is given); the requester acts for
    `agency`."""
    staff = administrators(ws, password)
    for role in PRIVILEGED:
        if role != "administrator":
            add(staff, role.replace("_", "-"), [role])
    add(staff, "requester", ["requester"], agency=agency)
    return staff


def _as(ws: Workspace, admin: Caller, action: str = "users.add") -> CheckedCall:
    return enter(ws, admin, action)


def _names(ws: Workspace) -> set[str]:
    with ws.engine.connect() as conn:
        return {u["user"] for u in users.listing(conn)}


def _agency_key(staff: Staff, name: str) -> None:
    """A confirmed API key for an agency account, signed in."""
    issued = sessions.issue_key(_as(staff.ws, staff.admin, "users.key"), name)
    grants.confirm_change(_as(staff.ws, staff.second_admin, "users.confirm"), issued["change"])
    staff.keys[name] = issued["key"]
    staff.callers[name] = caller(staff.ws, issued["key"])
