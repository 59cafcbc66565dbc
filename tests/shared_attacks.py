"""What the attack tests share: the workspace set up through the CLI (`attack`, built once
per module and carried from test to test, as the attack was) and the shell that runs
`custodes ...` signed in as someone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import PASSWORD
from custodes.access import sessions
from custodes.cli import app
from custodes.services import rules, users
from custodes.synthetic import staff as staff_mod
from custodes.workspace import open_workspace

AGENCY = "U.S. Immigration and Customs Enforcement"


@dataclass
class Ran:
    """What a command left: its exit code and what it wrote to each stream."""

    returncode: int
    stdout: str
    stderr: str


class Shell:
    """Runs `custodes ...` signed in as someone, with no other CUSTODES_* setting: the CLI's
    own app in this process (a child interpreter per command cost ≈ 1.1 s of CPU before the
    command began; what is attacked here is the commands, not the process)."""

    def __init__(self, home: Path, tokens: dict[str, str]) -> None:
        self.home, self.tokens = home, tokens

    def __call__(self, who: str | None, *args: str, stdin: str = "") -> Ran:
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CUSTODES")}
        if who:
            env["CUSTODES_SESSION"] = self.tokens[who]
        r = CliRunner().invoke(app, [*args, "--home", str(self.home)], input=stdin, env=env)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception  # a traceback, as the command would have printed
        return Ran(r.exit_code, r.stdout, r.stderr)


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Shell, Path]:
    """A workspace set up through the CLI: administrators, staff, an agency key, a master file,
    a processed and approved (i)(2) request."""
    root = tmp_path_factory.mktemp("attack")
    home = root / "ws"
    sh = Shell(home, {})
    assert (
        sh(None, "init", "--admin", "chief", "--password-stdin", stdin=PASSWORD + "\n").returncode
        == 0
    )
    ws = open_workspace(home)
    people = staff_mod.Staff(ws, password=PASSWORD)
    people.login("chief")
    code = users.add(ws, people["chief"], "deputy", ["administrator"])["enrolment_code"]
    from custodes.access.enrolment import enrol

    enrol(ws, "deputy", code, PASSWORD)
    people.login("deputy")
    people.callers["admin"], people.callers["admin2"] = people["chief"], people["deputy"]
    for name, role in (
        ("olga", "officer"),
        ("ben", "approver"),
        ("ida", "auditor"),
        ("ann", "administrator"),
    ):
        staff_mod.add(people, name, [role])
    staff_mod.add(people, "agency-ice", ["requester"], agency=AGENCY)
    from custodes.services import decisions, matching, records, requests

    records.generate(ws, people["chief"], 3000, 5)
    rules.register_parties(ws, people["chief"], "irc-6103-i-2")
    requests.generate(ws, people["chief"], "irc-6103-i-2", 200, 2, root / "req")
    rid = requests.submit(ws, people["agency-ice"], root / "req").request_id
    matching.train(ws, people["olga"], rid)
    decisions.process(ws, people["olga"], rid)
    if decisions.next_step(ws, people["olga"], rid)["state"] == "in_review":
        decisions.review_resolve(ws, people["olga"], rid, "WITHHOLD", "unsure")
    decisions.prepare(ws, people["olga"], rid)
    decisions.approve(ws, people["ben"], rid)
    key = users.key(ws, people["chief"], "agency-ice")["key"]
    users.confirm(ws, people["deputy"], "agency-ice")
    sh.tokens.update(
        {
            n: sessions.login(ws, n, PASSWORD)
            for n in ("chief", "deputy", "olga", "ben", "ida", "ann")
        }
    )
    sh.tokens["agency-ice"] = key
    (root / "rid").write_text(rid)
    ws.close()
    return sh, root
