"""Master-file services: import, generate, summarise, inspect one record, flag one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from custodes.access import CheckedCall, service
from custodes.access.inspections import flag_sensitive as _flag
from custodes.decisions.inspection import inspect_record
from custodes.records.importer import import_master
from custodes.records.master import summary as _summary
from custodes.synthetic.population import generate_master


@service("records.import")
def import_(call: CheckedCall, people: Path, addresses: Path) -> dict[str, Any]:
    """Load people and their address history: every row validated, all rows or none; the
    new master file is in use once a second administrator confirms the change."""
    t0 = time.perf_counter()
    result = import_master(call, people, addresses)
    return result.to_dict() | {"seconds": round(time.perf_counter() - t0, 2)}


@service("records.generate")
def generate(call: CheckedCall, people: int, seed: int, *, replace: bool = False) -> dict[str, Any]:
    """A synthetic master file with ground truth, through the validating import."""
    t0 = time.perf_counter()
    generate_master(call, people, seed, replace=replace)
    return _summary(call.ws) | {"seconds": round(time.perf_counter() - t0, 2)}


@service("records.summary")
def summary(call: CheckedCall) -> dict[str, Any]:
    """Counts that describe the master file without revealing anyone in it."""
    return _summary(call.ws)


@service("records.show")
def show(
    call: CheckedCall, record_id: str, *, purpose: str, request_id: str | None
) -> dict[str, Any]:
    """One taxpayer record, for a stated purpose and a candidate of an open request; every
    inspection, shown or refused, is recorded."""
    return inspect_record(call, record_id, purpose=purpose, request_id=request_id)


@service("records.flag")
def flag_sensitive(call: CheckedCall, record_id: str, reason: str) -> dict[str, Any]:
    _flag(call, record_id, reason)
    return {"record_id": record_id, "sensitive": True}
