"""The HTTP API, in-process (FastAPI's TestClient drives the real ASGI app with its lifespan):
problem details, authentication on every call, the role x route matrix, idempotency keys, the
whole main job from an agency's submission to its download, suspension taking effect on the
next call, and an outside client verifying the live ledger from its tiles."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import PASSWORD, Template, copy_template
from custodes.access import sessions
from custodes.access.roles import ACTIONS
from custodes.api import create_app
from custodes.ledger import tiles
from custodes.ledger.note import Verifier, open_checkpoint
from custodes.ledger.tree import leaf_hash, memory_perfect, root
from custodes.ledger.verify import verify_receipt
from custodes.services import ledger as ledger_svc
from custodes.services import reports as reports_svc
from custodes.services import requests as requests_svc
from custodes.services import rules, users
from custodes.services import workspace as ws_svc
from custodes.synthetic import staff as staff_mod
from servers import bound_socket, wait_started

ROLES = ("officer", "approver", "auditor", "admin", "rule-steward", "requester", "other-agency")
ROLE_OF = {"admin": "administrator", "rule-steward": "rule_steward", "other-agency": "requester"}


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


def test_schema_is_openapi_31_with_examples(api: Api) -> None:
    schema = api.get("/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    # a duplicate submission answers 200 with the first submission: the schema says so
    assert {"200", "201", "202"} <= set(schema["paths"]["/v1/requests"]["post"]["responses"])
    ours = {k: v for k, v in schema["components"]["schemas"].items() if "ValidationError" not in k}
    assert ours and all("examples" in v for v in ours.values()), [
        k for k, v in ours.items() if "examples" not in v
    ]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_errors_are_problem_details_without_values(api: Api) -> None:
    r = api.get("/v1/requests")
    body = _problem(r, 401, "not_signed_in")
    assert r.headers["www-authenticate"].startswith("Bearer")
    # an HTTP client is told what to send, not to run a shell command (#24, minor)
    assert "Authorization: Bearer" in body["detail"] and "custodes login" not in body["detail"]
    # a 405 names every method the resource allows (GET and POST here), not one route's
    wrong = api.put("/v1/requests", "officer")
    _problem(wrong, 405, "method_not_allowed")
    assert {m.strip() for m in wrong.headers["allow"].split(",")} >= {"GET", "POST"}
    made_up = {"Authorization": "Bearer made-up"}
    _problem(api.get("/v1/requests", headers=made_up), 401, "not_signed_in")
    _problem(api.get("/v1/no-such-route"), 404, "not_found")
    _problem(api.put("/v1/health"), 405, "method_not_allowed")
    secret = "123-45-6789 JOHN Q PUBLIC"
    r = api.post("/v1/sessions", json={"name": 7, "password": [secret]})
    body = _problem(r, 422, "bad_argument")
    assert secret not in r.text and body["problems"]
    r = api.post("/v1/requests", "requester", content=secret, headers={"content-type": "text/x"})
    _problem(r, 415, "unsupported_media_type")
    assert secret not in r.text
    assert api.get("/v1/problems/self_approval").json()["status"] == 403


def test_docs_and_every_v1_answer_carry_the_consoles_security_headers(api: Api) -> None:
    """Issue #22 item 9: the docs page names only custodes' own assets (no CDN), and every /v1
    response carries the console's security headers."""
    docs = api.get("/v1/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert "http" not in docs.text.lower().replace("http-equiv", "")  # no absolute URL at all
    assert "<script>" not in docs.text  # no inline script: the CSP allows none
    for r in (
        docs,
        api.get("/v1/health"),
        api.get("/v1/openapi.json"),
        api.get("/v1/requests"),  # a problem (401)
        api.get("/v1/requests", "officer"),
    ):
        h = r.headers
        assert "script-src 'self'" in h["content-security-policy"], r.url
        assert "unsafe-inline" not in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer" and h["cache-control"], r.url


def test_a_store_out_of_reach_says_when_to_retry() -> None:
    """A 503 or 429 always carries Retry-After, also when its cause names no time (#24)."""
    from custodes.errors import WorkspaceError
    from custodes.http.problems import from_error

    r = from_error(WorkspaceError("The store cannot be reached.", code="store_unreachable"))
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0


def test_sign_in_throttled_per_account_and_address(api: Api) -> None:
    """Issue #22 item 7: invented names from one address lock nobody; guessing a named
    account's password from one address backs off that address only; X-Forwarded-For from
    a client that is not the configured proxy is ignored."""
    r = api.post("/v1/sessions", json={"name": "auditor", "password": PASSWORD})
    assert r.status_code == 201 and r.json()["token"]
    who = api.get("/v1/whoami", headers={"Authorization": f"Bearer {r.json()['token']}"})
    assert who.json()["roles"] == ["auditor"]
    attacker = TestClient(api.c.app, client=("192.0.2.66", 40000))
    codes = [
        attacker.post("/v1/sessions", json={"name": f"nobody-{i}", "password": "x"}).status_code
        for i in range(8)
    ]
    assert codes == [401] * 8
    assert attacker.post("/v1/sessions", json={"name": "auditor", "password": PASSWORD}).is_success
    for _ in range(5):
        bad = attacker.post("/v1/sessions", json={"name": "auditor", "password": "wrong!" * 3})
        _problem(bad, 401, "bad_credentials")
    spoof = {"X-Forwarded-For": "198.51.100.99"}  # not from a trusted proxy: ignored
    r = attacker.post("/v1/sessions", json={"name": "auditor", "password": PASSWORD}, headers=spoof)
    _problem(r, 429, "locked")
    assert int(r.headers["retry-after"]) > 0
    other = TestClient(api.c.app, client=("198.51.100.7", 40000))
    assert other.post("/v1/sessions", json={"name": "auditor", "password": PASSWORD}).is_success


# route -> the action the core checks (what the role x route matrix expects)
ROUTES = {
    ("GET", "/v1/requests"): "requests.list",
    ("GET", "/v1/requests/{id}"): "requests.read",
    ("GET", "/v1/requests/{id}/next"): "requests.read",
    ("POST", "/v1/requests/{id}/withdraw"): "withdraw",
    ("GET", "/v1/requests/{id}/response"): "response.download",
    ("GET", "/v1/requests/{id}/response.csv"): "response.download",
    ("POST", "/v1/requests/{id}/process"): "process",
    ("POST", "/v1/requests/{id}/train"): "match.train",
    ("POST", "/v1/requests/{id}/release"): "release",
    ("GET", "/v1/requests/{id}/outcomes"): "outcomes",
    ("GET", "/v1/requests/{id}/items/{item}"): "explain",
    ("GET", "/v1/requests/{id}/review"): "review.read",
    ("GET", "/v1/requests/{id}/review/groups"): "review.read",
    ("POST", "/v1/requests/{id}/review"): "review.resolve",
    ("POST", "/v1/requests/{id}/prepare"): "prepare",
    ("POST", "/v1/requests/{id}/approve"): "approve",
    ("GET", "/v1/jobs"): "jobs.read",
    ("GET", "/v1/jobs/{job}"): "jobs.read",
    ("DELETE", "/v1/jobs/{job}"): "jobs.cancel",
    ("GET", "/v1/whoami"): "session",
    ("DELETE", "/v1/sessions/current"): "session",
    ("POST", "/v1/requests"): "submit",
    ("GET", "/v1/reports/accounting"): "reports.read",
    ("GET", "/v1/reports/jct"): "reports.read",
    ("POST", "/v1/reports/person"): "reports.person",
    ("GET", "/v1/reports/requests/{id}"): "reports.read",
    ("GET", "/v1/reports/recalls"): "reports.read",
    ("GET", "/v1/reports/safeguards"): "reports.read",
    ("GET", "/v1/incidents"): "incident.read",
    ("POST", "/v1/incidents"): "incident.open",
    ("POST", "/v1/incidents/{incident}/reported"): "incident.open",
    ("POST", "/v1/incidents/{incident}/close"): "incident.close",
    ("GET", "/v1/incidents/{incident}/draft"): "incident.read",
    ("POST", "/v1/requests/{id}/recall"): "recall",
    ("GET", "/v1/recalls"): "recalls.read",
    ("POST", "/v1/recalls/{recall}/certify"): "recall.certify",
    ("GET", "/v1/recalls/{recall}/notice"): "recalls.read",
    ("GET", "/v1/recalls/{recall}/notice.txt"): "recalls.read",
    ("POST", "/v1/recalls/{recall}/acknowledgement"): "recall.acknowledge",
    ("POST", "/v1/records/inspect"): "records.show",
    ("GET", "/v1/rules/changes"): "rules.read",
    ("POST", "/v1/rules/changes/{sha}/approve"): "rules.change",
    ("GET", "/v1/registries/{table}"): "registry.read",
    ("GET", "/v1/users"): "users.read",
    ("POST", "/v1/users"): "users.add",
    ("POST", "/v1/users/{name}/confirm"): "users.confirm",
    ("POST", "/v1/users/{name}/suspend"): "users.suspend",
    ("POST", "/v1/users/{name}/reinstate"): "users.reinstate",
    ("GET", "/v1/audit/inspections"): "audit",
    ("POST", "/v1/ledger/verify"): "ledger.read",
    ("POST", "/v1/records/{record}/sensitive"): "records.flag",
    ("POST", "/v1/rules/changes"): "rules.change",
    ("POST", "/v1/registries/agencies"): "registry.change",
    ("POST", "/v1/registries/officials"): "registry.change",
    ("POST", "/v1/registries/agreements"): "registry.change",
    ("POST", "/v1/users/{name}/grants"): "users.grant",
    ("POST", "/v1/users/{name}/code"): "users.reset",
    ("GET", "/v1/changes"): "users.read",
    ("POST", "/v1/changes/{id}/confirm"): "users.confirm",
    ("POST", "/v1/requests/{id}/paper-confirmation"): "requests.confirm_paper",
    ("POST", "/v1/users/{name}/keys"): "users.key",
    ("GET", "/v1/policy"): "users.read",
    ("POST", "/v1/policy/{key}"): "policy.change",
    ("POST", "/v1/policy/{key}/confirm"): "policy.change",
    ("GET", "/v1/records/summary"): "records.summary",
    ("POST", "/v1/ledger/checkpoint"): "ledger.sign",
}
OPEN_ROUTES = {
    ("GET", "/v1/health"),
    ("GET", "/v1/problems/{code}"),
    ("GET", "/v1/ledger/checkpoint"),
    ("GET", "/v1/ledger/tile/{path}"),
    ("GET", "/v1/ledger/receipts/{index}"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/witness/add-checkpoint"),
}


def test_every_route_is_in_the_matrix(api: Api) -> None:
    paths = api.get("/v1/openapi.json").json()["paths"]
    found = {
        (method.upper(), p.replace("{request_id}", "{id}").replace("{item_id}", "{item}"))
        for p, ops in paths.items()
        for method in ops
    }
    found = {(m, p.replace("{job_id}", "{job}").replace("{path:path}", "{path}")) for m, p in found}
    found = {
        (m, p.replace("{incident_id}", "{incident}").replace("{recall_id}", "{recall}"))
        for m, p in found
    }
    found = {
        (m, p.replace("{sha256}", "{sha}").replace("{record_id}", "{record}")) for m, p in found
    }
    assert found == set(ROUTES) | OPEN_ROUTES


def test_role_by_route_matrix(api: Api) -> None:
    """Every role on every route: refused with `forbidden` exactly where the action table
    says so, and never a server error. (A role may still meet a state or not-found problem.)"""
    sub = api.post("/v1/requests", "requester", files=api.upload(api.root / "req-3"))
    rid = sub.json()["request_id"]
    bodies = {
        "withdraw": {"json": {"reason": "matrix"}},
        "review.resolve": {"json": {"decision": "withhold", "reason": "matrix"}},
        "submit": {"files": api.upload(api.root / "req-3")},
        "reports.person": {
            "json": {"record_id": "rec-x", "purpose": "matrix of roles", "request": "PA-1"}
        },
        "incident.open": {"json": {"kind": "inspection", "summary": "role matrix check"}},
        "incident.close": {"json": {"finding": "unfounded"}},
        "recall": {"json": {"reason": "matrix"}},
        "recall.certify": {"json": {"certified_by": "R.O.", "certified_on": "2026-12-01"}},
        "records.show": {
            "json": {"record_id": "rec-x", "purpose": "role matrix check", "request_id": rid}
        },
        "users.add": {"json": {"reason": "matrix"}},
        "users.grant": {"json": {"reason": "matrix"}},
        "users.confirm": {"json": {"reason": "matrix"}},
        "users.suspend": {"json": {"reason": "matrix"}},
        "users.reinstate": {"json": {"reason": "matrix"}},
        "users.key": {"json": {"reason": "matrix"}},
        "users.reset": {"json": {"reason": "matrix"}},
        "records.flag": {"json": {"reason": "matrix"}},
        "ledger.read": {
            "content": b"not an archive",
            "headers": {"content-type": "application/zip"},
        },
        "rules.change": {
            "content": b"not an archive",
            "headers": {"content-type": "application/zip"},
        },
    }
    by_route = {
        ("POST", "/v1/users"): {"json": {"name": "matrix-user", "role": "officer", "basis": "m"}},
        ("POST", "/v1/users/{name}/grants"): {"json": {"role": "auditor", "basis": "matrix"}},
        ("POST", "/v1/users/{name}/keys"): {"json": {"days": 30}},
        ("POST", "/v1/policy/{key}"): {"json": {"value": "officer"}},
        ("POST", "/v1/registries/agencies"): {
            "json": {"name": "Matrix Agency", "safeguards_current": True, "open_findings": 0}
        },
        ("POST", "/v1/registries/officials"): {
            "json": {
                "agency": "No Such Agency",
                "name": "M. Atrix",
                "title": "Director",
                "role": "head",
                "valid_from": "2026-01-01",
            }
        },
        ("POST", "/v1/registries/agreements"): {
            "content": b"id: [unclosed",
            "headers": {"content-type": "application/yaml"},
        },
    }
    for (method, path), action in ROUTES.items():
        if action == "session":
            continue
        url = path.format(
            id=rid,
            item="item-0000001",
            job="job-0000000000000000",
            incident="inc-000000000000",
            recall="rcl-000000000000",
            sha="0" * 64,
            table="agencies",
            name="nobody-here",
            record="rec-x",
            key="no_such_policy",
        )
        for who in ROLES:
            if action in ("withdraw", "submit") and who == "requester":
                continue  # would change the request the other rows use
            body = by_route.get((method, path)) or bodies.get(action, {})
            r = api.request(method, url, who, **body)
            assert r.status_code < 500, (method, path, who, r.text)
            allowed = ROLE_OF.get(who, who) in ACTIONS[action]
            if not allowed:
                _problem(r, 403, "forbidden")
            elif r.headers.get("content-type", "").startswith("application/problem+json"):
                assert r.json()["code"] != "forbidden", (method, path, who)
    # another agency's request does not exist for a requester key
    _problem(api.get(f"/v1/requests/{rid}", "other-agency"), 404, "unknown_request")


def test_attacks_over_http(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack cases of "Close every hole", sent over HTTP: each refused with one problem
    that never quotes what was sent, and nothing kept."""
    import json

    from custodes.http import limits as routes  # where the upload limit is read

    before = len(api.get("/v1/requests", "officer").json())
    folder = api.root / "req-3"
    envelope = (folder / "envelope.json").read_bytes()
    items = (folder / "items.csv").read_text()

    def upload(items_text: str) -> dict[str, Any]:
        return {
            "files": {
                "envelope": ("envelope.json", envelope, "application/json"),
                "items": ("items.csv", items_text.encode(), "text/csv"),
            }
        }

    # SQL in an uploaded header and in an id never reaches SQL, and is not echoed
    header, rest = items.split("\n", 1)
    evil = 'x"; DROP TABLE requests; --'
    r = api.post("/v1/requests", "requester", **upload(header + f',"{evil}"\n' + rest))
    _problem(r, 422, "bad_column_name")
    assert "DROP TABLE" not in r.text
    first = rest.split(",", 1)
    r = api.post("/v1/requests", "requester", **upload(header + "\n" + "123-45-6789," + first[1]))
    _problem(r, 422, "bad_item_id")
    assert "123-45-6789" not in r.text
    # a field far beyond the limit
    long_row = rest.split("\n")[0].split(",")
    long_row[2] = "A" * 5000
    r = api.post("/v1/requests", "requester", **upload(header + "\n" + ",".join(long_row) + "\n"))
    _problem(r, 422, "oversize_field")
    # an oversized body is refused by its declared length, before it is read
    monkeypatch.setattr(routes, "MAX_UPLOAD", 1000)
    r = api.post(
        "/v1/requests",
        "requester",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": "999999"},
    )
    _problem(r, 413, "file_too_large")
    r = api.post("/v1/requests", "requester", json={"envelope": {}, "items": [{"x": "y" * 2000}]})
    _problem(r, 413, "file_too_large")
    r = api.post("/v1/requests", "requester", **upload(items))
    _problem(r, 413, "file_too_large")
    monkeypatch.undo()
    # malformed bodies and wrong content types
    _problem(
        api.post(
            "/v1/requests",
            "requester",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        422,
        "bad_json",
    )
    # every problem of a JSON body is named (where, never the value), not only the first
    tin = "123-45-6789"
    r = api.post("/v1/requests", "requester", json={"items": [{"a": 1}, {"b": [2]}, {tin: 3}]})
    detail = _problem(r, 422, "bad_argument")["detail"]
    assert all(w in detail for w in ("envelope: Field required", "items.0.a", "items.1.b"))
    assert "items.2.…" in detail and tin not in detail  # a key an agency chose, not quoted
    _problem(
        api.post(
            "/v1/requests",
            "requester",
            content=b"--x\r\nbroken",
            headers={"content-type": "multipart/form-data; boundary=x"},
        ),
        422,
        "bad_argument",
    )
    _problem(
        api.post("/v1/requests", "requester", content=b"a,b", headers={"content-type": "text/csv"}),
        415,
        "unsupported_media_type",
    )
    # impersonation: a made-up token, an agency key on a staff action, another agency's name
    _problem(
        api.post("/v1/requests/x/approve", headers={"Authorization": "Bearer officer"}),
        401,
        "not_signed_in",
    )
    other = json.loads(envelope)
    other["agency"] = "U.S. Department of Labor"
    r = api.post(
        "/v1/requests",
        "requester",
        files={
            "envelope": ("envelope.json", json.dumps(other).encode(), "application/json"),
            "items": ("items.csv", items.encode(), "text/csv"),
        },
    )
    _problem(r, 403, "other_agency")
    # a replayed idempotency key belongs to its account: another agency's replay is its own
    key = {"Idempotency-Key": "replay-2026-0001"}
    mine = api.post("/v1/requests", "requester", headers=key, **upload(items))
    assert mine.status_code in (200, 201), mine.text
    theirs = api.post("/v1/requests", "other-agency", headers=key, **upload(items))
    _problem(theirs, 403, "other_agency")
    assert mine.json()["request_id"] not in theirs.text
    # nothing refused was kept
    assert len(api.get("/v1/requests", "officer").json()) == before + (
        1 if mine.status_code == 201 else 0
    )


def test_idempotency_keys(api: Api) -> None:
    files = api.upload(api.root / "req-2")
    key = {"Idempotency-Key": "order-2026-11-30-0001"}
    first = api.post("/v1/requests", "requester", files=files, headers=key)
    assert first.status_code == 201 and first.headers["location"].endswith(
        first.json()["request_id"]
    )
    again = api.post("/v1/requests", "requester", files=files, headers=key)
    assert again.json() == first.json()
    other = api.upload(api.root / "req-3")
    _problem(
        api.post("/v1/requests", "requester", files=other, headers=key),
        422,
        "idempotency_key_reused",
    )
    # without a key, the same content is recognised as a duplicate (200)
    dup = api.post("/v1/requests", "requester", files=files)
    assert dup.status_code == 200 and dup.json()["duplicate"] is True


def test_main_job_over_http_and_ledger_verified_from_tiles(api: Api) -> None:
    """An agency key submits (JSON, items inline); an officer processes through a job,
    resolves review by group, prepares; an approver approves; the officer releases through a
    job; the agency downloads; an outsider verifies the live log from its tiles."""
    import csv

    folder = api.root / "req-2"
    with open(folder / "items.csv", newline="") as fh:
        items = [dict(r) for r in csv.DictReader(fh)][:60]
    import json

    envelope = json.loads((folder / "envelope.json").read_text())
    r = api.post("/v1/requests", "requester", json={"envelope": envelope, "items": items})
    assert r.status_code == 201, r.text
    rid = r.json()["request_id"]
    trained = api.wait(api.post(f"/v1/requests/{rid}/train", "officer").json(), "officer")
    assert trained["state"] == "succeeded", trained.get("problem")
    started = api.post(f"/v1/requests/{rid}/process", "officer")
    assert started.status_code == 202 and started.headers["location"].startswith("/v1/jobs/")
    done = api.wait(started.json(), "officer")
    assert done["state"] == "succeeded" and done["progress"]["stage"]
    _problem(api.get(f"/v1/jobs/{done['id']}", "approver"), 404, "unknown_job")
    for g in api.get(f"/v1/requests/{rid}/review/groups", "officer").json():
        body = {"decision": "withhold", "reason": "not established", "group": g["group"]}
        assert api.post(f"/v1/requests/{rid}/review", "officer", json=body).is_success
    page = api.get(f"/v1/requests/{rid}/outcomes?outcome=DISCLOSE&limit=5", "officer").json()
    assert page["total"] > 0 and len(page["items"]) <= 5
    item = page["items"][0]["item_id"]
    assert api.get(f"/v1/requests/{rid}/items/{item}", "auditor").json()["outcome"] == "DISCLOSE"
    assert api.post(f"/v1/requests/{rid}/prepare", "officer").is_success
    _problem(api.post(f"/v1/requests/{rid}/approve", "officer"), 403, "forbidden")
    assert api.post(f"/v1/requests/{rid}/approve", "approver").is_success
    _problem(api.get(f"/v1/requests/{rid}/response", "requester"), 409, "not_released")
    released = api.wait(api.post(f"/v1/requests/{rid}/release", "officer").json(), "officer")
    assert released["state"] == "succeeded", released
    response = api.get(f"/v1/requests/{rid}/response", "requester")
    assert response.status_code == 200
    doc = response.json()
    assert doc["counts"]["disclosed"] == page["total"] and doc["checkpoint"]
    csv_answer = api.get(f"/v1/requests/{rid}/response.csv", "requester")
    assert csv_answer.text.startswith('"item_id"')
    assert csv_answer.headers["content-disposition"] == f'attachment; filename="{rid}.csv"'
    _problem(api.get(f"/v1/requests/{rid}/response", "other-agency"), 404, "unknown_request")

    # An outsider: the checkpoint, then every tile, recomputes the signed root.
    note = api.get("/v1/ledger/checkpoint").content
    vkey = ledger_svc_vkey(api)
    cp, _ = open_checkpoint(note, Verifier.parse(vkey))
    entries: list[bytes] = []
    for n, width in tiles.tiles_for(cp.size, 0):
        t = api.get("/v1/ledger/" + tiles.tile_path("entries", n, width))
        assert t.status_code == 200
        if width == tiles.TILE_WIDTH:
            assert "immutable" in t.headers["cache-control"]
        entries += tiles.decode_bundle(t.content, width, "bundle")
        hashes = api.get("/v1/ledger/" + tiles.tile_path(0, n, width)).content
        assert hashes == b"".join(leaf_hash(e) for e in entries[-width:])
    leaves = [leaf_hash(e) for e in entries]
    assert root(memory_perfect(leaves), cp.size) == cp.root
    _problem(api.get("/v1/ledger/tile/0/999.p/3"), 404, "not_found")
    _problem(api.get("/v1/ledger/tile/0/../../etc"), 404, "not_found")

    # The accounting proves each disclosure by its ledger index; a report downloaded over HTTP
    # is the file whose hash the ledger records, so an outsider's export checks it.
    acc = api.get(f"/v1/reports/accounting?provision={envelope['provision']}", "auditor").json()
    mine = [r for r in acc["tables"][0]["rows"] if r["request_id"] == rid]
    assert len(mine) == doc["counts"]["disclosed"]
    assert all(0 <= r["ledger_index"] < cp.size for r in mine)
    # ...and anyone can fetch a receipt for each and check it with the log's key alone
    for r in mine[:5]:
        text = api.get(f"/v1/ledger/receipts/{r['ledger_index']}").text
        assert verify_receipt(text, Verifier.parse(vkey)).ok
    _problem(api.get(f"/v1/ledger/receipts/{cp.size + 10**6}"), 422, "bad_index")
    jct = api.get("/v1/reports/jct?format=csv", "auditor")
    assert jct.status_code == 200 and jct.headers["content-type"].startswith("text/csv")
    assert jct.headers["cache-control"] == "no-store"
    assert jct.headers["x-content-sha256"] == hashlib.sha256(jct.content).hexdigest()
    (api.root / "jct.csv").write_bytes(jct.content)
    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    auditor = ws_svc.caller(ws, api.tokens["auditor"])
    ledger_svc.export_bodies(ws, auditor, api.root / "export")
    assert reports_svc.verify(api.root / "jct.csv", api.root / "export")["ok"]
    pdf = api.get(f"/v1/reports/requests/{rid}?format=pdf", "officer")
    assert pdf.content.startswith(b"%PDF") and "attachment" in pdf.headers["content-disposition"]
    _problem(api.get("/v1/reports/jct", "requester"), 403, "forbidden")
    _problem(api.get("/v1/reports/jct?format=xlsx", "auditor"), 422, "bad_argument")


def ledger_svc_vkey(api: Api) -> str:
    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    from custodes.ledger.keys import load_signer

    return load_signer(ws).verifier.vkey


def test_staff_operations_over_http(api: Api) -> None:
    """After the main job above: recall and certification, a refused and a shown inspection,
    users added and confirmed by two administrators, registries, rule changes and the audit."""
    released = [r for r in api.get("/v1/requests", "officer").json() if r["state"] == "released"]
    assert released, "the main job test releases a request first"
    rid = released[0]["id"]
    outcomes = api.get(f"/v1/requests/{rid}/outcomes?outcome=DISCLOSE", "officer").json()
    first_item = outcomes["items"][0]["item_id"]
    # chosen items only (the console's and the CLI's --items): an item not disclosed is refused
    _problem(
        api.post(
            f"/v1/requests/{rid}/recall",
            "officer",
            json={"reason": "court ruling", "items": [first_item, "item-none"]},
        ),
        404,
        "not_disclosed",
    )
    one = api.post(
        f"/v1/requests/{rid}/recall",
        "officer",
        json={"reason": "wrong person", "items": [first_item]},
    )
    assert one.status_code == 200 and one.json()["items"] == 1, one.text
    assert api.get(f"/v1/requests/{rid}", "requester").json()["state"] == "released"
    r = api.post(f"/v1/requests/{rid}/recall", "officer", json={"reason": "court ruling"})
    assert r.status_code == 200, r.text
    recall_id = r.json()["recall_id"]
    assert [x["status"] for x in api.get("/v1/recalls", "auditor").json()] == ["open", "open"]
    # Issue #24 item 7: the agency learns of its recalls, downloads each notice, acknowledges
    mine = api.get("/v1/recalls", "requester").json()
    assert [x["recall_id"] for x in mine] == [one.json()["recall_id"], recall_id]
    assert mine[1]["requests"] == [rid] and mine[1]["reason"] == "court ruling"
    assert mine[1]["acknowledged"] == [] and mine[1]["notice"] is True
    assert mine[1]["at"].endswith(("Z", "+00:00"))
    assert api.get("/v1/recalls", "other-agency").json() == []
    notice = api.get(f"/v1/recalls/{recall_id}/notice", "requester").json()
    assert notice["recall_id"] == recall_id and notice["reason"] == "court ruling"
    assert [x["request_id"] for x in notice["requests"]] == [rid]
    assert first_item not in notice["requests"][0]["items"]  # recalled by the first recall
    assert len(notice["requests"][0]["items"]) == r.json()["items"]
    assert first_item in api.get(f"/v1/recalls/{mine[0]['recall_id']}/notice", "requester").text
    text = api.get(f"/v1/recalls/{recall_id}/notice.txt", "requester")
    assert text.text.startswith(f"NOTICE TO RETURN OR DESTROY — recall {recall_id}")
    assert text.headers["content-disposition"] == f'attachment; filename="notice-{recall_id}.txt"'
    ack = f"/v1/recalls/{recall_id}/acknowledgement"
    for who in ("other-agency",):  # another agency's recall does not exist for it
        _problem(api.get(f"/v1/recalls/{recall_id}/notice", who), 404, "unknown_recall")
        _problem(api.get(f"/v1/recalls/{recall_id}/notice.txt", who), 404, "unknown_recall")
        _problem(api.post(ack, who), 404, "unknown_recall")
    _problem(api.post(ack, "officer"), 403, "forbidden")  # staff never acknowledge for an agency
    _problem(
        api.post("/v1/recalls/rcl-000000000000/acknowledgement", "requester"), 404, "unknown_recall"
    )
    _problem(api.get("/v1/recalls/rcl-000000000000/notice", "officer"), 404, "unknown_recall")
    first = api.post(ack, "requester")
    assert first.status_code == 200 and first.json()["already"] is False, first.text
    again = api.post(ack, "requester").json()
    assert again["already"] is True
    assert again["acknowledged_at"] == first.json()["acknowledged_at"]
    seen = {x["recall_id"]: x for x in api.get("/v1/recalls", "officer").json()}
    assert [a["agency"] for a in seen[recall_id]["acknowledged"]] == [first.json()["agency"]]
    assert seen[one.json()["recall_id"]]["acknowledged"] == []
    _problem(
        api.post(
            f"/v1/recalls/{recall_id}/certify",
            "officer",
            json={"certified_by": "R.O.", "certified_on": "1999-01-01"},
        ),
        422,
        "bad_argument",
    )
    done = api.post(
        f"/v1/recalls/{recall_id}/certify",
        "officer",
        json={"certified_by": "R.O.", "certified_on": dt.date.today().isoformat()},
    )
    assert done.status_code == 200, done.text
    # an inspection needs a purpose and a candidate of an open request; refusals are problems
    _problem(
        api.post(
            "/v1/records/inspect",
            "officer",
            json={"record_id": "rec-x", "purpose": "short", "request_id": rid},
        ),
        422,
        "no_purpose",
    )
    # users: one administrator adds, the code comes back once; the same one cannot confirm
    made = api.post(
        "/v1/users", "admin", json={"name": "ben", "role": "approver", "basis": "detail order 9"}
    )
    assert made.status_code == 201 and made.json()["enrolment_code"], made.text
    assert made.json()["pending"] == ["approver"]
    _problem(api.post("/v1/users/ben/confirm", "admin"), 403, "separation_of_duties")
    listed = {u["user"]: u for u in api.get("/v1/users", "auditor").json()}
    assert listed["ben"]["grants"][0]["pending"] is True
    assert api.get("/v1/registries/agencies", "officer").json()
    assert api.get("/v1/rules/changes", "rule-steward").status_code == 200
    _problem(
        api.post(f"/v1/rules/changes/{'0' * 64}/approve", "rule-steward"), 404, "unknown_ruleset"
    )
    audit = api.get("/v1/audit/inspections", "auditor").json()
    assert audit["actions_by_suspended_users"] == [] and audit["inspections"] >= 1


def _zip(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, Path(folder.name) / f.relative_to(folder))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


ZIP = {"content-type": "application/zip"}


def test_rule_sets_registries_grants_and_exports_over_http(api: Api) -> None:
    """What was CLI-only: a rule set proposed as an archive and approved by a second steward,
    registry entries and an agreement, a further role granted, an export checked against the
    live log. Hostile archives and bodies are refused with one problem each."""
    import io
    import tarfile
    import zipfile

    from custodes.rules.provisions import REFERENCE

    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    rules_dir = api.root / "my-rules"
    shutil.copytree(REFERENCE, rules_dir)
    manifest = rules_dir / "ruleset.yaml"
    manifest.write_text(manifest.read_text().replace('version: "', 'version: "9', 1))
    r = api.post("/v1/rules/changes", "rule-steward", content=_zip(rules_dir), headers=ZIP)
    assert r.status_code == 201, r.text
    sha = r.json()["ruleset_sha256"]
    again = api.post("/v1/rules/changes", "rule-steward", content=_zip(rules_dir), headers=ZIP)
    _problem(again, 409, "already_proposed")
    _problem(
        api.post(f"/v1/rules/changes/{sha}/approve", "rule-steward"), 403, "separation_of_duties"
    )
    people = staff_mod.Staff(ws, password=PASSWORD)
    for admin in ("admin", "admin2"):
        people.login(admin)
        people.callers[admin] = people[admin]
    staff_mod.add(people, "second-steward", ["rule_steward"])
    signed = TestClient(api.c.app, client=("192.0.2.45", 40000)).post(
        "/v1/sessions", json={"name": "second-steward", "password": PASSWORD}
    )
    api.tokens["second-steward"] = signed.json()["token"]
    r = api.post(f"/v1/rules/changes/{sha}/approve", "second-steward")
    assert r.status_code == 200, r.text
    assert [c["state"] for c in api.get("/v1/rules/changes", "officer").json()] == ["active"]
    # hostile or broken archives: each one problem, nothing kept
    slip = _zip(rules_dir, {"../escape.yaml": b"x: 1"})
    _problem(
        api.post("/v1/rules/changes", "rule-steward", content=slip, headers=ZIP), 422, "bad_archive"
    )
    assert not (api.root / "escape.yaml").exists()
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w:gz") as tf:
        info = tarfile.TarInfo("rules/ruleset.yaml")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    tgz = {"content-type": "application/gzip"}
    r = api.post("/v1/rules/changes", "rule-steward", content=link.getvalue(), headers=tgz)
    _problem(r, 422, "bad_archive")
    _problem(
        api.post("/v1/rules/changes", "rule-steward", content=b"PK\x03\x04 torn", headers=ZIP),
        422,
        "bad_archive",
    )
    broken = api.root / "broken-rules"
    shutil.copytree(rules_dir, broken)
    (broken / "ruleset.yaml").write_text("name: [unclosed\n")
    r = api.post("/v1/rules/changes", "rule-steward", content=_zip(broken), headers=ZIP)
    assert r.status_code == 422 and r.json()["code"] == "bad_ruleset", r.text
    r = api.post(
        "/v1/rules/changes",
        "rule-steward",
        content=b"{}",
        headers={"content-type": "application/json"},
    )
    _problem(r, 415, "unsupported_media_type")
    assert len(api.get("/v1/rules/changes", "officer").json()) == 1

    # registries: an agency, an official of it, an agreement (YAML text); duplicates refused.
    # Each is proposed (202, pending) and in force once a second administrator confirms it.
    api.tokens.setdefault("admin2", sessions.login(ws, "admin2", PASSWORD))

    def confirmed(r: Any) -> Any:
        assert r.status_code == 202 and r.json()["pending"], r.text
        _problem(
            api.post(f"/v1/changes/{r.json()['change']}/confirm", "admin"),
            403,
            "separation_of_duties",
        )
        done = api.post(f"/v1/changes/{r.json()['change']}/confirm", "admin2")
        assert done.status_code == 200, done.text
        return done.json()

    agency = {"name": "Bureau of Examples", "safeguards_current": True, "open_findings": 0}
    r = api.post("/v1/registries/agencies", "admin", json=agency)
    names = {a["name"] for a in api.get("/v1/registries/agencies", "officer").json()}
    assert "Bureau of Examples" not in names  # proposed, not in force
    assert confirmed(r)["change_applied"] == "added"
    again = api.post("/v1/registries/agencies", "admin", json=agency | {"open_findings": 2})
    assert confirmed(again)["change_applied"] == "updated"
    official = {
        "agency": "Bureau of Examples",
        "name": "E. Xample",
        "title": "Director",
        "role": "head_of_agency",
        "valid_from": "2026-01-01",
    }
    confirmed(api.post("/v1/registries/officials", "admin", json=official))
    _problem(
        api.post("/v1/registries/officials", "admin", json=official | {"role": "janitor"}),
        422,
        "bad_argument",
    )
    yaml_type = {"content-type": "application/yaml"}
    huge = api.post(
        "/v1/registries/agreements", "admin", content=b"#" * (2 << 20), headers=yaml_type
    )
    _problem(huge, 413, "file_too_large")
    bad = api.post("/v1/registries/agreements", "admin", content=b"id: [x\n", headers=yaml_type)
    assert "at line 2" in _problem(bad, 422, "bad_agreement")["detail"]
    text = (
        "id: examples-2026\nprovision: irc-6103-i-2\nagency: Bureau of Examples\n"
        "citation: Example agreement\nparameters:\n  max_items: 1000\n"
    )
    r = api.post("/v1/registries/agreements", "admin", content=text.encode(), headers=yaml_type)
    assert r.json()["id"] == "examples-2026" and confirmed(r)["id"] == "examples-2026"
    listed = {a["id"] for a in api.get("/v1/registries/agreements", "officer").json()}
    assert "examples-2026" in listed

    # a further role: granted with its basis, pending a second administrator; never one that
    # separation of duties keeps apart, never to an agency account
    r = api.post(
        "/v1/users/auditor/grants", "admin", json={"role": "officer", "basis": "detail 12"}
    )
    assert r.status_code == 201, r.text
    _problem(
        api.post("/v1/users/admin2/grants", "admin", json={"role": "approver", "basis": "x"}),
        403,
        "separation_of_duties",
    )
    _problem(
        api.post("/v1/users/requester/grants", "admin", json={"role": "officer", "basis": "x"}),
        403,
        "separation_of_duties",
    )
    grants = {u["user"]: u["grants"] for u in api.get("/v1/users", "auditor").json()}
    assert any(g["role"] == "officer" and g["pending"] for g in grants["auditor"])
    made = api.post("/v1/users", "admin", json={"name": "cara", "role": "auditor", "basis": "b"})
    first = made.json()["enrolment_code"]
    reset = api.post("/v1/users/cara/code", "admin").json()
    code = reset["enrolment_code"]
    assert code and code != first and reset["enrolment_halves"] == 2
    # one queue: the reset waits for a second administrator, who confirms it by its id
    api.tokens["admin2"] = sessions.login(ws, "admin2", PASSWORD)
    queued = {c["id"]: c for c in api.get("/v1/changes", "admin2").json()}
    assert queued[reset["change"]]["kind"] == "reset"
    assert queued[reset["change"]]["proposed_by"] == "admin"
    _problem(
        api.post(f"/v1/changes/{reset['change']}/confirm", "admin"), 403, "separation_of_duties"
    )
    _problem(api.post(f"/v1/changes/{'0' * 64}/confirm", "admin2"), 404, "unknown_change")
    done = api.post(f"/v1/changes/{reset['change']}/confirm", "admin2")
    assert done.status_code == 200 and done.json()["enrolment_code_second_half"], done.text

    # an export checked against the live log: whole, then with one altered tile byte
    auditor = ws_svc.caller(ws, api.tokens["auditor"])
    ledger_svc.export(ws, auditor, api.root / "export-check")
    folder = api.root / "export-check"
    r = api.post("/v1/ledger/verify", "auditor", content=_zip(folder), headers=ZIP)
    assert r.status_code == 200 and r.json()["ok"], r.text
    assert any("consistent with this log" in c for c in r.json()["checked"])
    tile = next(p for p in sorted((folder / "tile" / "0").rglob("*")) if p.is_file())
    data = bytearray(tile.read_bytes())
    data[0] ^= 1
    tile.write_bytes(bytes(data))
    r = api.post("/v1/ledger/verify", "auditor", content=_zip(folder), headers=ZIP)
    assert r.status_code == 200 and not r.json()["ok"] and r.json()["problems"]
    _problem(
        api.post("/v1/ledger/verify", "requester", content=_zip(folder), headers=ZIP),
        403,
        "forbidden",
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("/etc/cron.d/x", b"* * * * * root true")
    _problem(
        api.post("/v1/ledger/verify", "auditor", content=buf.getvalue(), headers=ZIP),
        422,
        "bad_archive",
    )


def test_the_server_runs_a_witness_that_cosigns_the_live_log(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`custodes serve --witness-key` adds the C2SP tlog-witness endpoint: the log's own
    `ledger cosign` gets a cosignature from it over real HTTP, the cosigned checkpoint is
    served to everyone, and a rolled-back or unsigned submission is refused in the protocol's
    terms. A server without a witness answers 404."""
    import threading

    import uvicorn

    _problem(api.post("/v1/witness/add-checkpoint", content=b"old 0\n\n"), 404, "not_found")
    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    wkey = ledger_svc.witness_keygen("witness.oig.example", tmp_path / "witness.key")
    monkeypatch.setenv("CUSTODES_WITNESS_KEY", str(tmp_path / "witness.key"))
    monkeypatch.setenv("CUSTODES_WITNESS_LOGS", ledger_svc_vkey(api))
    monkeypatch.setenv("CUSTODES_WITNESS_STATE", str(tmp_path / "witness.db"))
    sock = bound_socket()  # bound here and handed over: no other process can take the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ws.home, str(ws.engine.url)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_started(server, thread)
        assert (tmp_path / "witness.db").stat().st_mode & 0o077 == 0
        prefix = f"http://127.0.0.1:{port}/v1/witness"  # the submission prefix
        admin = ws_svc.caller(ws, api.tokens["admin"])
        done = ledger_svc.cosign(ws, admin, prefix, wkey)
        url = prefix + "/add-checkpoint"
        assert done["witness"] == "witness.oig.example" and done["size"] > 0
        note = api.get("/v1/ledger/checkpoint").text
        assert "— witness.oig.example " in note
        # the protocol's refusals: a stale old size (409 with the known size), junk (400)
        import httpx

        cp_note = "\n".join(line for line in note.splitlines() if "witness" not in line) + "\n"
        stale = httpx.post(url, content=f"old 0\n\n{cp_note}".encode())
        assert stale.status_code == 409 and stale.text.strip() == str(done["size"])
        assert stale.headers["content-type"].startswith("text/x.tlog.size")
        assert httpx.post(url, content=b"hello").status_code == 400
        assert httpx.post(url, content=b"x" * (70 * 1024)).status_code == 413
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_large_submission_may_be_answered_at_once_with_its_job(api: Api) -> None:
    """`Prefer: respond-async`: 202 with the intake's job once the upload is on disk; the
    agency follows the job to the submission (or to the problem a bad file gets); another
    agency cannot see the job; the staged upload (in the workspace's `staging/`) is gone when
    the job has ended."""
    prefer = {"Prefer": "respond-async"}
    staging = api.c.app.state.ws.home / "staging"  # type: ignore[attr-defined]
    folder = api.root / "req-3"
    envelope = (folder / "envelope.json").read_bytes()
    items = (folder / "items.csv").read_text().replace("item-0000001", "item-async-1")
    files = {"envelope": ("envelope.json", envelope), "items": ("items.csv", items.encode())}
    r = api.post("/v1/requests", "requester", files=files, headers=prefer)
    assert r.status_code == 202, r.text
    assert r.headers["preference-applied"] == "respond-async"
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    done = api.wait(r.json(), "requester")
    assert done["state"] == "succeeded" and done["kind"] == "submit", done
    rid = done["result"]["request_id"]
    assert done["request_id"] == rid  # the finished job names the request it made (#24)
    assert api.get(f"/v1/requests/{rid}", "requester").json()["state"] == "received"
    _problem(api.get(f"/v1/jobs/{done['id']}", "other-agency"), 404, "unknown_job")
    # a file the intake refuses: the job fails with the intake's problem, nothing kept
    broken = {"envelope": ("envelope.json", envelope), "items": ("items.csv", b"nope\n1\n")}
    r = api.post("/v1/requests", "requester", files=broken, headers=prefer)
    failed = api.wait(r.json(), "requester")
    assert failed["state"] == "failed" and failed["problem"]["code"] == "missing_columns", failed
    assert list(staging.iterdir()) == []


def test_lists_come_whole_or_a_page_at_a_time(api: Api) -> None:
    """A list is the same bare array as before; with `limit` it comes a page at a time, each
    naming the next in `Link: rel="next"` (RFC 8288), until the whole list is read (#24)."""
    import re

    whole = api.get("/v1/requests", "officer")
    assert whole.status_code == 200 and "link" not in whole.headers
    # timestamps carry their time zone, from this SQLite store as from PostgreSQL (#24)
    first = whole.json()[0]
    assert first["submitted_at"].endswith(("Z", "+00:00")), first
    steps = api.get(f"/v1/requests/{first['id']}", "officer").json()["history"]
    assert all(s["at"].endswith(("Z", "+00:00")) for s in steps), steps
    assert len(whole.json()) >= 3, "earlier tests submit several requests"
    pages: list[dict[str, Any]] = []
    url: str | None = "/v1/requests?limit=2"
    while url:
        r = api.get(url, "officer")
        assert r.status_code == 200 and len(r.json()) <= 2, r.text
        pages += r.json()
        found = re.fullmatch(r'<([^>]+)>; rel="next"', r.headers.get("link", ""))
        url = found.group(1) if found else None
    assert pages == whole.json()
    _problem(api.get("/v1/requests?limit=2&cursor=bm90LWFuLWlk", "officer"), 422, "bad_cursor")
    _problem(api.get("/v1/requests?limit=0", "officer"), 422, "bad_argument")
    # an agency pages through only its own
    mine = api.get("/v1/requests?limit=1", "other-agency")
    assert mine.json() == [] and "link" not in mine.headers


def test_agency_accounts_keys_and_policy_take_two_administrators(api: Api) -> None:
    """An agency's account and its API key over HTTP: the key works only once a second
    administrator confirms it; a policy change likewise; the master file's summary and a
    signed checkpoint for the staff who may ask."""
    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    api.tokens["admin2"] = sessions.login(ws, "admin2", PASSWORD)
    body = {"name": "dol-system", "role": "requester", "basis": "MOU 2026-4"}
    body["agency"] = "U.S. Department of Labor"
    assert api.post("/v1/users", "admin", json=body).status_code == 201
    r = api.post("/v1/users/dol-system/keys", "admin", json={"days": 30})
    assert r.status_code == 201 and r.json()["pending"], r.text
    api.tokens["dol"] = r.json()["key"]
    assert api.get("/v1/requests", "dol").status_code in (401, 403)  # not confirmed yet
    _problem(api.post("/v1/users/dol-system/confirm", "admin"), 403, "separation_of_duties")
    assert api.post("/v1/users/dol-system/confirm", "admin2").status_code == 200
    assert api.get("/v1/requests", "dol").json() == []  # its agency has no request yet
    _problem(api.post("/v1/users/officer/keys", "admin", json={}), 403, "key_not_allowed")

    r = api.post("/v1/policy/totp_roles", "admin", json={"value": "administrator"})
    assert r.status_code == 200, r.text
    _problem(api.post("/v1/policy/totp_roles/confirm", "admin"), 403, "separation_of_duties")
    pending = {p["key"]: p for p in api.get("/v1/policy", "auditor").json()}
    assert pending["totp_roles"]["pending"] == "administrator"
    assert api.get("/v1/records/summary", "officer").json()["people"] > 0
    assert api.post("/v1/ledger/checkpoint", "admin").json()["size"] > 0
    _problem(api.post("/v1/ledger/checkpoint", "officer"), 403, "forbidden")


def test_suspension_stops_the_next_call(api: Api) -> None:
    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    people = staff_mod.Staff(ws, password=PASSWORD)
    people.login("admin")
    people.login("admin2")
    people.callers["admin"], people.callers["admin2"] = people["admin"], people["admin2"]
    staff_mod.add(people, "temp-officer", ["officer"])
    elsewhere = TestClient(api.c.app, client=("192.0.2.44", 40000))  # not the throttled one
    token = elsewhere.post("/v1/sessions", json={"name": "temp-officer", "password": PASSWORD})
    api.tokens["temp-officer"] = token.json()["token"]
    assert api.get("/v1/requests", "temp-officer").status_code == 200
    users.suspend(ws, people["admin"], "temp-officer", "left the agency")
    r = api.get("/v1/requests", "temp-officer")
    assert r.status_code in (401, 403) and r.json()["code"] in ("suspended", "session_ended")


def test_a_call_in_flight_does_not_commit_once_its_caller_is_suspended(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP: an agency's withdrawal is inside its transaction when an administrator
    suspends the account; the call is refused (`suspended`) and the request is not withdrawn."""
    import threading

    from custodes.requests import lifecycle

    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    people = staff_mod.Staff(ws, password=PASSWORD)
    for admin in ("admin", "admin2"):
        people.login(admin)
        people.callers[admin] = people[admin]
    import json

    agency = json.loads((api.root / "req-2" / "envelope.json").read_text())["agency"]
    staff_mod.add(people, "flight-agency", ["requester"], agency=agency)
    api.tokens["flight"] = users.key(ws, people["admin"], "flight-agency")["key"]
    users.confirm(ws, people["admin2"], "flight-agency")
    sub = api.post("/v1/requests", "flight", files=api.upload(api.root / "req-2"))
    assert sub.status_code in (200, 201), sub.text
    rid = sub.json()["request_id"]
    started, suspended = threading.Event(), threading.Event()
    real = lifecycle.transition

    def held(conn: Any, *args: Any, **kwargs: Any) -> Any:
        started.set()  # inside the withdrawal's transaction, nothing committed yet
        suspended.wait(10)
        return real(conn, *args, **kwargs)

    monkeypatch.setattr(lifecycle, "transition", held)
    answer: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: answer.update(
            r=api.post(f"/v1/requests/{rid}/withdraw", "flight", json={"reason": "in flight"})
        )
    )
    t.start()
    assert started.wait(10)
    users.suspend(ws, people["admin"], "flight-agency", "key leaked")
    suspended.set()
    t.join(30)
    monkeypatch.setattr(lifecycle, "transition", real)
    _problem(answer["r"], 403, "suspended")
    assert api.get(f"/v1/requests/{rid}", "officer").json()["state"] != "withdrawn"


def test_serve_refuses_a_public_address_without_tls(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from custodes.cli import app

    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "TLS" in r.output
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_serve_refuses_a_witness_without_a_usable_key_or_log(api: Api, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from custodes.cli import app

    ws = api.c.app.state.ws  # type: ignore[attr-defined]
    home, run = str(ws.home), CliRunner(env={"CUSTODES_STORE_URL": str(ws.engine.url)})
    r = run.invoke(app, ["serve", "--home", home, "--witness-key", str(tmp_path / "no")])
    assert r.exit_code == 2 and "bad_key" in r.output
    ledger_svc.witness_keygen("w.example", tmp_path / "w.key")
    r = run.invoke(app, ["serve", "--home", home, "--witness-key", str(tmp_path / "w.key")])
    assert r.exit_code == 2 and "missing_key" in r.output
    args = ["--witness-key", str(tmp_path / "w.key"), "--witness-log", "not-a-key"]
    r = run.invoke(app, ["serve", "--home", home, *args])
    assert r.exit_code == 2 and "bad_key" in r.output


def test_problem_details_never_echo_a_value(api: Api) -> None:
    """#23 finding 4: a problem names the field it refuses, never the value that was sent."""
    import csv
    import json

    folder = api.root / "req-2"
    with open(folder / "items.csv", newline="") as fh:
        items = [dict(r) for r in csv.DictReader(fh)][:3]
    envelope = json.loads((folder / "envelope.json").read_text())
    r = api.post("/v1/requests", "requester", json={"envelope": envelope, "items": items})
    assert r.status_code in (200, 201), r.text
    rid = r.json()["request_id"]
    sent = "DISCLOSE') OR ('1'='1"
    bad = _problem(
        api.get(f"/v1/requests/{rid}/outcomes", "officer", params={"outcome": sent}),
        422,
        "bad_argument",
    )
    assert "outcome" in bad["detail"] and "1'='1" not in json.dumps(bad)
    for path, code in (
        ("/v1/ledger/tile/0/keys-ledger.p/3", "not_found"),
        ("/v1/requests/req-0badc0ffee00", "unknown_request"),
    ):
        got = api.get(path, "officer")
        assert got.json()["code"] == code, got.text
        for value in ("keys-ledger", "req-0badc0ffee00"):
            assert value not in got.text, (path, got.text)
