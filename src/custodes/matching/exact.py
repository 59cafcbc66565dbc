"""Scores that DuckDB and Spark compute to the same bits, so that both engines choose the same
candidate, runner-up and flags (issue #25; docs/decisions/2026-12-06-engines-choose-alike.md).

Two engines do not compute a double alike: Splink's term-frequency adjustment is ``log2`` (C's
on DuckDB, ``ln(x) / ln(2)`` on Spark), the probability a ``pow`` (C's or Java's), and the
Jaro–Winkler similarity is DuckDB's own on DuckDB and Splink's jar on Spark (another
definition: PILAR/PEARLE is 0.765 on one and 0.697 on the other). A last-bit difference is
enough to reorder two candidates of equal score or to put a score on either side of a
threshold. So:

- every score a choice reads (match weight, per-field weights, probability, Jaro–Winkler) is
  put on a grid of 1e-9 (`grid`: multiply, add a half, floor, divide; the same four IEEE
  operations in both dialects, unlike ``round``) before it is compared or ordered;
- the thresholds are written as DOUBLE literals (`double`), parsed alike by both engines;
- on Spark, ``jaro_winkler`` is DuckDB's own function, run by DuckDB on the workers, not the
  jar's (`register_jaro_winkler`);
- Splink's own Jaro–Winkler levels compare the similarity on the grid too
  (`grid_similarity_levels`).

Ties are then real ties, broken by the master record's key (`deciding.step_ranked`).
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

# The grid's step is 1/SCALE: far above the last-bit noise of a weight or a similarity
# (~1e-15), far below anything that means something (a tenth of a bit, 0.01 of similarity).
SCALE = "1e9"

_JW_CALL = re.compile(r"\bjaro_winkler(?:_similarity)?\([^()]*\)", re.IGNORECASE)


def grid(expr: str) -> str:
    """SQL (DuckDB's spelling, valid as written on Spark too): `expr` on the 1e-9 grid."""
    return f"(floor(({expr}) * {SCALE} + 0.5) / {SCALE})"


def on_grid(x: float) -> float:
    """`grid` in Python, to the same bits (the same IEEE operations)."""
    return math.floor(x * float(SCALE) + 0.5) / float(SCALE)


def floor_weight(floor_probability: float) -> float:
    """The floor probability as a match weight, on the grid: pairs below it are not kept, and
    a missing runner-up counts as it."""
    return on_grid(math.log2(floor_probability / (1 - floor_probability)))


def double(x: float) -> str:
    """`x` as a SQL DOUBLE literal (an exponent makes it DOUBLE on both engines, not DECIMAL),
    which both parse to the same double as Python's."""
    text = repr(float(x))
    if not math.isfinite(x):
        raise ValueError(f"not a finite threshold: {text}")
    return text if "e" in text else f"{text}e0"


def grid_similarity_levels(splink_settings: dict[str, Any]) -> dict[str, Any]:
    """Splink's settings with every Jaro–Winkler call in a level's condition on the grid (a
    copy; the saved model is not changed)."""
    out = copy.deepcopy(splink_settings)
    for comparison in out.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            cond = level.get("sql_condition")
            if isinstance(cond, str) and "floor((jaro_winkler" not in cond.lower():
                level["sql_condition"] = _JW_CALL.sub(lambda m: grid(m.group(0)), cond)
    return out


def register_jaro_winkler(spark: Any) -> None:
    """Spark's ``jaro_winkler`` as DuckDB's ``jaro_winkler_similarity``, run by DuckDB on the
    workers (`steps.register_duckdb_function`), replacing the one Splink's jar registers
    (another definition). Call it after Splink's ``SparkAPI`` is made: that registers the jar's
    functions again."""
    from custodes.store.steps import register_duckdb_function

    register_duckdb_function(spark, "jaro_winkler", "jaro_winkler_similarity", 2, "double")
