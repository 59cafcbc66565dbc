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
- on Spark, ``jaro_winkler`` is DuckDB's definition (`jaro_winkler`, equal to DuckDB's up to
  the last bit, which the grid removes), not the jar's (`register_jaro_winkler`);
- Splink's own Jaro–Winkler levels compare the similarity on the grid too
  (`grid_similarity_levels`).

Ties are then real ties, broken by the master record's key (`deciding.step_ranked`).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
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


def _jaro_winkler_by_value() -> Callable[[str | None, str | None], float | None]:
    # Defined inside a function, so that Spark pickles it by value (a module-level function
    # is pickled by reference, and the workers cannot import custodes).
    def jaro_winkler(a: str | None, b: str | None) -> float | None:
        """The Jaro–Winkler similarity as DuckDB's ``jaro_winkler_similarity`` defines it (the
        match window max(len)/2 - 1, half the out-of-order matches counted whole, the Winkler boost
        of 0.1 a common leading character, up to 4, above 0.7): equal to DuckDB's on the grid.
        Hand-written because it must run on Spark's workers with nothing but Python (as
        ``strip_accents``); `tests/test_engines_alike.py` holds it to DuckDB's."""
        if a is None or b is None:
            return None
        la, lb = len(a), len(b)
        if not la or not lb:
            return 0.0
        window = max(max(la, lb) // 2 - 1, 0)
        taken = [False] * lb
        matched_a: list[str] = []
        for i, ch in enumerate(a):
            for j in range(max(0, i - window), min(i + window + 1, lb)):
                if not taken[j] and b[j] == ch:
                    taken[j] = True
                    matched_a.append(ch)
                    break
        m = len(matched_a)
        if not m:
            return 0.0
        matched_b = [b[j] for j in range(lb) if taken[j]]
        t = sum(x != y for x, y in zip(matched_a, matched_b, strict=True)) // 2
        sim = (m / la + m / lb + (m - t) / m) / 3
        if sim > 0.7:
            prefix = 0
            for x, y in zip(a[:4], b[:4], strict=False):
                if x != y:
                    break
                prefix += 1
            sim += prefix * 0.1 * (1 - sim)
        return sim

    return jaro_winkler


jaro_winkler = _jaro_winkler_by_value()


def register_jaro_winkler(spark: Any) -> None:
    """Spark's ``jaro_winkler`` as DuckDB defines it (`jaro_winkler`), replacing the one
    Splink's jar registers (another definition). A Python UDF that travels to the workers by
    value (they need Python, not custodes). Call it after Splink's ``SparkAPI`` is made: that
    registers the jar's functions again."""
    from pyspark.sql.types import DoubleType

    spark.udf.register("jaro_winkler", jaro_winkler, DoubleType())
