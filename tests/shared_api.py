"""What the HTTP API's test modules share: the served app with its callers (`api`, built
once per module, in-process through FastAPI's TestClient) and the checks of a problem
document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import PASSWORD, Template, copy_template
from custodes.access import sessions
from custodes.api import create_app
from custodes.services import requests as requests_svc
from custodes.services import rules, users
from custodes.synthetic import staff as staff_mod

ROLES = ("officer", "approver", "auditor", "admin", "rule-steward", "requester", "other-agency")


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str], root: Path) -> None:
        self.c, self.tokens, self.root = client, tokens, root

    def h(self, who: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    def request(self, method: str, path: str, who: str | None = None, **kw: Any) -> Any:
        headers = self.h(who) | kw.pop("headers", {})
        return self.c.request(method, path, headers=headers, **kw)

    def __getattr__(self, method: str) -> Any:
        def call(path: str, who: str | None = None, **kw: Any) -> Any:
            headers = self.h(who) | kw.pop("headers", {})
            return getattr(self.c, method)(path, headers=headers, **kw)

        return call

    def wait(self, job: dict[str, Any], who: str) -> dict[str, Any]:
        self.c.app.state.jobs.wait(job["id"], timeout=300)  # type: ignore[attr-defined]
        return self.get(f"/v1/jobs/{job['id']}", who).json()  # type: ignore[no-any-return]

    def upload(self, folder: Path) -> dict[str, Any]:
        return {
            "envelope": ("envelope.json", (folder / "envelope.json").read_bytes()),
            "items": ("items.csv", (folder / "items.csv").read_bytes()),
        }


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    ws, people = copy_template(_master_template, root)
    rules.register_parties(ws, people.admin, "irc-6103-i-2")
    for seed in (2, 3):
        requests_svc.generate(ws, people.admin, "irc-6103-i-2", 150, seed, root / f"req-{seed}")
    tokens = {n: sessions.login(ws, n, PASSWORD) for n in ROLES[:5]}
    tokens["requester"] = users.key(ws, people.admin, "requester")["key"]
    users.confirm(ws, people.second_admin, "requester")
    staff_mod.add(people, "other-agency", ["requester"], agency="U.S. Department of Labor")
    tokens["other-agency"] = users.key(ws, people.admin, "other-agency")["key"]
    users.confirm(ws, people.second_admin, "other-agency")
    home, url = ws.home, str(ws.engine.url)
    ws.close()
    with TestClient(create_app(home, url), client=("203.0.113.9", 50000)) as client:
        yield Api(client, tokens, root)


def _problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith(code)
    return body  # type: ignore[no-any-return]


def ledger_svc_vkey(api: Api) -> str:
    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    from custodes.ledger.keys import load_signer

    return load_signer(ws).verifier.vkey
