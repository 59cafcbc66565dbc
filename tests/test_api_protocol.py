"""The HTTP API's protocol, in-process (FastAPI's TestClient drives the real ASGI app): the
schema, problem details, security headers and throttling."""

from __future__ import annotations

from fastapi.testclient import TestClient

from conftest import PASSWORD
from shared_api import Api, _problem


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
