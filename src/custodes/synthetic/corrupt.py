"""Corrupting request items the way real lists are corrupted (`requests generate --corruption`).

The model is the FEBRL / GeCo corruptor (Christen; Tran, Vatsalan & Christen, "GeCo", CIKM
2013): a corrupted record gets one or more modifications, each picked by weight from a table of
kinds — OCR confusions, keyboard neighbours, phonetic substitutions, inserted, deleted and
transposed letters, missing values — plus the US patterns of LAW.md and MATCHING.md: swapped
name fields (family name first), hyphenated and two-part surnames, nicknames, transposed date
digits and day/month swaps, an ITIN on the list where the master file holds the SSN issued
later. Hand-written because GeCo is not packaged and FEBRL's generator is Python 2.

A *mix* says how many items are corrupted and how hard:

====================  ======================  ======================================
mix                   items corrupted         modifications per corrupted item
====================  ======================  ======================================
``none``              0 (the request's own    —
                      defects only)
``typical``           30 %                    1–2
``heavy``             60 %                    1–4 (FEBRL4's density: most items are
                                              modified, several fields at once)
====================  ======================  ======================================

Every modification is recorded in the truth file's ``corruptions`` column (``kind:field``,
``;``-separated), so a measurement can be broken down by what was done to the item.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Row = dict[str, Any]


@dataclass(frozen=True)
class Mix:
    share: float  # of the items that get modified at all
    max_modifications: int  # per item, drawn uniformly from 1..max


MIXES = {
    "none": Mix(0.0, 0),
    "typical": Mix(0.30, 2),
    "heavy": Mix(0.60, 4),
}

# OCR confusions between upper-case letter groups (GeCo's OCR table, letters only).
OCR = [
    ("M", "RN"),
    ("RN", "M"),
    ("W", "VV"),
    ("VV", "W"),
    ("D", "CL"),
    ("CL", "D"),
    ("O", "Q"),
    ("Q", "O"),
    ("I", "L"),
    ("L", "I"),
    ("E", "F"),
    ("F", "E"),
    ("B", "R"),
    ("R", "B"),
    ("H", "LI"),
    ("U", "V"),
    ("V", "U"),
    ("G", "C"),
    ("C", "G"),
    ("N", "H"),
]
# Phonetic substitutions (GeCo's phonetic rules, simplified to unconditional ones).
PHONETIC = [
    ("PH", "F"),
    ("F", "PH"),
    ("CK", "K"),
    ("K", "CK"),
    ("C", "K"),
    ("Y", "I"),
    ("I", "Y"),
    ("IE", "Y"),
    ("EE", "EA"),
    ("EA", "EE"),
    ("S", "Z"),
    ("Z", "S"),
    ("TH", "T"),
    ("GH", "G"),
    ("OU", "OO"),
    ("AY", "EY"),
    ("EY", "AY"),
    ("X", "KS"),
    ("KS", "X"),
    ("MM", "M"),
    ("LL", "L"),
    ("TT", "T"),
    ("SS", "S"),
    ("NN", "N"),
]
KEYBOARD_ROWS = ("QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM")
DIGITS = "0123456789"


def _neighbours(ch: str) -> str:
    for i, row in enumerate(KEYBOARD_ROWS):
        j = row.find(ch)
        if j < 0:
            continue
        near = row[max(j - 1, 0) : j] + row[j + 1 : j + 2]
        for k in (i - 1, i + 1):
            if 0 <= k < len(KEYBOARD_ROWS):
                near += KEYBOARD_ROWS[k][max(j - 1, 0) : j + 1]
        return near
    return ""


def _substitute(s: str, table: list[tuple[str, str]], rng: np.random.Generator) -> str | None:
    hits = [(a, b, i) for a, b in table for i in _find_all(s, a)]
    if not hits:
        return None
    a, b, i = hits[rng.integers(len(hits))]
    return s[:i] + b + s[i + len(a) :]


def _find_all(s: str, sub: str) -> list[int]:
    out, i = [], s.find(sub)
    while i >= 0:
        out.append(i)
        i = s.find(sub, i + 1)
    return out


def _keyboard(s: str, rng: np.random.Generator) -> str | None:
    idx = [i for i, c in enumerate(s) if _neighbours(c)]
    if not idx:
        return None
    i = idx[rng.integers(len(idx))]
    near = _neighbours(s[i])
    return s[:i] + near[rng.integers(len(near))] + s[i + 1 :]


def _insert(s: str, rng: np.random.Generator) -> str | None:
    if not s:
        return None
    i = int(rng.integers(len(s) + 1))
    pool = _neighbours(s[min(i, len(s) - 1)]) or "AEIOU"
    return s[:i] + pool[rng.integers(len(pool))] + s[i:]


def _delete(s: str, rng: np.random.Generator) -> str | None:
    if len(s) < 4:
        return None
    i = int(rng.integers(len(s)))
    return s[:i] + s[i + 1 :]


def _transpose(s: str, rng: np.random.Generator) -> str | None:
    idx = [i for i in range(len(s) - 1) if s[i] != s[i + 1] and s[i] != "-" and s[i + 1] != "-"]
    if not idx:
        return None
    i = idx[rng.integers(len(idx))]
    return s[:i] + s[i + 1] + s[i] + s[i + 2 :]


NAME_TYPOS: dict[str, Callable[[str, np.random.Generator], str | None]] = {
    "ocr": lambda s, rng: _substitute(s, OCR, rng),
    "phonetic": lambda s, rng: _substitute(s, PHONETIC, rng),
    "keyboard": _keyboard,
    "insert": _insert,
    "delete": _delete,
    "transpose": _transpose,
}


def _valid_date(s: str) -> bool:
    try:
        dt.date.fromisoformat(s)
    except ValueError:
        return False
    return True


def _dob_transpose(s: str, rng: np.random.Generator) -> str | None:
    # two adjacent digits of the year, the month or the day swapped (1987 -> 1978)
    pos = [i for i in (2, 3, 5, 8) if s[i] != s[i + 1]]
    rng.shuffle(pos)
    for i in pos:
        out = s[:i] + s[i + 1] + s[i] + s[i + 2 :]
        if _valid_date(out):
            return out
    return None


def _dob_day_month(s: str, rng: np.random.Generator) -> str | None:
    out = f"{s[:4]}-{s[8:10]}-{s[5:7]}"
    return out if out != s and _valid_date(out) else None


def _dob_digit(s: str, rng: np.random.Generator) -> str | None:
    for _ in range(6):
        i = int(rng.choice([2, 3, 6, 8, 9]))
        out = s[:i] + DIGITS[rng.integers(10)] + s[i + 1 :]
        if out != s and _valid_date(out):
            return out
    return None


def _tin_digits(t: str) -> str:
    return "".join(c for c in t if c.isdigit())


def _tin_transpose(t: str, rng: np.random.Generator) -> str | None:
    d = _tin_digits(t)
    out = _transpose(d, rng)
    return out


def _itin(t: str, rng: np.random.Generator) -> str | None:
    # an ITIN (9XX-7X-XXXX) the person held before the SSN the master file has
    return f"9{rng.integers(0, 100):02d}7{rng.integers(0, 10)}{rng.integers(0, 10_000):04d}"


def _swap_names(row: Row, rng: np.random.Generator) -> bool:
    if not row["first_name"] or not row["last_name"]:
        return False
    row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
    return True


def _second_surname(row: Row, rng: np.random.Generator, others: list[str]) -> bool:
    last = row["last_name"]
    if not last:
        return False
    other = others[rng.integers(len(others))]
    if " " in last or "-" in last:  # a two-part surname loses its second part
        row["last_name"] = last.replace("-", " ").split()[0]
    else:  # or gains one, hyphenated or not (paternal + maternal)
        row["last_name"] = last + ("-" if rng.random() < 0.5 else " ") + other
    return True


def _nickname(row: Row, rng: np.random.Generator, nick: dict[str, list[str]]) -> bool:
    options = nick.get((row["first_name"] or "").upper())
    if not options:
        return False
    row["first_name"] = options[rng.integers(len(options))]
    return True


def _missing(row: Row, rng: np.random.Generator) -> str | None:
    fields = [f for f in ("middle_name", "dob", "tin", "street", "zip", "first_name") if row[f]]
    if not fields:
        return None
    f = fields[rng.integers(len(fields))]
    row[f] = ""
    return f


def _apply_text(
    row: Row,
    field: str,
    fn: Callable[[str, np.random.Generator], str | None],
    rng: np.random.Generator,
) -> bool:
    value = row.get(field) or ""
    if not value:
        return False
    out = fn(value.upper(), rng)
    if out is None or out == value.upper():
        return False
    row[field] = out
    return True


# kind -> weight; the field a name typo lands on is drawn separately (first 45 %, last 45 %,
# street 10 %)
KINDS = {
    "name_typo": 0.40,
    "nickname": 0.06,
    "swapped_names": 0.05,
    "second_surname": 0.06,
    "missing": 0.12,
    "dob_transposed": 0.07,
    "dob_day_month": 0.04,
    "dob_digit": 0.06,
    "tin_transposed": 0.04,
    "itin": 0.03,
    "zip_digit": 0.07,
}


def corrupt(
    rows: list[Row], mix: str, seed: int, surnames: list[str], nicknames: dict[str, list[str]]
) -> list[str]:
    """Modify `rows` (request items) in place; return each item's list of modifications."""
    m = MIXES[mix]
    rng = np.random.default_rng(seed)
    kinds, weights = list(KINDS), np.array(list(KINDS.values()))
    weights = weights / weights.sum()
    typos = list(NAME_TYPOS)
    done: list[str] = []
    for row in rows:
        applied: list[str] = []
        if m.share and rng.random() < m.share:
            before = dict(row)
            wanted = int(rng.integers(1, m.max_modifications + 1))
            for _ in range(wanted * 3):  # a kind that does not apply is drawn again
                if len(applied) >= wanted:
                    break
                kind = kinds[rng.choice(len(kinds), p=weights)]
                what = _one(row, kind, rng, typos, surnames, nicknames)
                if what:
                    applied.append(what)
            if row == before:  # modifications that undid each other (a swap swapped back)
                applied = []
        done.append(";".join(applied))
    return done


def _one(
    row: Row,
    kind: str,
    rng: np.random.Generator,
    typos: list[str],
    surnames: list[str],
    nicknames: dict[str, list[str]],
) -> str | None:
    if kind == "name_typo":
        field = str(rng.choice(["first_name", "last_name", "street"], p=[0.45, 0.45, 0.10]))
        typo = typos[rng.integers(len(typos))]
        return f"{typo}:{field}" if _apply_text(row, field, NAME_TYPOS[typo], rng) else None
    if kind == "nickname":
        return "nickname:first_name" if _nickname(row, rng, nicknames) else None
    if kind == "swapped_names":
        return "swapped:names" if _swap_names(row, rng) else None
    if kind == "second_surname":
        return "second_surname:last_name" if _second_surname(row, rng, surnames) else None
    if kind == "missing":
        missing = _missing(row, rng)
        return f"missing:{missing}" if missing else None
    if kind.startswith("dob_"):
        dob_fn = {
            "dob_transposed": _dob_transpose,
            "dob_day_month": _dob_day_month,
            "dob_digit": _dob_digit,
        }[kind]
        return f"{kind.removeprefix('dob_')}:dob" if _apply_text(row, "dob", dob_fn, rng) else None
    if kind in ("tin_transposed", "itin"):
        fn = _tin_transpose if kind == "tin_transposed" else _itin
        if not row.get("tin"):
            return None
        out = fn(row["tin"], rng)
        if not out or out == _tin_digits(row["tin"]):
            return None
        row["tin"] = out
        return f"{kind.removeprefix('tin_')}:tin"
    if kind == "zip_digit":
        zip_ = row.get("zip") or ""
        if len(zip_) != 5:
            return None
        i = int(rng.integers(1, 5))
        row["zip"] = zip_[:i] + DIGITS[(int(zip_[i]) + 1 + rng.integers(9)) % 10] + zip_[i + 1 :]
        return "digit:zip"
    raise AssertionError(kind)
