"""What the matching test modules share: the trained workspace (the 3,000-person synthetic
master, the hand-built filers, generated requests with their truth, a model trained on one),
built once per run and copied for each test, and the helpers that submit and link a request."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Template, copy_template
from custodes.matching import runs
from custodes.requests.format import ITEM_COLUMNS
from custodes.services import matching as matching_svc
from custodes.services import users as users_svc
from custodes.services.records import import_ as import_master
from custodes.services.requests import generate
from custodes.services.requests import submit as _submit
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

ADDR = {"street": "12 OAK STREET", "unit": "", "city": "SPRINGFIELD", "state": "IL", "zip": "62704"}
OLD_ADDR = {
    "street": "400 ELM AVE",
    "unit": "APT 3",
    "city": "PEORIA",
    "state": "IL",
    "zip": "61602",
}
TWIN_ADDR = {"street": "77 BIRCH RD", "unit": "", "city": "DAYTON", "state": "OH", "zip": "45402"}

# Hand-built filers: a household with a Sr/Jr pair and a spouse, twins, and a mover.
PEOPLE = [
    # tin, first, last, suffix, dob, address, earlier address
    ("585471234", "JOHN", "VELTRASKI", "SR", "1950-01-02", ADDR, None),
    ("585471235", "JOHN", "VELTRASKI", "JR", "1980-05-06", ADDR, None),
    ("585471236", "MARTHA", "VELTRASKI", "", "1952-08-09", ADDR, None),
    ("585471237", "AMY", "KORVENDAHL", "", "1999-04-11", TWIN_ADDR, None),
    ("585471238", "BETH", "KORVENDAHL", "", "1999-04-11", TWIN_ADDR, None),
    ("585471239", "OSWALD", "PRENTISSIMO", "", "1975-10-20", TWIN_ADDR, OLD_ADDR),
]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _import_hand_built(ws: Workspace, people_: Staff, folder: Path) -> None:
    people = [
        {
            "tin": tin,
            "tin_type": "SSN",
            "first_name": first,
            "middle_name": "",
            "last_name": last,
            "suffix": suffix,
            "dob": dob,
        }
        for tin, first, last, suffix, dob, _, _ in PEOPLE
    ]
    addresses = []
    for tin, *_, addr, old in PEOPLE:
        addresses.append({"tin": tin, "tax_year": "2024", **addr})
        if old:
            addresses.append({"tin": tin, "tax_year": "2021", **old})
    imported = import_master(
        ws, people_.admin, _write(folder / "p.csv", people), _write(folder / "a.csv", addresses)
    )
    users_svc.confirm_change(ws, people_.second_admin, imported["change"])  # a second one


def _item(
    item_id: str,
    first: str,
    last: str,
    dob: str,
    *,
    tin: str = "",
    suffix: str = "",
    addr: dict[str, str] | None = None,
) -> dict[str, str]:
    row = dict.fromkeys(ITEM_COLUMNS, "")
    row.update(
        item_id=item_id,
        first_name=first,
        last_name=last,
        dob=dob,
        tin=tin,
        suffix=suffix,
        case_number="C-1",
        official_id="OFF-001",
        **(addr or {}),
    )
    return row


# corruption mix -> the recall floor its test holds (measured at 1,200 items; the floors leave
# room for the sample, not for a regression)
MIXES = {"typical": 0.9, "heavy": 0.74}

# item id -> (item, expected status, expected record tin or None, flags that must be present)
CASES = {
    "spouse": (
        _item("spouse", "Martha", "Veltraski", "1952-08-09", addr=ADDR),
        "identified",
        "585471236",
        {"household"},
    ),
    "junior-no-suffix": (
        _item("junior-no-suffix", "JOHN", "VELTRASKI", "1980-05-06", addr=ADDR),
        "identified",
        "585471235",
        {"generational", "household"},
    ),
    "junior-with-senior-dob": (
        _item("junior-with-senior-dob", "JOHN", "VELTRASKI", "1950-01-02", suffix="JR", addr=ADDR),
        "not_identified_or_review",
        None,
        {"suffix_conflict"},
    ),
    "absent-relative": (
        _item("absent-relative", "PETRA", "VELTRASKI", "2006-03-14", addr=ADDR),
        "not_identified_or_review",
        None,
        set(),
    ),
    "twin": (
        _item("twin", "AMY", "KORVENDAHL", "1999-04-11", addr=TWIN_ADDR),
        "identified",
        "585471237",
        {"twin", "household"},
    ),
    "absent-twin": (
        _item("absent-twin", "CLARA", "KORVENDAHL", "1999-04-11", addr=TWIN_ADDR),
        "not_identified_or_review",
        None,
        set(),
    ),
    # The TIN is Martha's, the name too, but the date of birth is someone else's.
    "tin-dob-conflict": (
        _item("tin-dob-conflict", "MARTHA", "VELTRASKI", "1990-11-30", tin="585471236"),
        "not_identified_or_review",
        None,
        {"tin_name_conflict"},
    ),
    "tin-typo": (
        _item("tin-typo", "BETH", "KORVENDAHL", "1999-04-11", tin="585471239", addr=TWIN_ADDR),
        "identified",
        "585471238",
        {"tin_typo"},
    ),
    "tin-conflict": (
        _item(
            "tin-conflict", "BETH", "KORVENDAHL", "1999-04-11", tin="123-45-6780", addr=TWIN_ADDR
        ),
        "not_identified_or_review",
        None,
        {"tin_conflict"},
    ),
    # A nickname (or a first name with a typo) needs corroboration: a middle name or a TIN.
    "nickname": (
        _item("nickname", "OZZY", "PRENTISSIMO", "1975-10-20", tin="585471239", addr=TWIN_ADDR),
        "identified",
        "585471239",
        set(),
    ),
    "nickname-alone": (
        _item("nickname-alone", "OZZY", "PRENTISSIMO", "1975-10-20", addr=TWIN_ADDR),
        "not_identified_or_review",
        None,
        set(),
    ),
    "mover-old-address": (
        _item(
            "mover-old-address",
            "OSWALD",
            "PRENTISSIMO",
            "1975-10-20",
            addr={**OLD_ADDR, "street": "400 Elm Avenue", "unit": "#3"},
        ),
        "identified",
        "585471239",
        set(),
    ),
    "dob-missing": (
        _item("dob-missing", "OSWALD", "PRENTISSIMO", ""),
        "not_identified_or_review",
        None,
        {"dob_missing"},
    ),
    "dob-missing-tin": (
        _item("dob-missing-tin", "OSWALD", "PRENTISSIMO", "", tin="585-47-1239"),
        "identified",
        "585471239",
        {"dob_missing"},
    ),
    # An ITIN that no filer holds, for a record with an SSN (the number used before the SSN):
    # neither agreement nor contradiction — name and date of birth decide, as without a TIN.
    "itin-for-ssn": (
        _item(
            "itin-for-ssn", "OSWALD", "PRENTISSIMO", "1975-10-20", tin="912-70-4321", addr=TWIN_ADDR
        ),
        "identified",
        "585471239",
        {"itin_for_ssn"},
    ),
    "absent-twin-itin": (
        _item(
            "absent-twin-itin",
            "CLARA",
            "KORVENDAHL",
            "1999-04-11",
            tin="912-70-4322",
            addr=TWIN_ADDR,
        ),
        "not_identified_or_review",
        None,
        set(),
    ),
    # Year digits transposed (1952 -> 1925) and a TIN with two digits transposed: one person's
    # typos, not a relative's (no relative holds a TIN one keystroke from hers).
    "tin-typo-dob-typo": (
        _item("tin-typo-dob-typo", "MARTHA", "VELTRASKI", "1925-08-09", tin="585471263", addr=ADDR),
        "identified",
        "585471236",
        {"tin_typo"},
    ),
    # ... but not for another first name: a twin's SSN is one digit from her sibling's.
    "twin-tin-typo-dob-typo": (
        _item(
            "twin-tin-typo-dob-typo",
            "CLARA",
            "KORVENDAHL",
            "1999-04-12",
            tin="585471239",
            addr=TWIN_ADDR,
        ),
        "not_identified_or_review",
        None,
        set(),
    ),
    # One letter wrong, and the result is nobody's name: a slip of the pen for JOHN (the Jr:
    # the date of birth is his) ...
    "first-name-slip": (
        _item("first-name-slip", "JOHX", "VELTRASKI", "1980-05-06", addr=ADDR),
        "identified",
        "585471235",
        {"generational"},
    ),
    # ... but AMI is somebody's name (an absent twin's, perhaps): not taken for AMY.
    "first-name-one-letter-a-name": (
        _item("first-name-one-letter-a-name", "AMI", "KORVENDAHL", "1999-04-11", addr=TWIN_ADDR),
        "not_identified_or_review",
        None,
        set(),
    ),
}


# Session-scoped: every test copies it (`linked_ws`) or reads its folders, never writes to it,
# so the matching modules share one build per run (per worker under xdist).
@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, _master_template: Template) -> Template:
    """A workspace: the 3,000-person synthetic master plus the hand-built filers, a generated
    request (with truth) and a model trained on it. Built once; tests copy it."""
    root = tmp_path_factory.mktemp("matching")
    ws, people = copy_template(_master_template, root)
    generate_request(ws, people, 1500, 4, root / "gen")
    generate_request(ws, people, 1200, 9, root / "gen-1200")  # drawn before any import
    generate_request(ws, people, 300, 21, root / "gen-300")
    for mix in MIXES:
        generate_request(ws, people, 1200, 9, root / f"gen-1200-{mix}", corruption=mix)
    _import_hand_built(ws, people, root)  # imported people: no synthetic request after this
    matching_svc.train(
        ws, people["officer"], submit(ws, people["officer"], root / "gen").request_id
    )
    ws.close()
    return Template(root / "master-ws", root / "master-ws.db", people)


@pytest.fixture
def linked_ws(trained: Template, tmp_path: Path) -> Iterator[tuple[Workspace, Staff]]:
    w, people = copy_template(trained, tmp_path)
    yield w, people
    w.close()


def submit(ws: Workspace, officer, folder: Path):  # type: ignore[no-untyped-def]
    """Staff key in a request received on paper (with its scan's hash): matching reads it
    without the second staff member's confirmation that processing needs."""
    scan = hashlib.sha256(f"scan of {folder}".encode()).hexdigest()
    return _submit(ws, officer, folder, paper_sha256=scan)


def generate_request(
    ws: Workspace, people: Staff, items: int, seed: int, out: Path, corruption: str = "none"
) -> None:
    generate(ws, people.admin, "irc-6103-i-2", items, seed, out, corruption=corruption)


def link(ws: Workspace, rid: str, officer, **kw):  # type: ignore[no-untyped-def]
    from custodes.access import enter

    folder = ws.request_folder(rid)
    periods = json.loads((folder / "envelope.json").read_text())["taxable_periods"]
    return runs.link(enter(ws, officer, "match.link"), folder, periods, request_id=rid, **kw)


def _submit_items(ws: Workspace, officer, folder: Path, rows: list[dict[str, str]]) -> str:  # type: ignore[no-untyped-def]
    folder.mkdir()
    _write(folder / "items.csv", rows)
    env = {
        "provision": "irc-6103-i-2",
        "agency": "A",
        "signer": {"name": "S", "title": "T", "role": "head_of_agency"},
        "statutory_authority": "8 U.S.C. 1253(c)",
        "reason": "r",
        "taxable_periods": [2024],
        "fields_requested": ["last_known_address"],
        "officials": [{"id": "OFF-001", "name": "O", "title": "Agent"}],
        "items": "items.csv",
    }
    (folder / "envelope.json").write_text(json.dumps(env))
    return submit(ws, officer, folder).request_id
