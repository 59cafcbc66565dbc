"""Who may call what over HTTP: the role-by-route matrix, the attacks, two administrators
for agency accounts, and suspension stopping the next call and a call in flight."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import PASSWORD
from custodes.access import sessions
from custodes.access.roles import ACTIONS
from custodes.services import users
from custodes.synthetic import staff as staff_mod
from shared_api import ROLES, Api, _problem

ROLE_OF = {"admin": "administrator", "rule-steward": "rule_steward", "other-agency": "requester"}


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
