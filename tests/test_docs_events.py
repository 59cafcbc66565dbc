"""The ledger's event types are declared (custodes.ledger.event_types): docs/ledger.md's "Event
types" section is generated from them, every type says what it means, the ledger appends
nothing else, the bodies are the bytes the untyped events wrote, and a body of a type this
version does not declare is read, never a crash.

    PYTHONPATH=src python tests/test_docs_events.py   # rewrites the section
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

import docgen
from custodes.ledger import event_types as et
from custodes.ledger import log
from custodes.ledger.events import OMIT, Declared, Event, declare
from custodes.reports import disclosures, oversight
from custodes.reports.source import Entry
from custodes.store.tables import ledger_events
from custodes.workspace import Workspace

DOC, SECTION = "ledger.md", "event-types"


def test_the_docs_list_every_declared_event_type() -> None:
    assert docgen.section(DOC, SECTION) == et.markdown(), (
        "docs/ledger.md's event types differ from the declared ones: run "
        "PYTHONPATH=src python tests/test_docs_events.py"
    )


def test_every_declared_type_says_what_it_means() -> None:
    types = et.declared()
    assert len(types) >= 37  # the issue counted 37 in the source
    for cls in types:
        doc = (cls.__doc__ or "").strip()
        assert doc and not doc.startswith(f"{cls.__name__}("), cls.TYPE
        assert f"`{cls.TYPE}`" in et.markdown()


def test_a_type_without_a_docstring_or_with_a_personal_key_is_refused() -> None:
    with pytest.raises(TypeError, match="no docstring"):

        @declare
        @dataclass(frozen=True, slots=True, kw_only=True)
        class Mute(Declared):
            TYPE = "test.mute"

    with pytest.raises(TypeError, match="'tin' may not be declared"):

        @declare
        @dataclass(frozen=True, slots=True, kw_only=True)
        class Leaky(Declared):
            """Would put a TIN in the ledger."""

            TYPE = "test.leaky"
            tin: str

    with pytest.raises(TypeError, match="declared twice"):

        @declare
        @dataclass(frozen=True, slots=True, kw_only=True)
        class Again(Declared):
            """Another disclosure."""

            TYPE = "disclosure"

    assert {"test.mute", "test.leaky"}.isdisjoint(et.REGISTRY)
    assert et.REGISTRY["disclosure"] is et.Disclosure


@dataclass(frozen=True, slots=True, kw_only=True)
class Undeclared(Declared):
    """Built like a declared type, never registered."""

    TYPE = "test.undeclared"
    n: int


def test_append_takes_only_declared_events(workspace: Workspace) -> None:
    refused: list[Any] = [
        Event("disclosure", actor="officer1"),  # type: ignore[arg-type]  # the old, untyped way
        Event(Undeclared(n=1), actor="officer1"),
        et.RecordFlaggedSensitive(),  # a declared type without its envelope
        {"type": "disclosure", "actor": "officer1"},
    ]
    for bad in refused:
        with pytest.raises(TypeError, match="declared event type"), workspace.engine.begin() as c:
            log.append(c, [Event(et.RecordFlaggedSensitive(), actor="officer1"), bad])
    with workspace.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ledger_events)).scalar() == 0


AT = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
H = "ab" * 32
E = '"time":"2026-12-06T12:00:00.000000+00:00"'

# Each typed event beside the body the untyped `Event(type, data={...})` of the version before
# wrote for the same data (generated with it; <H> stands for H).
GOLDEN: list[tuple[Event, str]] = [
    (
        Event(
            et.Disclosure(
                item_sha256=H,
                fields=["address"],
                provision="irc-6103-i-2",
                agency="ICE",
                recipients_sha256=H,
                ruleset_sha256=H,
                model_sha256=H,
            ),
            request_id="req-1",
            record_id="rec-1",
        ),
        '{"actor":"officer1","agency":"ICE","fields":["address"],"item_sha256":"<H>",'
        '"model_sha256":"<H>","provision":"irc-6103-i-2","recipients_sha256":"<H>",'
        f'"record_id":"rec-1","request_id":"req-1","ruleset_sha256":"<H>",{E},'
        '"type":"disclosure","v":1}',
    ),
    (
        Event(
            et.ReviewResolved(item_sha256=H, decision="WITHHOLD", reason_sha256=H),
            request_id="req-1",
            record_id="rec-2",
        ),
        '{"actor":"officer1","decision":"WITHHOLD","item_sha256":"<H>","reason_sha256":"<H>",'
        f'"record_id":"rec-2","request_id":"req-1",{E},"type":"review.resolved","v":1}}',
    ),
    (
        Event(
            et.ReviewResolved(
                item_sha256=H, decision="DISCLOSE", reason_sha256=H, group="dob differs"
            ),
            request_id="req-1",
        ),
        '{"actor":"officer1","decision":"DISCLOSE","group":"dob differs","item_sha256":"<H>",'
        f'"reason_sha256":"<H>","record_id":null,"request_id":"req-1",{E},'
        '"type":"review.resolved","v":1}',
    ),
    (
        Event(et.Anchor(table="users", row=H, commit=H)),
        '{"actor":"officer1","commit":"<H>","record_id":null,"request_id":null,"row":"<H>",'
        f'"table":"users",{E},"type":"anchor","v":1}}',
    ),
    (
        Event(et.Anchor(table="users", row=H, gone=True, commit=H)),
        '{"actor":"officer1","commit":"<H>","gone":true,"record_id":null,"request_id":null,'
        f'"row":"<H>","table":"users",{E},"type":"anchor","v":1}}',
    ),
    (
        Event(et.UserCreated(user="admin", roles=["administrator"], bootstrap=True)),
        '{"actor":"officer1","bootstrap":true,"record_id":null,"request_id":null,'
        f'"roles":["administrator"],{E},"type":"user.created","user":"admin","v":1}}',
    ),
    (
        Event(
            et.UserCreated(
                user="u1",
                roles=["officer"],
                expires=None,
                pending_confirmation=["officer"],
                bootstrap=False,
                change="chg-1",
                enrolment_halves=None,
            )
        ),
        '{"actor":"officer1","bootstrap":false,"change":"chg-1","enrolment_halves":null,'
        '"expires":null,"pending_confirmation":["officer"],"record_id":null,"request_id":null,'
        f'"roles":["officer"],{E},"type":"user.created","user":"u1","v":1}}',
    ),
    (
        Event(et.RequestTransition(from_=None, to="received"), request_id="req-1"),
        f'{{"actor":"officer1","from":null,"record_id":null,"request_id":"req-1",{E},'
        '"to":"received","type":"request.transition","v":1}',
    ),
    (
        Event(
            et.RegistryAgency(
                agency="ICE", safeguards_current=True, open_findings=0, change="added", direct=True
            )
        ),
        '{"actor":"officer1","agency":"ICE","change":"added","direct":true,"open_findings":0,'
        f'"record_id":null,"request_id":null,"safeguards_current":true,{E},'
        '"type":"registry.agency","v":1}',
    ),
    (
        Event(
            et.RegistryAgency(
                agency="ICE",
                safeguards_current=False,
                open_findings=2,
                change="updated",
                proposed_by="admin",
                change_id="chg-2",
            )
        ),
        '{"actor":"officer1","agency":"ICE","change":"updated","change_id":"chg-2",'
        '"open_findings":2,"proposed_by":"admin","record_id":null,"request_id":null,'
        f'"safeguards_current":false,{E},"type":"registry.agency","v":1}}',
    ),
    (
        Event(et.FileWritten(what="ledger_body", event=7, rows=1, sha256=H)),
        '{"actor":"officer1","event":7,"record_id":null,"request_id":null,"rows":1,'
        f'"sha256":"<H>",{E},"type":"file.written","v":1,"what":"ledger_body"}}',
    ),
    (
        Event(
            et.MasterImported(
                kind="full",
                people_sha256=H,
                addresses_sha256=H,
                master_sha256=H,
                people_added=3,
                people_changed=0,
                addresses_added=3,
                addresses_changed=0,
            )
        ),
        '{"actor":"officer1","addresses_added":3,"addresses_changed":0,"addresses_sha256":"<H>",'
        '"kind":"full","master_sha256":"<H>","people_added":3,"people_changed":0,'
        f'"people_sha256":"<H>","record_id":null,"request_id":null,{E},'
        '"type":"master.imported","v":1}',
    ),
    (
        Event(
            et.UserConfirmed(
                user="u1",
                change="chg-3",
                proposed_by="admin",
                roles=["officer"],
                enrolment_second_half=True,
            )
        ),
        '{"actor":"officer1","change":"chg-3","enrolment_second_half":true,"keys":0,'
        '"proposed_by":"admin","record_id":null,"request_id":null,"roles":["officer"],'
        f'{E},"type":"user.confirmed","user":"u1","v":1}}',
    ),
    (
        Event(et.UserConfirmed(user="u1", change="chg-4", proposed_by="admin", keys=1)),
        '{"actor":"officer1","change":"chg-4","keys":1,"proposed_by":"admin","record_id":null,'
        f'"request_id":null,"roles":[],{E},"type":"user.confirmed","user":"u1","v":1}}',
    ),
    (
        Event(et.RecordInspected(purpose_sha256=H, refusal=None), record_id="rec-3"),
        '{"actor":"officer1","purpose_sha256":"<H>","record_id":"rec-3","refusal":null,'
        f'"request_id":null,{E},"type":"record.inspected","v":1}}',
    ),
    (
        Event(
            et.RecordInspectionRefused(
                what="person", reference=None, purpose_sha256=H, refusal="no_open_request"
            )
        ),
        '{"actor":"officer1","purpose_sha256":"<H>","record_id":null,"reference":null,'
        f'"refusal":"no_open_request","request_id":null,{E},'
        '"type":"record.inspection_refused","v":1,"what":"person"}',
    ),
    (
        Event(
            et.RequestDecided(
                outcomes_sha256=H,
                counts={"DISCLOSE": 3, "REVIEW": 1},
                checks=[{"check": "address_given", "failing": 0, "outcomes": 0}],
            ),
            request_id="req-1",
        ),
        '{"actor":"officer1","checks":[{"check":"address_given","failing":0,"outcomes":0}],'
        '"counts":{"DISCLOSE":3,"REVIEW":1},"outcomes_sha256":"<H>","record_id":null,'
        f'"request_id":"req-1",{E},"type":"request.decided","v":1}}',
    ),
    (
        # `change` was put in by mutating the untyped event's data after building it
        Event(
            et.UserGranted(
                user="u1", role="officer", expires=None, pending_confirmation=True, change="chg-5"
            )
        ),
        '{"actor":"officer1","change":"chg-5","expires":null,"pending_confirmation":true,'
        f'"record_id":null,"request_id":null,"role":"officer",{E},"type":"user.granted",'
        '"user":"u1","v":1}',
    ),
    (
        Event(et.RecordFlaggedSensitive(), record_id="rec-4"),
        f'{{"actor":"officer1","record_id":"rec-4","request_id":null,{E},'
        '"type":"record.flagged_sensitive","v":1}',
    ),
]


@pytest.mark.parametrize(("event", "expected"), GOLDEN, ids=[e.type for e, _ in GOLDEN])
def test_a_typed_body_is_the_bytes_the_untyped_event_wrote(event: Event, expected: str) -> None:
    event.actor, event.at = "officer1", AT
    assert event.body().decode() == expected.replace("<H>", H)
    # and it reads back as the event it was
    assert et.parse(json.loads(event.body())) == event.what


def test_a_body_of_another_version_is_read_not_a_crash() -> None:
    retired = {"v": 1, "type": "retired.kind", "time": AT.isoformat(), "actor": "a", "x": 1}
    assert et.parse(retired) == et.Other("retired.kind", retired)
    assert et.parse(["not", "a", "body"]) == et.Other("", {})
    # a disclosure written before `agency` was recorded, with a key since dropped
    old = {"v": 1, "type": "disclosure", "item_sha256": H, "fields": ["address"], "ruleset": H}
    got = et.parse_as(et.Disclosure, old)
    assert got is not None and got.agency is None and got.fields == ["address"]
    assert et.parse(old) != et.Other("disclosure", old)
    # an optional key an old body lacks reads as absent, not null
    resolved = et.parse_as(et.ReviewResolved, {"type": "review.resolved", "decision": "X"})
    assert resolved is not None and resolved.group is OMIT and resolved.item_sha256 is None
    # the reports skip what they do not know
    t = AT.isoformat()
    entries = [
        Entry(0, retired | {"time": t, "request_id": "req-1"}),
        Entry(1, {"type": "release.done", "time": t, "request_id": "req-1", "recipients": ["O"]}),
        Entry(2, {"type": "disclosure.recalled", "time": t, "request_id": "req-1"}),
    ]
    led = disclosures.read(entries)
    assert led.recipients == {"req-1": ["O"]}
    assert oversight.recalls(entries, today=AT.date()).tables[0].rows[0]["notice_to"] == ["O"]


def test_the_accounting_reads_keys_a_disclosure_declares() -> None:
    """iter_rows reads a disclosure's body by its keys (a million rows): they must be the ones
    `Disclosure` declares."""
    keys = {k for _, k in et.Disclosure.KEYS}
    assert {"agency", "provision", "fields", "item_sha256"} <= keys


if __name__ == "__main__":
    docgen.write(DOC, SECTION, et.markdown())
