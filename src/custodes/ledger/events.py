"""Ledger events: canonical bodies without personal data, and their salted commitments."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

COMMITMENT_PREFIX = b"custodes/event/v1\n"

# Keys that would carry a taxpayer's identity. An event naming one is refused outright.
PERSONAL_KEYS = frozenset(
    {
        "name",
        "first_name",
        "middle_name",
        "last_name",
        "full_name",
        "tin",
        "ssn",
        "itin",
        "dob",
        "date_of_birth",
        "birth_date",
        "street",
        "address",
        "unit",
        "city",
        "zip",
        "zip_code",
    }
)
_TIN_LIKE = re.compile(r"(?<![0-9A-Za-z])\d{3}-?\d{2}-?\d{4}(?![0-9A-Za-z])")


class PersonalDataInEvent(ValueError):
    """An event body would put personal data into the ledger."""


_PERSONAL_KEY = re.compile('"(' + "|".join(sorted(PERSONAL_KEYS)) + ')":', re.IGNORECASE)


def _check(data_json: str) -> None:
    """Refuse personal data in an event's own fields (one regex pass over their JSON)."""
    if m := _PERSONAL_KEY.search(data_json):
        raise PersonalDataInEvent(f"event field '{m.group(1)}' would carry personal data")
    if _TIN_LIKE.search(data_json):
        raise PersonalDataInEvent("an event field holds a TIN-shaped number")


@dataclass
class Event:
    """A business event to be recorded: what happened, by whom, about which opaque ids."""

    type: str
    actor: str | None = None
    request_id: str | None = None
    record_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def body(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, UTF-8); refuses personal data."""
        _check(json.dumps(self.data, ensure_ascii=False))
        doc = {
            "v": 1,
            "type": self.type,
            "time": self.at.isoformat(timespec="microseconds"),
            "actor": self.actor,
            "request_id": self.request_id,
            "record_id": self.record_id,
            **self.data,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def commitment(salt: bytes, body: bytes) -> bytes:
    return hashlib.sha256(COMMITMENT_PREFIX + salt + body).digest()


def new_salt() -> bytes:
    return os.urandom(32)
