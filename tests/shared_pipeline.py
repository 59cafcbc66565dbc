"""What the main job's test modules share: one processed workspace (a 400-item (i)(2) request
trained and processed, with an open review), built once per run and copied for each test."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import Template, copy_template, keyed_in, one_for_review
from custodes.requests.lifecycle import current_state
from custodes.services import decisions as svc
from custodes.services import matching as matching_svc
from custodes.services.requests import generate as generate_request
from custodes.services.rules import register_parties
from custodes.store.tables import ledger_events
from custodes.synthetic import staff as staff_mod
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace


# Session-scoped: every test copies it (`copied`) or reads its request and truth, never writes
# to it, so the modules of the main job share one build per run (per worker under xdist).
@pytest.fixture(scope="session")
def processed(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Template:
    """A registered workspace with a 400-item (i)(2) request submitted by 'dual' (an officer
    who also approves), trained and processed once by 'officer'; two of its items are made to
    go to review (`one_for_review`), so the tests always meet an open review."""
    root = tmp_path_factory.mktemp("pipeline")
    ws, people = copy_template(_master_template, root)
    register_parties(ws, people.admin, "irc-6103-i-2")
    staff_mod.add(people, "dual", ["officer", "approver"])
    generate_request(ws, people.admin, "irc-6103-i-2", 400, 3, root / "req")
    one_for_review(root / "req", 2)
    rid = keyed_in(ws, people["dual"], people["officer"], root / "req").request_id
    matching_svc.train(ws, people["officer"], rid)
    svc.process(ws, people["officer"], rid)
    assert state_of(ws, rid) == "in_review"
    (root / "rid").write_text(rid)
    ws.close()
    return Template(root / "master-ws", root / "master-ws.db", people)


@pytest.fixture
def copied(processed: Template, tmp_path: Path) -> Iterator[tuple[Workspace, Staff]]:
    ws, people = copy_template(processed, tmp_path)
    yield ws, people
    ws.close()


def _truth(processed: Template) -> dict[str, dict[str, str]]:
    with open(processed.home.parent / "req" / "truth.csv") as fh:
        return {r["item_id"]: r for r in csv.DictReader(fh)}


def state_of(ws: Workspace, rid: str) -> str:
    with ws.engine.connect() as conn:
        return current_state(conn, rid)


def _events(ws: Workspace, kind: str) -> list[object]:
    with ws.engine.connect() as conn:
        return conn.execute(
            sa.select(ledger_events)
            .where(ledger_events.c.type == kind)
            .order_by(ledger_events.c.idx)
        ).all()


# --- what is released is what was approved (issue "Close every hole", items 6-8, 13-15) ------


def _approved(ws: Workspace, who: Staff, rid: str) -> None:
    assert state_of(ws, rid) == "in_review"
    svc.review_resolve(ws, who["officer"], rid, "WITHHOLD", "r")
    svc.prepare(ws, who["officer"], rid)
    svc.approve(ws, who["approver"], rid)
