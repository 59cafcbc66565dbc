"""A real workspace behind the real API, in-process, with one credential per role: what the
API harnesses (`api_json.py`, `api_stateful.py`) call.

The workspace is made the way the tests make theirs (`custodes init`, the staff through the
door, a synthetic master file, the parties of §6103(i)(2) registered, one request submitted
by the agency's key), on SQLite in a temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("CUSTODES_IDLE_MINUTES", "720")  # long runs keep their sessions

PASSWORD = "fuzzing password, not a secret"  # the throwaway workspace's users only

# Every role's credential, by the name the tables use: the agency's API key and a session of
# each staff role (two administrators: dual control needs both).
ROLES = (
    "agency_key",
    "officer",
    "approver",
    "rule_steward",
    "auditor",
    "administrator",
    "second_administrator",
    "anonymous",
)


@dataclass
class Served:
    client: object  # fastapi.testclient.TestClient
    tokens: dict[str, str | None]
    request_id: str
    root: Path

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens[role]
        return {"Authorization": f"Bearer {token}"} if token else {}


@contextmanager
def served(people: int = 300) -> Iterator[Served]:
    from fastapi.testclient import TestClient

    from custodes.access import sessions
    from custodes.api import create_app
    from custodes.services import records as records_svc
    from custodes.services import requests as requests_svc
    from custodes.services import rules as rules_svc
    from custodes.services import workspace as ws_svc
    from custodes.synthetic import staff as staff_mod
    from custodes.workspace import open_workspace

    with tempfile.TemporaryDirectory(prefix="custodes-api-fuzz-") as tmp:
        root = Path(tmp)
        home, url = root / "ws", f"sqlite:///{root / 'ws.db'}"
        ws_svc.init(home, url, origin="custodes.fuzz/ledger")
        ws = open_workspace(home, url)
        staff = staff_mod.one_per_role(ws, password=PASSWORD)
        records_svc.generate(ws, staff.admin, people, 11)
        rules_svc.register_parties(ws, staff.admin, "irc-6103-i-2")
        requests_svc.generate(ws, staff.admin, "irc-6103-i-2", 30, 2, root / "req")
        sub = requests_svc.submit(ws, staff["requester"], root / "req")
        tokens: dict[str, str | None] = {
            "agency_key": staff.keys["requester"],
            "officer": sessions.login(ws, "officer", PASSWORD),
            "approver": sessions.login(ws, "approver", PASSWORD),
            "rule_steward": sessions.login(ws, "rule-steward", PASSWORD),
            "auditor": sessions.login(ws, "auditor", PASSWORD),
            "administrator": sessions.login(ws, "admin", PASSWORD),
            "second_administrator": sessions.login(ws, "admin2", PASSWORD),
            "anonymous": None,
        }
        ws.close()
        with TestClient(create_app(home, url), raise_server_exceptions=False) as client:
            yield Served(client, tokens, sub.request_id, root)
