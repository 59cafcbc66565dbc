"""Every ledger event names its actor: a whole life of a workspace — users, registries, the
master file, a request from submission to recall, inspections, policy, rule-set changes,
lockouts, suspensions — produces every event type custodes writes, and none has a null actor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import PASSWORD, keyed_in, one_for_review
from custodes.access import sessions
from custodes.errors import CustodesError
from custodes.ledger import anchors, event_types
from custodes.services import decisions, matching, records, reports, requests, rules, users
from custodes.services.rules import register_parties
from custodes.store.tables import ledger_events
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace


def written_types() -> set[str]:
    """Every event type custodes writes: the declared ones (custodes.ledger.event_types)."""
    return {c.TYPE for c in event_types.declared()}


def test_every_event_type_names_its_actor(
    master_ws: Workspace, people: Staff, tmp_path: Path
) -> None:
    ws, admin, officer = master_ws, people.admin, people["officer"]
    register_parties(ws, admin, "irc-6103-i-2")
    requests.generate(ws, admin, "irc-6103-i-2", 200, 3, tmp_path / "req")
    one_for_review(tmp_path / "req")
    rid = requests.submit(ws, people["requester"], tmp_path / "req").request_id
    matching.train(ws, officer, rid)
    decisions.process(ws, officer, rid)
    candidate = next(
        r["record_id"]
        for r in decisions.outcomes_page(ws, officer, rid, limit=100)["items"]
        if r.get("record_id")
    )
    records.show(ws, officer, candidate, purpose="locate for case review", request_id=rid)
    with pytest.raises(CustodesError):
        records.show(
            ws, officer, "rec-not-a-candidate", purpose="locate for case review", request_id=rid
        )
    records.flag_sensitive(ws, admin, candidate, "public figure")
    assert decisions.next_step(ws, officer, rid)["state"] == "in_review"  # one_for_review
    decisions.review_resolve(ws, officer, rid, "WITHHOLD", "demo")
    decisions.outcomes(ws, officer, rid, tmp_path / "o.csv")
    decisions.prepare(ws, officer, rid)
    decisions.approve(ws, people["approver"], rid)
    env = ws.request_folder(rid) / "envelope.json"
    original = env.read_bytes()
    env.write_text(json.dumps(json.loads(original) | {"officials": []}))
    with pytest.raises(CustodesError):
        decisions.release(ws, officer, rid, tmp_path / "refused")
    env.write_bytes(original)
    # A review's decision changed in the store under the approved release: what release would
    # write is not what was approved (its content check, after the files' checks).
    from custodes.store.tables import review_resolutions

    with ws.engine.begin() as conn:
        kept = conn.execute(
            sa.select(review_resolutions).where(review_resolutions.c.request_id == rid)
        ).first()
        assert kept is not None
        conn.execute(
            sa.update(review_resolutions)
            .where(review_resolutions.c.request_id == rid)
            .values(decision="DISCLOSE", record_id=candidate)
        )
    with pytest.raises(CustodesError) as refused:
        decisions.release(ws, officer, rid, tmp_path / "refused-content")
    assert refused.value.code == "release_tampered"
    with ws.engine.begin() as conn:
        conn.execute(
            sa.update(review_resolutions)
            .where(review_resolutions.c.request_id == rid)
            .values(decision=kept.decision, record_id=kept.record_id)
        )
    decisions.release(ws, officer, rid, tmp_path / "out")
    decisions.release(ws, officer, rid, tmp_path / "out-again")
    recall = decisions.recall(ws, officer, reason="ruling", request_id=rid)
    decisions.acknowledge_recall(ws, people["requester"], recall["recall_id"])
    import datetime as dt

    decisions.certify(
        ws, officer, recall["recall_id"], certified_by="R.O.", certified_on=dt.date.today()
    )
    opened = reports.incident_open(ws, officer, kind="inspection", summary="a look without a case")
    reports.incident_reported(ws, officer, opened["incident_id"])
    reports.incident_close(ws, people["auditor"], opened["incident_id"], finding="unfounded")
    reports.jct(ws, people["auditor"], year=dt.date.today().year)
    # a request received on paper: keyed in by the officer, confirmed by a second person
    requests.generate(ws, admin, "irc-6103-i-2", 5, 9, tmp_path / "paper")
    keyed_in(ws, officer, people["approver"], tmp_path / "paper")
    staff_mod.add(people, "admin3", ["administrator"])
    staff_mod.add(people, "steward2", ["rule_steward"])
    users.propose_policy(ws, admin, "totp_roles", "")
    users.confirm_policy(ws, people.second_admin, "totp_roles")
    users.grant(ws, admin, "auditor", "officer", basis="detail")
    users.reset(ws, admin, "auditor")
    per = sessions.FREE_FAILURES - 1  # an account locks after 100 failures from anywhere
    for i in range(sessions.ACCOUNT_LOCK_FAILURES):
        with pytest.raises(CustodesError):
            sessions.login(ws, "officer", "wrong password!!", client=f"10.0.{i // per}.1")
    users.suspend(ws, admin, "approver", "leave")
    users.reinstate(ws, admin, "approver")
    users.reinstate(ws, people.second_admin, "approver")
    import shutil

    from custodes.rules.provisions import REFERENCE

    changed = tmp_path / "rules"
    shutil.copytree(REFERENCE, changed)
    (changed / "ruleset.yaml").write_text(
        (changed / "ruleset.yaml").read_text().replace("2026.11.2", "2026.11.3")
    )
    sha = rules.propose(ws, people["rule-steward"], changed)["ruleset_sha256"]
    rules.approve(ws, people["steward2"], sha)
    # what the gate trusts, proposed by one administrator and confirmed by the other
    proposed = rules.add_agency(ws, admin, "Agency Z", safeguards_current=True, open_findings=0)
    users.confirm_change(ws, people.second_admin, proposed["change"])
    (tmp_path / "p.csv").write_text(
        "tin,tin_type,first_name,middle_name,last_name,suffix,dob\n"
        "912781234,ITIN,ANA,,RUIZ,,1980-02-03\n"
    )
    (tmp_path / "a.csv").write_text(
        "tin,tax_year,street,unit,city,state,zip\n912781234,2024,1 MAIN ST,,AUSTIN,TX,78701\n"
    )
    imported = records.import_(ws, admin, tmp_path / "p.csv", tmp_path / "a.csv")
    users.confirm_change(ws, people.second_admin, imported["change"])
    # the ledger's witness, made the workspace's by an administrator, and a restore confirmed
    import threading

    from custodes.services import ledger as ledger_svc
    from custodes.tlog import witness
    from custodes.tlog.note import ALG_COSIGNATURE_V1, Signer

    wkey = Signer.generate("w.test", ALG_COSIGNATURE_V1)
    log_key = ledger_svc.checkpoints.verifier(ws)
    server = witness.make_server(
        witness.Witness(tmp_path / "w.db", wkey, [log_key]), "127.0.0.1", 0
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ledger_svc.use_witness(ws, admin, f"http://127.0.0.1:{server.server_port}", wkey.verifier)
        ledger_svc.confirm_restore(ws, admin)
    finally:
        server.shutdown()
        server.server_close()
    # the approver, suspended and reinstated by both administrators, signs in again
    assert sessions.login(ws, "approver", PASSWORD)
    with ws.engine.begin() as conn:  # what the upgrade that brings the anchors writes
        anchors.adopt(conn)

    with ws.engine.connect() as conn:
        rows = conn.execute(
            sa.select(ledger_events.c.type, ledger_events.c.actor, ledger_events.c.body)
        ).all()
    assert rows
    nameless = [(t, b[:80]) for t, a, b in rows if not a or json.loads(b)["actor"] in (None, "")]
    assert not nameless, nameless
    produced = {t for t, _, _ in rows}
    missing = written_types() - produced
    assert not missing, f"event types this test does not produce yet: {sorted(missing)}"
