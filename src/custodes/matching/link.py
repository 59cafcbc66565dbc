"""Linking a request to the master file: candidates, the person gate, flags and the verdict.

For every item: the best candidate and the runner-up with their match probabilities and
per-field match weights, flags for *why it might be someone else*, and one status:

- ``identified``: the best candidate reaches ``min_probability``, beats the runner-up by
  ``min_margin_bits``, passes the person gate, and no blocking flag is raised;
- ``review``: otherwise, when the best candidate reaches ``review_probability``, the
  evidence is not plainly another person's, and the list gives at least two of first name,
  date of birth and TIN (with fewer, no officer could tell the person from a relative);
- ``not_identified``: otherwise.

The person gate exists because surname and address are *household* evidence: they break the
model's independence assumption and made absent relatives score p ≥ 0.99 against a household
member (MATCHING.md §2.3). The gate weighs the evidence that belongs to one person — first
name, date of birth, TIN — each agreeing (exactly or within a typo that other evidence
corroborates), contradicting or absent: two must agree and none contradict, or one contradiction
must be outweighed by the household's evidence (surname, house, no namesake living there); two
contradictions are another person (docs/decisions/2026-11-30-person-gate-weighs-the-evidence.md).
Everything runs as SQL over whole tables (DuckDB); only the scoring runs in Splink,
on DuckDB or on Spark. The standardized tables are made in `tables.py`, Splink's engines are in
`backends.py`, and the deciding steps (the gate, the flags, the verdict) in `deciding.py`; this
module scores and decides a link with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from custodes import settings
from custodes.matching.backends import DuckDBBackend, SparkBackend
from custodes.matching.deciding import decide_steps
from custodes.matching.exact import double, floor_weight, grid, grid_similarity_levels
from custodes.matching.model import (
    MASTER,
    REQUEST,
    Model,
    Thresholds,
    for_dialect,
)
from custodes.matching.model import log_level as mdl_log_level
from custodes.matching.tables import known_first_names, nickname_table
from custodes.records import master
from custodes.store.sql import literal
from custodes.store.steps import DuckSteps, SparkSteps, Steps

Progress = Callable[[str, int, int], None]

ITEMS_PER_CHUNK = settings.integer("CUSTODES_MATCH_CHUNK_ITEMS", 250000)


@dataclass
class LinkResult:
    items: int
    identified: int
    review: int
    not_identified: int
    pairs: int
    chunks: int
    model_sha256: str
    path: Path

    def to_dict(self) -> dict[str, object]:
        return {
            "items": self.items,
            "identified": self.identified,
            "review": self.review,
            "not_identified": self.not_identified,
            "scored_pairs": self.pairs,
            "chunks": self.chunks,
            "model_sha256": self.model_sha256,
            "output": str(self.path),
        }


# ---------------------------------------------------------------------------------------------
# Scoring and deciding

# Every score on the grid of exact.py, so that both engines order and compare the same bits.
PAIR_COLUMNS = f"""CASE WHEN source_dataset_l = 'request' THEN uid_l ELSE uid_r END AS item_id,
    CASE WHEN source_dataset_l = 'request' THEN uid_r ELSE uid_l END AS record_id,
    {grid("match_weight")} AS match_weight, {grid("match_probability")} AS match_probability,
    {grid("mw_first + coalesce(mw_tf_adj_first, 0)")} AS w_first,
    {grid("mw_last + coalesce(mw_tf_adj_last, 0)")} AS w_last,
    {grid("mw_middle + coalesce(mw_tf_adj_middle, 0)")} AS w_middle,
    {grid("mw_dob")} AS w_dob, {grid("mw_tin")} AS w_tin, {grid("mw_address")} AS w_address"""

# Splink keeps pairs a little below the floor; the floor itself is applied on the grid.
FLOOR_SLACK_BITS = 1e-6


def pairs_sql(table: str, floor_probability: float) -> str:
    """The pairs of Splink's predicted `table` at or above the floor, scores on the grid."""
    floor_w = double(floor_weight(floor_probability))
    return f"""SELECT {PAIR_COLUMNS} FROM {table}
        WHERE {grid("match_weight")} >= {floor_w}"""


def _predict_threshold(floor_probability: float) -> float:
    return floor_weight(floor_probability) - FLOOR_SLACK_BITS


def score(
    backend: DuckDBBackend | SparkBackend,
    model: Model,
    master_path: Path,
    request_path: Path,
    n_items: int,
    floor_probability: float,
    progress: Progress | None,
    con: duckdb.DuckDBPyConnection,
) -> tuple[int, int]:
    """All candidate pairs at or above the floor probability, with per-field weights, into
    the temp table `pairs` of `con` (a bulk connection), chunk by chunk (the pairs of a 5M x
    1M link never enter Python). Returns how many pairs, and how many chunks."""
    from splink import Linker

    from custodes.matching.model import quiet_splink

    quiet_splink()
    sdf_m = backend.register(master_path, MASTER)
    sdf_r = backend.register(request_path, REQUEST)
    linker = Linker(
        [sdf_m, sdf_r],
        grid_similarity_levels(for_dialect(model.splink, backend.dialect)),
        log_level=mdl_log_level(),
    )
    chunks = max(1, math.ceil(n_items / ITEMS_PER_CHUNK))
    for i in range(1, chunks + 1):
        sdf = linker.inference.predict_chunk(
            left_chunk=(1, 1),
            right_chunk=(i, chunks),
            threshold_match_weight=_predict_threshold(floor_probability),
            warning_mode="never",
        )
        backend.keep(pairs_sql(sdf.physical_name, floor_probability), con, first=i == 1)
        sdf.drop_table_from_database_and_remove_from_cache()
        if progress:
            progress("score", i, chunks)
    return con.execute("SELECT count(*) FROM pairs").fetchall()[0][0], chunks


def score_spark(
    backend: SparkBackend,
    st: SparkSteps,
    model: Model,
    master_path: Path,
    request_path: Path,
    floor_probability: float,
) -> tuple[int, Any]:
    """All candidate pairs at or above the floor probability as the Spark view `pairs` (they
    stay on the cluster). Returns their number and Splink's table (drop it when done)."""
    from splink import Linker

    from custodes.matching.model import quiet_splink

    quiet_splink()
    sdf_m = backend.register(master_path, MASTER)
    sdf_r = backend.register(request_path, REQUEST)
    linker = Linker(
        [sdf_m, sdf_r],
        grid_similarity_levels(for_dialect(model.splink, backend.dialect)),
        log_level=mdl_log_level(),
    )
    sdf = linker.inference.predict(
        threshold_match_weight=_predict_threshold(floor_probability), warning_mode="never"
    )
    st.table("pairs", pairs_sql(sdf.physical_name, floor_probability), reused=True)
    return int(st.scalar("SELECT count(*) FROM pairs")), sdf


def decide(
    con: duckdb.DuckDBPyConnection,
    pairs: pa.Table | None,
    master_path: Path,
    request_path: Path,
    t: Thresholds,
    mf: master.MasterFile,
    items_path: Path,
    envelope_periods: list[int],
) -> None:
    """Create the temp table `linked`: one row per item with its verdict and evidence.
    `pairs`: the scored pairs, or None when they are already `con`'s table `pairs` (`score`
    with `con`)."""
    st = DuckSteps(con)
    if pairs is not None:
        st.arrow("pairs", pairs)
    inputs(st, master_path, request_path, mf, items_path)
    decide_steps(st, t, envelope_periods, has_own_periods(items_path))


def inputs(
    st: Steps, master_path: Path, request_path: Path, mf: master.MasterFile, items_path: Path
) -> None:
    """The tables the deciding steps read, besides `pairs`: the standardized master file `m`
    and items `r`, the master's `addresses`, the request's raw `items`, and the reference
    tables `nick` and `known_first`."""
    st.arrow("nick", nickname_table())
    st.arrow("known_first", known_first_names())
    st.source("m", master_path)
    st.source("r", request_path)
    st.source("addresses", mf.path("addresses"))
    st.source("items", items_path)


def has_own_periods(items_path: Path) -> bool:
    return "taxable_periods" in pq.read_schema(items_path).names


def write_linked(con: Any, model_sha: str, out: Path) -> dict[str, int]:
    """Write the `linked` table (on DuckDB: `con`; or the `Steps` that made it) as one Parquet
    file in item order; return the counts by status (the only rows the driver collects)."""
    st = con if isinstance(con, DuckSteps | SparkSteps) else DuckSteps(con)
    st.write(f"SELECT *, {literal(model_sha)} AS model_sha256 FROM linked", out, "item_id")
    counts = dict(st.rows("SELECT status, count(*) FROM linked GROUP BY status"))
    return {k: counts.get(k, 0) for k in ("identified", "review", "not_identified")}
