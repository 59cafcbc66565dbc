"""Ledger events: canonical bodies without personal data, and their salted commitments."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeVar, dataclass_transform

import orjson

from custodes.errors import InputError

COMMITMENT_PREFIX = b"custodes/event/v1\n"
ITEM_PREFIX = b"custodes/item/v1\n"

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


# Keys whose value an agency chooses (an item id can spell a name and a date of birth): a body
# carries the item's salted commitment instead (`item_sha256`, see `item_sha256()`).
AGENCY_CHOSEN_KEYS = frozenset({"item_id", "item_ids"})


class PersonalDataInEvent(InputError):
    """An event body would put personal data into the ledger: refused, nothing is written."""

    code = "personal_data"


# Candidates only; a hit counts when it is not part of a longer word (a hash, an id).
TIN_CANDIDATE = re.compile(r"\d{3}-?\d{2}-?\d{4}")


@functools.lru_cache(maxsize=65536)
def has_tin(text: str) -> bool:
    """Cached: in a batch most values repeat (provision, field names, rule-set hashes)."""
    for m in TIN_CANDIDATE.finditer(text):
        a, b = m.span()
        if (a == 0 or not text[a - 1].isalnum()) and (b == len(text) or not text[b].isalnum()):
            return True
    return False


def _check(value: Any, key: str = "") -> None:
    """Refuse personal keys anywhere in the event's fields, and TIN-shaped values."""
    if isinstance(value, str):
        if has_tin(value):
            raise PersonalDataInEvent(
                f"A value for '{key}' is shaped like a TIN; custodes never writes one to the "
                "ledger (use an opaque id).",
                code="personal_data",
            )
    elif isinstance(value, int) and not isinstance(value, bool):
        if 100_000_000 <= value <= 999_999_999:
            raise PersonalDataInEvent(
                f"A value for '{key}' is shaped like a TIN; custodes never writes one to the "
                "ledger (use an opaque id).",
                code="personal_data",
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            if k.lower() in PERSONAL_KEYS:
                raise PersonalDataInEvent(
                    f"Event field '{k}' would carry personal data.", code="personal_data"
                )
            if k.lower() in AGENCY_CHOSEN_KEYS:
                raise PersonalDataInEvent(
                    f"Event field '{k}' would carry an id an agency chose; the ledger takes its "
                    "salted commitment (item_sha256).",
                    code="personal_data",
                )
            _check(v, k)
    elif isinstance(value, list | tuple):
        for v in value:
            _check(v, key)


# --- declared event types -------------------------------------------------------------------
#
# Every event type is a frozen dataclass declared with `declare` (the types themselves are in
# event_types.py): its `TYPE` string, a docstring saying what it means, and typed fields for the
# keys of its body. `log.append` takes only events built from a declared type.


class Omitted:
    """The value of a field left out of the body (a key some events of a type carry and others
    do not: absent, which is not the same body as `null`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OMIT"

    def __bool__(self) -> bool:
        return False


OMIT: Final = Omitted()

# The keys every body has; a declared field may not take one of them.
ENVELOPE_KEYS = frozenset({"v", "type", "time", "actor", "request_id", "record_id"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Declared:
    """The data of one event type (subclassed by each type, registered by `declare`)."""

    TYPE: ClassVar[str] = ""
    # (attribute, body key) per field, and whether any field may be OMIT; set by `declare`.
    KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()
    OPTIONAL: ClassVar[bool] = False
    # The body keys of fields declared as integers (counts, sizes, indexes): custodes holds a
    # TIN as text, never as a number, so such a field's value is no TIN even at nine digits
    # (125M address rows, a ledger of 100M leaves). Set by `declare`.
    COUNTS: ClassVar[frozenset[str]] = frozenset()

    def data(self) -> dict[str, Any]:
        """The body's keys beyond the envelope, as this type writes them."""
        if self.OPTIONAL:
            return {k: v for a, k in self.KEYS if (v := getattr(self, a)) is not OMIT}
        return {k: getattr(self, a) for a, k in self.KEYS}


D = TypeVar("D", bound=Declared)

# type string -> its declared class
REGISTRY: dict[str, type[Declared]] = {}


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def field_group(cls: type[D]) -> type[D]:
    """A group of fields several declared types share (a `Declared` subclass with no `TYPE`,
    never registered): the types subclass it and declare only what is their own (its fields
    come first). The same dataclass `declare` makes."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def declare(cls: type[D]) -> type[D]:
    """Make a class a declared event type: a frozen, slotted, keyword-only dataclass (unless it
    already is one), registered under its `TYPE`. Refuses a type without a docstring, a type
    string declared twice, and a field whose key would carry personal data or shadow the
    envelope."""
    name = cls.TYPE
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__name__} declares no TYPE")
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(f"{cls.__name__}("):  # the one dataclass writes when none
        raise TypeError(f"event type {name!r} ({cls.__name__}) has no docstring")
    if "__dataclass_fields__" not in cls.__dict__:
        cls = field_group(cls)
    seen = REGISTRY.get(name)
    if seen is not None and (seen.__module__, seen.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise TypeError(f"event type {name!r} is declared twice ({seen.__qualname__})")
    keys = []
    counts = set()
    optional = False
    for f in fields(cls):
        key = f.metadata.get("key", f.name)
        if key in ENVELOPE_KEYS or key.lower() in PERSONAL_KEYS | AGENCY_CHOSEN_KEYS:
            raise TypeError(f"event type {name!r}: field {key!r} may not be declared")
        keys.append((f.name, key))
        optional = optional or f.default is OMIT
        if _is_count(f.type):
            counts.add(key)
    cls.KEYS, cls.OPTIONAL, cls.COUNTS = tuple(keys), optional, frozenset(counts)
    REGISTRY[name] = cls
    return cls


def _is_count(annotation: Any) -> bool:
    """A field declared `int` (optionally `| Absent`, `| None`): its annotation is text here
    (postponed evaluation), or the type itself."""
    # text, a class, or a union object ("int | custodes.ledger.events.Omitted")
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    parts = {p.strip().rsplit(".", 1)[-1] for p in text.split("|")}
    return "int" in parts and parts <= {"int", "Absent", "Omitted", "None", "NoneType"}


def body_key(name: str) -> Any:
    """A field whose body key is not a Python name (`from`): `from_: str = body_key("from")`."""
    return field(metadata={"key": name})


@dataclass
class Event:
    """A business event to be recorded: what happened (a declared type's data), by whom, about
    which opaque ids."""

    what: Declared
    actor: str | None = None
    request_id: str | None = None
    record_id: str | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def type(self) -> str:
        return self.what.TYPE

    @property
    def data(self) -> Mapping[str, Any]:
        """The body's keys beyond the envelope (read-only: the declared data is frozen)."""
        return MappingProxyType(self.what.data())

    def declared(self) -> None:
        """Refuse an event not built from a registered declared type (a programming error)."""
        what = self.what
        if REGISTRY.get(getattr(what, "TYPE", None) or "") is not type(what):
            # Names the class (or the old type string), never the data: it may be anything.
            shown = f"{what!r:.40}" if isinstance(what, str) else type(what).__name__
            raise TypeError(
                "a ledger event is built from a declared event type "
                f"(custodes.ledger.event_types), not {shown}"
            )

    def time_text(self) -> str:
        return self.at.isoformat(timespec="microseconds")

    def body(self, time_text: str | None = None) -> bytes:
        """Canonical JSON (sorted keys, no spaces, UTF-8); refuses personal data.

        The check runs over the whole body: the fixed keys (type, time, actor, ids) are not
        personal keys, and a TIN-shaped id is refused like any other TIN-shaped value.
        `time_text` is `self.time_text()` when the caller has it already (a batch's events
        share a moment).
        """
        self.declared()
        if not self.actor:
            # Every event names who did it; a service without an authenticated caller has no
            # business writing to the ledger.
            raise ValueError(f"ledger event {self.type!r} has no actor")
        data = self.what.data()
        doc = {
            "v": 1,
            "type": self.what.TYPE,
            "time": time_text or self.time_text(),
            "actor": self.actor,
            "request_id": self.request_id,
            "record_id": self.record_id,
            **data,
        }
        try:
            out = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        except TypeError as exc:
            raise ValueError(f"event data is not JSON: {exc}") from None
        counts = self.what.COUNTS
        _check({k: v for k, v in data.items() if not (k in counts and type(v) is int)})
        for k in ("actor", "request_id", "record_id"):
            _check(doc[k], k)
        return out


def instant(v: Any) -> str | None:
    """A time from a store row or an event body in one form (UTC, microseconds), to compare
    the two; a value that is no time (an edited row or body) is returned as it is, so the
    comparison reports it instead of crashing."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = dt.datetime.fromisoformat(v)
        except ValueError:
            return str(v)
    if not isinstance(v, dt.datetime):
        return str(v)
    when: dt.datetime = v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def commitment(salt: bytes, body: bytes) -> bytes:
    return hashlib.sha256(COMMITMENT_PREFIX + salt + body).digest()


def new_salts(n: int) -> list[bytes]:
    pool = os.urandom(32 * n)
    return [pool[i : i + 32] for i in range(0, 32 * n, 32)]


# --- item ids: committed, never written ------------------------------------------------------
#
# An item id is the requesting agency's choice, and agencies have sent ids that spell a name and
# a date of birth. Bodies carry `item_sha256` = SHA-256("custodes/item/v1\n" || salt || id),
# with a salt per item derived from the workspace's item key (HMAC-SHA256 over the request id
# and the item id), so the body alone reveals nothing and cannot be searched by guessing, while
# whoever holds the key (the workspace) finds an item's leaves and opens its commitment, and
# a report hands the auditor each row's salt with its id so the id can be checked against the
# ledger without the key.


def item_salt(key: bytes, request_id: str, item_id: str) -> bytes:
    return hmac.new(key, f"{request_id}\n{item_id}".encode(), hashlib.sha256).digest()


def item_commitment(salt: bytes, item_id: str) -> str:
    return hashlib.sha256(ITEM_PREFIX + salt + item_id.encode()).hexdigest()


def item_sha256(key: bytes, request_id: str, item_id: str) -> str:
    """The commitment a ledger body carries for this item of this request."""
    return item_commitment(item_salt(key, request_id, item_id), item_id)
