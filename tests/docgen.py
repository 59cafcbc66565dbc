"""Sections of the docs generated from the code's own tables: the text between
`<!-- NAME:begin -->` and `<!-- NAME:end -->` in a doc. A test compares the section with the
generated text and fails showing it; running the test module as a script rewrites it."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- {re.escape(name)}:begin -->\n)(.*?)(<!-- {re.escape(name)}:end -->)", re.S
    )


def section(doc: str, name: str) -> str:
    """The generated section `name` of docs/`doc` as it stands."""
    found = _pattern(name).search((DOCS / doc).read_text())
    assert found, f"docs/{doc} has no <!-- {name}:begin/end --> markers"
    return found.group(2)


def write(doc: str, name: str, text: str) -> None:
    path = DOCS / doc
    path.write_text(
        _pattern(name).sub(lambda m: m.group(1) + text + m.group(3), path.read_text(), count=1)
    )
