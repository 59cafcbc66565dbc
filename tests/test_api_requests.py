"""Requests over HTTP: a submission's idempotency key, the main job (processed, reviewed,
released and verified from the ledger's tiles), the staff's operations, a large submission
answered with its job, and the list of requests whole or a page at a time."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from custodes.ledger.verify import verify_receipt
from custodes.services import ledger as ledger_svc
from custodes.services import reports as reports_svc
from custodes.services import workspace as ws_svc
from custodes.tlog import tiles
from custodes.tlog.note import Verifier, open_checkpoint
from custodes.tlog.tree import leaf_hash, memory_perfect, root
from shared_api import Api, _problem, ledger_svc_vkey


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
