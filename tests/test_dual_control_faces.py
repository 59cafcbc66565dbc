"""Nobody completes a two-person action alone, whichever face they use (issue #22).

One administrator drives every access-management path of the HTTP API, the console and the
command line, in any order hypothesis chooses, keeping every code, half a code, key and change
id they are shown; they then try every enrolment those could make. Afterwards nobody holds a
privileged role they did not hold before, no key they issued works, the policy and the
registries the gate trusts are unchanged, and no account took a password they chose.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import PASSWORD, Template, copy_template
from custodes.access import enrolment, sessions, users
from custodes.access import policy as access_policy
from custodes.access.roles import PRIVILEGED
from custodes.app import create_app
from custodes.cli import app as cli_app
from custodes.errors import CustodesError
from custodes.rules import registry
from custodes.services import workspace as ws_svc
from custodes.workspace import Workspace, open_workspace

FACES = ("api", "console", "cli")
COMMANDS = (
    "add",
    "grant",
    "key",
    "reset",
    "confirm",
    "confirm_seen",
    "policy",
    "confirm_policy",
    "agency",
)
TARGETS = ("officer", "approver", "auditor", "requester", "admin2")
CODE = re.compile(r"\bce2?_[A-Za-z0-9_-]{20,}")
KEY = re.compile(r"\bck_[A-Za-z0-9_-]{20,}")
CHANGE = re.compile(r"\b[0-9a-f]{64}\b")


@dataclass
class Rogue:
    """One administrator at every face, and everything they were ever shown."""

    home: Path
    url: str
    client: TestClient
    api_token: str
    console_token: str
    csrf: str
    codes: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    changes: set[str] = field(default_factory=set)
    n: int = 0

    def saw(self, text: str) -> None:
        self.codes |= set(CODE.findall(text))
        self.keys |= set(KEY.findall(text))
        self.changes |= set(CHANGE.findall(text))

    def api(self, method: str, path: str, **kw: Any) -> None:
        r = self.client.request(
            method, path, headers={"Authorization": f"Bearer {self.api_token}"}, **kw
        )
        assert r.status_code < 500, (path, r.text)
        self.saw(r.text)

    def console(self, path: str, **form: str) -> None:
        r = self.client.post(
            path,
            data={"csrf": self.csrf, **form},
            headers={"Cookie": f"__Host-custodes_session={self.console_token}"},
            follow_redirects=False,
        )
        assert r.status_code < 500, (path, r.text)
        self.saw(r.text)

    def cli(self, *args: str) -> None:
        r = CliRunner().invoke(
            cli_app,
            [*args, "--home", str(self.home), "--json"],
            env={"CUSTODES_SESSION": self.api_token, "CUSTODES_STORE_URL": self.url},
        )
        assert r.exit_code in (0, 1, 2), (args, r.output)
        self.saw(r.output)


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Iterator[Rogue]:
    root = tmp_path_factory.mktemp("dual-control")
    ws, _ = copy_template(_master_template, root)
    home, url = ws.home, str(ws.engine.url)
    api_token = sessions.login(ws, "admin", PASSWORD)
    console_token = sessions.login(ws, "admin", PASSWORD, kind="console")
    csrf = ws_svc.csrf_token(ws, console_token)
    ws.close()
    with TestClient(
        create_app(home, url), base_url="https://testserver", client=("203.0.113.77", 50000)
    ) as client:
        yield Rogue(home, url, client, api_token, console_token, csrf)


def _do(rogue: Rogue, face: str, command: str, target: str) -> None:
    rogue.n += 1
    new = f"new-{rogue.n}"
    if face == "api":
        {
            "add": lambda: rogue.api(
                "POST", "/v1/users", json={"name": new, "role": "approver", "basis": "b"}
            ),
            "grant": lambda: rogue.api(
                "POST", f"/v1/users/{target}/grants", json={"role": "approver", "basis": "b"}
            ),
            "key": lambda: rogue.api("POST", f"/v1/users/{target}/keys", json={"days": 30}),
            "reset": lambda: rogue.api("POST", f"/v1/users/{target}/code"),
            "confirm": lambda: rogue.api("POST", f"/v1/users/{target}/confirm"),
            "confirm_seen": lambda: [
                rogue.api("POST", f"/v1/changes/{c}/confirm") for c in sorted(rogue.changes)
            ],
            "policy": lambda: rogue.api("POST", "/v1/policy/totp_roles", json={"value": ""}),
            "confirm_policy": lambda: rogue.api("POST", "/v1/policy/totp_roles/confirm"),
            "agency": lambda: rogue.api(
                "POST",
                "/v1/registries/agencies",
                json={"name": f"Agency {new}", "safeguards_current": True, "open_findings": 0},
            ),
        }[command]()
    elif face == "console":
        {
            "add": lambda: rogue.console("/users", name=new, role="approver", basis="b"),
            "grant": lambda: rogue.console("/users/grant", user=target, role="approver", basis="b"),
            "key": lambda: None,  # the console issues no keys
            "reset": lambda: rogue.console(f"/users/{target}/code"),
            "confirm": lambda: rogue.console(f"/users/{target}/confirm"),
            "confirm_seen": lambda: [
                rogue.console(f"/changes/{c}/confirm") for c in sorted(rogue.changes)
            ],
            "policy": lambda: None,  # policy is changed on the API and the command line
            "confirm_policy": lambda: None,
            "agency": lambda: rogue.console(
                "/registries/agencies", name=f"Agency {new}", safeguards_current="yes"
            ),
        }[command]()
    else:
        {
            "add": lambda: rogue.cli("users", "add", new, "--role", "approver"),
            "grant": lambda: rogue.cli("users", "grant", target, "--role", "approver"),
            "key": lambda: rogue.cli("users", "key", target),
            "reset": lambda: rogue.cli("users", "totp", target),
            "confirm": lambda: rogue.cli("users", "confirm", target),
            "confirm_seen": lambda: [
                rogue.cli("changes", "confirm", c) for c in sorted(rogue.changes)
            ],
            "policy": lambda: rogue.cli("users", "policy", "--totp-roles", ""),
            "confirm_policy": lambda: rogue.cli("users", "policy", "--confirm"),
            "agency": lambda: rogue.cli("agencies", "add", f"Agency {new}", "--safeguards-current"),
        }[command]()


def _state(ws: Workspace) -> tuple[dict[str, frozenset[str]], frozenset[str], set[str]]:
    with ws.engine.connect() as conn:
        listed = users.listing(conn)
        roles = {u["user"]: users.roles_of(conn, u["user"]) for u in listed}
        policy = access_policy.totp_roles(conn)
    agencies = {a["name"] for a in registry.listing(ws, "agencies")}
    return roles, policy, agencies


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(FACES), st.sampled_from(COMMANDS), st.sampled_from(TARGETS)),
        min_size=1,
        max_size=5,
    )
)
def test_one_administrator_completes_nothing_alone_at_any_face(rogue: Rogue, steps) -> None:  # type: ignore[no-untyped-def]
    ws = open_workspace(rogue.home, rogue.url)
    try:
        roles_before, policy_before, agencies_before = _state(ws)
        for face, command, target in steps:
            _do(rogue, face, command, target)
        # every enrolment the rogue's codes could make, one half or two, for anyone
        # (each attempt costs a password hash: the names this sequence touched, and each
        # code alone or a first half with a second half)
        taken = []
        names = sorted({t for _, _, t in steps} | {f"new-{rogue.n - i}" for i in range(5)})
        firsts = sorted(c for c in rogue.codes if not c.startswith("ce2_"))[-3:]
        seconds = sorted(c for c in rogue.codes if c.startswith("ce2_"))[-3:]
        combos = [(a, "") for a in firsts + seconds] + list(itertools.product(firsts, seconds))
        for name, (a, b) in itertools.product(names, combos):
            with contextlib.suppress(CustodesError):
                enrolment.enrol(ws, name, f"{a} {b}", "the rogue's own password")
                taken.append(name)
        assert taken == [], f"the rogue enrolled as {taken}"
        roles_after, policy_after, agencies_after = _state(ws)
        for name, held in roles_after.items():
            gained = held - roles_before.get(name, frozenset())
            assert not gained & set(PRIVILEGED), (name, gained, steps)
        assert policy_after == policy_before
        assert agencies_after == agencies_before, agencies_after - agencies_before
        for key in rogue.keys:
            r = rogue.client.get("/v1/requests", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 401, (key[:8], r.text)
    finally:
        ws.close()
    json.dumps(steps)  # the failing sequence is printed by hypothesis
