"""A synthetic master file too large to draw at once, drawn in shards and concatenated.

The population module's arrays take ≈ 0.8 KB a filer; a master file over its `SHARD_PEOPLE` is
drawn here shard by shard (each by the population module's own generation, through `draw`) and
the shards' files are concatenated in order, so 25M people generate in the memory of 4M.
(decisions/2026-12-06-synthetic-master-in-shards.md)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# A draw of distinct TIN candidates (the population module's `_ssns`, `_itins`).
TinDraw = Callable[[np.random.Generator, int], np.ndarray]
# What a shard draws from: its SSNs, its ITINs, and its range of record ids [lo, hi).
Tins = tuple[TinDraw, TinDraw, tuple[int, int]]
# One shard's generation: (its generator, its filers, its folder, what it draws from).
Draw = Callable[[np.random.Generator, int, Path, Tins], None]


def draw_in_shards(
    people: int,
    seed: int,
    out: Path,
    shard_people: int,
    draw: Draw,
    tin_draws: tuple[TinDraw, TinDraw],
) -> None:
    """Draw `people` filers in S shards and concatenate them. Shard k draws from its own
    generator (seeded by the seed and k), from the k-th of S consecutive blocks of SSN areas,
    of ITIN areas and of record ids, so no two shards share a TIN or a record id and each
    shard's rows follow the previous shard's in every file's order; its person and household
    ids are shifted past the previous shards'. The files are then written as an unsharded
    generation orders them (people by record id, addresses by TIN with every SSN before every
    ITIN, the population by person id) by streaming the shards' row groups in order: no sort,
    and memory of one row group (a DuckDB ORDER BY over 25M rows ran out at its limit)."""
    n_shards = -(-people // shard_people)
    parts: list[Path] = []
    pid_base = hh_base = 0
    shifts: list[tuple[int, int]] = []
    for k in range(n_shards):
        part = out / f".shard-{k}"
        part.mkdir(mode=0o700)
        count = people // n_shards + (1 if k < people % n_shards else 0)
        draw(
            np.random.default_rng([seed, n_shards, k]),
            count,
            part,
            (
                _in_block(tin_draws[0], 1, 900, n_shards, k),
                _in_block(tin_draws[1], 900, 1000, n_shards, k),
                _block(1, 2**62, n_shards, k),
            ),
        )
        parts.append(part)
        shifts.append((pid_base, hh_base))
        ids = pq.read_table(part / "population.parquet", columns=["household_id"])
        pid_base += ids.num_rows
        hh_base += int(pc.max(ids["household_id"]).as_py()) + 1
    _concat([p / "people.parquet" for p in parts], out / "people.parquet")
    ssn = pc.field("tin") < "9"
    _concat(
        [p / "addresses.parquet" for p in parts] * 2,
        out / "addresses.parquet",
        filters=[ssn] * n_shards + [~ssn] * n_shards,
    )
    _concat(
        [p / "population.parquet" for p in parts],
        out / "population.parquet",
        shifts=shifts,
    )
    for part in parts:
        for f in part.iterdir():
            f.unlink()
        part.rmdir()


def _block(lo: int, hi: int, n_shards: int, k: int) -> tuple[int, int]:
    """The k-th of `n_shards` consecutive blocks of [lo, hi)."""
    span = hi - lo
    return lo + span * k // n_shards, lo + span * (k + 1) // n_shards


def _in_block(
    draw: TinDraw,
    lo: int,
    hi: int,
    n_shards: int,
    k: int,
) -> TinDraw:
    """`draw`, keeping only the numbers whose area (the first three digits) lies in shard k's
    block of the areas [lo, hi)."""
    first, last = _block(lo, hi, n_shards, k)

    def drawn(rng: np.random.Generator, count: int) -> np.ndarray:
        got = np.empty(0, dtype=np.int64)
        while len(got) < count:
            cand = draw(rng, (count - len(got)) * n_shards + 16)
            area = cand // 1_000_000
            got = np.concatenate([got, cand[(area >= first) & (area < last)]])
        kept: np.ndarray = got[:count]
        return kept

    return drawn


def _concat(
    sources: list[Path],
    target: Path,
    *,
    filters: list[pc.Expression] | None = None,
    shifts: list[tuple[int, int]] | None = None,
) -> None:
    """One Parquet file of the sources' rows in order (each filtered, or with its person and
    household ids shifted), streamed a row group at a time."""
    writer: pq.ParquetWriter | None = None
    try:
        for i, src in enumerate(sources):
            f = pq.ParquetFile(src)
            for batch in f.iter_batches(batch_size=122_880):
                t = pa.Table.from_batches([batch])
                if filters is not None:
                    t = t.filter(filters[i])
                if shifts is not None:
                    pb, hb = shifts[i]
                    for col, by in (
                        ("person_id", pb),
                        ("household_id", hb),
                        ("twin_of", pb),
                        ("junior_of", pb),
                    ):
                        at = t.schema.get_field_index(col)
                        t = t.set_column(at, col, pc.add(t[col], pa.scalar(by, t[col].type)))
                if writer is None:
                    writer = pq.ParquetWriter(target, t.schema)
                writer.write_table(t)
    finally:
        if writer is not None:
            writer.close()
