"""What the rule engine's test modules share: the reference rule set loaded once, and builders
of an envelope, an item, a request folder and a registry, and a run of the gate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa

from custodes.records.files import read_text_table
from custodes.requests.format import ITEM_COLUMNS, with_optional
from custodes.rules.provisions import REFERENCE, load
from custodes.rules.types import Agreement

AGENCY = "U.S. Immigration and Customs Enforcement"
TODAY = dt.date(2026, 11, 23)
RS = load()


def envelope(**kw: Any) -> dict[str, Any]:
    env = {
        "provision": "irc-6103-i-2",
        "agency": AGENCY,
        "signer": {"name": "Synthetic Director", "title": "Director", "role": "head_of_agency"},
        "officials": [
            {"id": "OFF-1", "name": "Agent One", "title": "Special Agent"},
            {"id": "OFF-2", "name": "Agent Two", "title": "Special Agent"},
        ],
        "statutory_authority": "8 U.S.C. 1253(c)",
        "reason": "Each person is the subject of an open criminal investigation for failure "
        "to depart after a final order of removal.",
        "taxable_periods": [2023, 2024],
        "fields_requested": ["last_known_address"],
        "items": "items.csv",
    }
    env.update(kw)
    return {k: v for k, v in env.items() if v is not None}


def item(i: int = 1, **kw: str) -> dict[str, str]:
    base = {
        "item_id": f"I{i:04d}",
        "first_name": "ANA",
        "middle_name": "",
        "last_name": "ROE",
        "suffix": "",
        "dob": "1980-01-02",
        "tin": "",
        "street": "12 OAK ST",
        "unit": "",
        "city": "AUSTIN",
        "state": "TX",
        "zip": "78701",
        "case_number": f"C-{i}",
        "official_id": "OFF-1",
        "removal_order_date": "2024-05-01",
    }
    base.update(kw)
    return base


def load_items(folder: Path) -> pa.Table:
    return with_optional(read_text_table(folder / "items.csv", ITEM_COLUMNS, allow_extra=True))


def _ice() -> Agreement:
    import yaml

    return Agreement.from_dict(
        yaml.safe_load((REFERENCE.parent / "agreements" / "irs-ice-2025.yaml").read_text())
    )
