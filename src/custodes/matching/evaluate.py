"""Measuring the linkage against ground truth: precision, recall, wrong-person accepts by kind.

The truth file has ``item_id`` and ``record_id`` (empty when the person is not in the master
file), and optionally ``defect`` (``absent_relative`` marks a person who lives in a filer's
household but files nothing: the mistaken-identity case). Figures are given at the thresholds
the linkage ran with and over a grid of probability × margin, with and without the person gate,
so that the defaults can be chosen from measurements; a PNG plots wrong-person accepts and
recall against the probability threshold.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb

from custodes.errors import InputError
from custodes.records.files import read_text_table
from custodes.store import duck
from custodes.store.sql import parquet

GRID_P = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)
GRID_MARGIN = (0.0, 1.0, 3.0, 5.0)
KINDS = ("in_file", "absent_relative", "absent_stranger")


def _load(con: duckdb.DuckDBPyConnection, linked: Path, truth: Path) -> None:
    table = read_text_table(
        truth, ("item_id", "record_id"), ("defect", "corruptions"), allow_extra=True
    )
    con.register("truth_raw", table)
    defect = "t.defect" if "defect" in table.column_names else "NULL"
    corruptions = "t.corruptions" if "corruptions" in table.column_names else "NULL"
    con.execute(f"CREATE OR REPLACE TEMP VIEW l AS SELECT * FROM {parquet(linked)}")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ev AS
        SELECT l.*, nullif(trim(t.record_id), '') AS true_record_id,
          CASE WHEN nullif(trim(t.record_id), '') IS NOT NULL THEN 'in_file'
               WHEN {defect} = 'absent_relative' THEN 'absent_relative'
               ELSE 'absent_stranger' END AS kind,
          coalesce(nullif(trim({corruptions}), ''), 'none') AS corruptions
        FROM l JOIN truth_raw t ON trim(t.item_id) = l.item_id"""
    )
    n_linked, n_joined = con.execute(
        "SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM ev)"
    ).fetchall()[0]
    if n_joined != n_linked:
        raise InputError(
            f"{truth.name}: gives the truth for {n_joined} of the request's {n_linked} items; "
            "every item needs a row.",
            code="truth_mismatch",
        )


def _metrics(con: duckdb.DuckDBPyConnection, accepted: str) -> dict[str, Any]:
    row = con.execute(
        f"""SELECT count(*) AS items,
          count(*) FILTER (kind = 'in_file') AS in_file,
          count(*) FILTER ({accepted}) AS identified,
          count(*) FILTER ({accepted} AND record_id = true_record_id) AS correct,
          count(*) FILTER ({accepted} AND kind = 'in_file' AND record_id <> true_record_id)
            AS wrong_in_file,
          count(*) FILTER ({accepted} AND kind = 'absent_relative') AS wrong_absent_relative,
          count(*) FILTER ({accepted} AND kind = 'absent_stranger') AS wrong_absent_stranger
        FROM ev"""
    ).fetchall()[0]
    keys = (
        "items",
        "in_file",
        "identified",
        "correct",
        "wrong_in_file",
        "wrong_absent_relative",
        "wrong_absent_stranger",
    )
    m: dict[str, Any] = dict(zip(keys, row, strict=True))
    m["wrong"] = m["wrong_in_file"] + m["wrong_absent_relative"] + m["wrong_absent_stranger"]
    m["precision"] = round(m["correct"] / m["identified"], 6) if m["identified"] else None
    m["recall"] = round(m["correct"] / m["in_file"], 6) if m["in_file"] else None
    # Rule of three: with 0 wrong in N accepts the 95% upper bound on the error rate is ~3/N.
    m["wrong_rate_upper_95"] = (
        round(3 / m["identified"], 8) if m["identified"] and m["wrong"] == 0 else None
    )
    return m


def _by_corruption(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """For the in-file items carrying each kind of modification (truth's `corruptions`,
    `kind:field;...`): how many were identified correctly, wrongly, sent to review, missed."""
    rows = con.execute(
        """WITH k AS (
             SELECT DISTINCT item_id, status, record_id, true_record_id,
                    split_part(unnest(string_split(corruptions, ';')), ':', 1) AS what
             FROM ev WHERE kind = 'in_file')
           SELECT what,
             count(*) FILTER (status = 'identified' AND record_id = true_record_id),
             count(*) FILTER (status = 'identified' AND record_id <> true_record_id),
             count(*) FILTER (status = 'review'),
             count(*) FILTER (status = 'not_identified'),
             count(*)
           FROM k GROUP BY what ORDER BY what"""
    ).fetchall()
    keys = ("identified", "wrong", "review", "not_identified", "items")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


# One person's own identifiers, as the list gives them against the true record's: the first
# name within two edits or Jaro-Winkler 0.9, a nickname, or written in the surname's field;
# the date of birth within two keystrokes or with day and month swapped; the TIN within one.
_AGREES = {
    "first": """coalesce(damerau_levenshtein(i.first, m.first) <= 2
                 OR jaro_winkler_similarity(i.first, m.first) >= 0.9 OR i.last = m.first
                 OR EXISTS (SELECT 1 FROM nick WHERE nick.a = i.first AND nick.b = m.first),
                 FALSE)""",
    "dob": """coalesce(damerau_levenshtein(i.dob, m.dob) <= 2
               OR (left(i.dob, 4) = left(m.dob, 4) AND substr(i.dob, 6, 2) = substr(m.dob, 9, 2)
                   AND substr(i.dob, 9, 2) = substr(m.dob, 6, 2)), FALSE)""",
    "tin": "coalesce(damerau_levenshtein(i.tin, m.tin) <= 1, FALSE)",
}


def _evidence(con: duckdb.DuckDBPyConnection, items: Path, master: Path) -> dict[str, Any]:
    """How many on-file items still carry two of the person's own identifiers (first name,
    date of birth, TIN) within a typo — measured from the truth, whatever the gate decides.

    The person gate (link.py) identifies nobody on surname and address alone, because a
    household shares them: an absent relative with the same name at the same house (a Jr, a
    twin) is told apart only by those three. The share of items carrying two of them is
    therefore the recall a gate that keeps that guarantee can reach on this list; recall within
    it measures the gate, recall above it is what the list's corruption cost.
    """
    from custodes.matching.tables import nickname_table

    con.register("nick", nickname_table())
    n = " + ".join(f"({sql})::INT" for sql in _AGREES.values())
    row = con.execute(
        f"""WITH x AS (
              SELECT ev.status, ev.record_id = ev.true_record_id AS right_record, {n} AS agree
              FROM ev JOIN {parquet(items)} i ON i.uid = ev.item_id
              LEFT JOIN {parquet(master)} m ON m.uid = ev.true_record_id
              WHERE ev.kind = 'in_file')
            SELECT count(*), count(*) FILTER (agree >= 2),
              count(*) FILTER (agree >= 2 AND status = 'identified' AND right_record),
              count(*) FILTER (agree < 2 AND status = 'identified' AND right_record)
            FROM x"""
    ).fetchall()[0]
    in_file, carrying, identified, on_less = row
    return {
        "in_file": in_file,
        "carrying_two_of_three": carrying,
        "ceiling_recall": round(carrying / in_file, 6) if in_file else None,
        "identified_of_those": identified,
        "recall_within_ceiling": round(identified / carrying, 6) if carrying else None,
        "identified_on_less": on_less,
    }


def evaluate(
    linked: Path,
    truth: Path,
    out_dir: Path | None = None,
    standardized: tuple[Path, Path] | None = None,
) -> dict[str, Any]:
    """Figures at the configured thresholds and over the grid; writes JSON and a PNG.
    `standardized` (the request's and the master file's standardized tables, as linked) adds
    the person evidence the list still carries (`_evidence`)."""
    con = duck.bulk()  # the bulk settings: memory limit, spill folder
    try:
        _load(con, linked, truth)
        evidence = _evidence(con, *standardized) if standardized else None
        at = _metrics(con, "status = 'identified'")
        by_status = dict(con.execute("SELECT status, count(*) FROM ev GROUP BY 1").fetchall())
        at["review"] = by_status.get("review", 0)
        at["not_identified"] = by_status.get("not_identified", 0)
        at["review_rate"] = round(at["review"] / at["items"], 6) if at["items"] else None
        by_kind = {
            k: dict(
                con.execute(
                    "SELECT status, count(*) FROM ev WHERE kind = ? GROUP BY 1", [k]
                ).fetchall()
            )
            for k in KINDS
        }
        by_corruption = _by_corruption(con)
        grid = []
        for gate in (True, False):
            for margin in GRID_MARGIN:
                for p in GRID_P:
                    cond = (
                        f"record_id IS NOT NULL AND probability >= {p} "
                        f"AND margin_bits >= {margin}"
                        + (" AND gate AND NOT blocked" if gate else "")
                    )
                    m = _metrics(con, cond)
                    grid.append(
                        {
                            "min_probability": p,
                            "min_margin_bits": margin,
                            "gate": gate,
                            "identified": m["identified"],
                            "wrong": m["wrong"],
                            "wrong_absent_relative": m["wrong_absent_relative"],
                            "recall": m["recall"],
                        }
                    )
        model = con.execute("SELECT any_value(model_sha256) FROM ev").fetchall()[0][0]
    finally:
        duck.close(con)
    report = {
        "model_sha256": model,
        "at_thresholds": at,
        "status_by_kind": by_kind,
        "by_corruption": by_corruption,
        "evidence": evidence,
        "grid": grid,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
        report["plot"] = str(plot(grid, out_dir / "evaluation.png"))
        report["report"] = str(out_dir / "evaluation.json")
    return report


def plot(grid: list[dict[str, Any]], path: Path) -> Path:
    """Wrong-person accepts and recall against the probability threshold (log-odds axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_w, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = (
        ("margin 0, no gate", 0.0, False, "tab:red"),
        ("margin 3 bits, no gate", 3.0, False, "tab:orange"),
        ("margin 3 bits + person gate", 3.0, True, "tab:blue"),
    )
    for label, margin, gate, colour in series:
        rows = [g for g in grid if g["min_margin_bits"] == margin and g["gate"] == gate]
        xs = [math.log2(g["min_probability"] / (1 - g["min_probability"])) for g in rows]
        ax_w.plot(xs, [g["wrong"] for g in rows], marker="o", label=label, color=colour)
        ax_r.plot(
            xs, [100 * (g["recall"] or 0) for g in rows], marker="o", label=label, color=colour
        )
    ticks = [math.log2(p / (1 - p)) for p in GRID_P]
    for ax in (ax_w, ax_r):
        ax.set_xticks(ticks, [str(p) for p in GRID_P], rotation=30)
        ax.set_xlabel("minimum match probability")
        ax.grid(alpha=0.3)
    ax_w.set_ylabel("wrong-person identifications")
    ax_w.set_title("Wrong person (all kinds)")
    ax_r.set_ylabel("recall of in-file people (%)")
    ax_r.set_title("Recall")
    ax_w.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
