"""Every type of event custodes writes to its ledger, declared: the type string, what it means
(the docstring, which docs/ledger.md's "Event types" section is generated from), and the keys of
its body as typed fields. `log.append` takes only events built from these (see
`events.declare`); the readers parse a body back into its type with `parse`.

A field left `OMIT` is absent from the body (some events of a type carry the key, others do
not); a field whose value is `None` is written as `null`. Types whose data carries variable
keys hold them in one `dict` field (the body nests them under that key, as it always has).

    python -m custodes.ledger.event_types --markdown   # the generated section
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any, TypeVar

from custodes.ledger.events import OMIT, REGISTRY, Declared, Omitted

Absent = Omitted  # the annotation of a field that may be left out of the body

# The declarations live in two modules (this one would pass 600 lines); importing them here
# declares every type and re-exports it.
from custodes.ledger.event_types_access import *  # noqa: E402, F403
from custodes.ledger.event_types_requests import *  # noqa: E402, F403

# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Other:
    """A body whose type this version does not declare (written by an older or newer one), or
    no body at all: read as it is, never written."""

    type: str
    body: dict[str, Any]


T = TypeVar("T", bound=Declared)


def parse(body: Any) -> Declared | Other:
    """A body read back, as its declared type. A key an older version did not write reads as
    the field's default (`OMIT`, `[]`, `0`) or `None`, and a key this version does not know is
    left out of the typed view (still in the body): what was written by another version never
    crashes a reader. A type not declared here reads as `Other`."""
    if not isinstance(body, dict):
        return Other("", {})
    name = body.get("type")
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        return Other(str(body.get("type")), body)
    return _build(cls, body)


def parse_as(cls: type[T], body: Any) -> T | None:
    """A body as `cls`, or None when it is of another type."""
    got = parse(body)
    return got if isinstance(got, cls) else None


def _build(cls: type[T], body: dict[str, Any]) -> T:
    kw = {a: body[k] for a, k in cls.KEYS if k in body}
    if len(kw) < len(cls.KEYS):  # an older body: a required key it lacks reads None
        for f, (a, _) in zip(fields(cls), cls.KEYS, strict=True):
            if a not in kw and f.default is MISSING and f.default_factory is MISSING:
                kw[a] = None
    return cls(**kw)


# --- the documentation ------------------------------------------------------------------------


def declared() -> list[type[Declared]]:
    """custodes's own declared types, by type string (a test may declare its own: left out)."""
    return sorted(
        (c for c in REGISTRY.values() if c.__module__.startswith("custodes.")),
        key=lambda c: c.TYPE,
    )


def _annotation(f: Field[Any]) -> str:
    # the annotation as written (a field group's too), without `Absent`
    text = str(f.type).replace("Absent", "").replace("| ", "|")
    parts = [p.strip() for p in text.split("|") if p.strip()]
    return " \\| ".join(parts)


def markdown() -> str:
    """The "Event types" section of docs/ledger.md (between its markers), from the models."""
    lines = [
        "| type | meaning | keys (beyond v, type, time, actor, request_id, record_id) |",
        "|---|---|---|",
    ]
    for cls in declared():
        doc = " ".join((cls.__doc__ or "").split())
        required, optional = [], []
        for f, (_, k) in zip(fields(cls), cls.KEYS, strict=True):
            if f.default is OMIT:  # listed last (a field group's come first in `fields`)
                optional.append(f"`{k}`?: {_annotation(f)}")
            else:
                required.append(f"`{k}`: {_annotation(f)}")
        keys = required + optional
        lines.append(f"| `{cls.TYPE}` | {doc} | {', '.join(keys) or '—'} |")
    lines.append("")
    lines.append("`?`: the key is absent from the bodies of this type that do not need it.")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[1:] != ["--markdown"]:
        print("usage: python -m custodes.ledger.event_types --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


__all__ = [
    "OMIT",
    "REGISTRY",
    "Declared",
    "Other",
    "declared",
    "markdown",
    "parse",
    "parse_as",
]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv))
