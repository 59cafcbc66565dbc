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


def _scan(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).lower() in PERSONAL_KEYS:
                raise PersonalDataInEvent(f"event field '{path}{k}' would carry personal data")
            _scan(v, f"{path}{k}.")
    elif isinstance(value, list | tuple):
        for v in value:
            _scan(v, path)
    elif isinstance(value, str) and _TIN_LIKE.search(value):
        raise PersonalDataInEvent(f"event field '{path.rstrip('.')}' holds a TIN-shaped number")


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
        doc = {
            "v": 1,
            "type": self.type,
            "time": self.at.isoformat(timespec="microseconds"),
            "actor": self.actor,
            "request_id": self.request_id,
            "record_id": self.record_id,
            **self.data,
        }
        _scan(self.data, "")
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def commitment(salt: bytes, body: bytes) -> bytes:
    return hashlib.sha256(COMMITMENT_PREFIX + salt + body).digest()


def new_salt() -> bytes:
    return os.urandom(32)
