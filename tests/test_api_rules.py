"""Rule sets, registries, grants and exports over HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from conftest import PASSWORD
from custodes.access import sessions
from custodes.services import ledger as ledger_svc
from custodes.services import workspace as ws_svc
from custodes.synthetic import staff as staff_mod
from shared_api import Api, _problem


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
