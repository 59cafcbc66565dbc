"""Access to files: a file appears only after its record commits, and a ledger body written
beside a receipt is for auditors and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from custodes.access import (
    enter,
)
from custodes.errors import (
    AccessDenied,
)
from custodes.services import users as svc
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from shared_access import _events

# --- files recorded before they exist (issue #22, item 11) -------------------------------------


def test_a_file_appears_only_after_its_record_commits(staff: Staff, tmp_path: Path) -> None:
    """A file of personal data used to be written before the transaction that records it
    opened: when that transaction was refused (here: the caller suspended in between), the
    file stayed with no trail. Now it is staged, and appears only once its event commits."""
    import pyarrow as pa

    from custodes.ledger import publish
    from custodes.records.exports import write_table

    ws = staff.ws
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    exporting = enter(ws, staff["officer"], "outcomes")
    bodies = enter(ws, staff["auditor"], "ledger.export_bodies")
    svc.suspend(ws, staff.admin, "officer", "insider risk")
    out = tmp_path / "outcomes.csv"
    with pytest.raises(AccessDenied):
        write_table(exporting, pa.table({"item_id": ["item-1"]}), out, what="outcomes")
    assert list(tmp_path.iterdir()) == []  # no file, and no staged leftover
    staff_mod.add(staff, "admin3", ["administrator"])
    svc.suspend(ws, staff.admin, "auditor", "insider risk")
    with pytest.raises(AccessDenied):
        publish.write_body(bodies, 0, tmp_path / "body.json")
    with pytest.raises(AccessDenied):
        publish.export(bodies, tmp_path / "export", bodies=True)
    assert not (tmp_path / "body.json").exists()
    assert not (tmp_path / "export" / "bodies.jsonl").exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_a_body_written_beside_a_receipt_is_for_auditors_and_recorded(
    staff: Staff, tmp_path: Path
) -> None:
    """`ledger prove --body-out` wrote any event's body and salt for any holder of
    `ledger.read` (officers and administrators too), with no trace. Now auditors only, and a
    `file.written` event names the event and the file's hash."""
    import hashlib

    from custodes.services import ledger as ledger_svc

    ws = staff.ws
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    for who in (staff["officer"], staff.admin):
        with pytest.raises(AccessDenied) as exc:
            ledger_svc.prove_with_body(ws, who, 1, tmp_path / f"{who.name}.json")
        assert exc.value.code == "forbidden"
    assert list(tmp_path.iterdir()) == []
    assert ledger_svc.prove(ws, staff["officer"], 1)["receipt"]  # a receipt alone: as before
    out = tmp_path / "body.json"
    ledger_svc.prove_with_body(ws, staff["auditor"], 1, out)
    written = _events(ws, "file.written")[-1]
    assert written["what"] == "ledger_body" and written["event"] == 1
    assert written["actor"] == "auditor"
    assert written["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
