"""An edit to a generated request the campaigns share (bench/crash.py, bench/tamper.py): the
same as tests/conftest.py's `one_for_review`."""

from __future__ import annotations

import csv
from pathlib import Path


def one_for_review(folder: Path, n: int = 1) -> None:
    """Move the date of birth of `n` no-TIN, undamaged items of a generated request thirty
    years back (a generation apart: never read as a typo), so that processing sends exactly
    that kind of item to review."""
    with open(folder / "truth.csv") as fh:
        truth = {r["item_id"]: r for r in csv.DictReader(fh)}
    with open(folder / "items.csv") as fh:
        rows = list(csv.DictReader(fh))
    for row in [r for r in rows if truth[r["item_id"]]["defect"] == "none" and not r["tin"]][:n]:
        row["dob"] = f"{int(row['dob'][:4]) - 30}{row['dob'][4:]}"
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
