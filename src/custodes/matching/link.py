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
on DuckDB or on Spark.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from custodes import settings
from custodes.errors import InputError
from custodes.matching import standardize as std
from custodes.matching.model import (
    MASTER,
    MODEL_COLUMNS,
    REQUEST,
    Model,
    Thresholds,
    for_dialect,
)
from custodes.matching.model import log_level as mdl_log_level
from custodes.records import master
from custodes.store.sql import literal, parquet
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
# Standardized inputs


def _std_select() -> str:
    cols = std.name_columns() | std.address_columns()
    return ", ".join(f"{sql} AS {name}" for name, sql in cols.items())


# The columns both standardized tables carry: the model's, then those the gate and flags use.
STD_COLUMNS = """uid, std_first AS first, std_last AS last, strftime(std_dob, '%Y-%m-%d') AS dob,
    std_tin AS tin, std_house AS house, std_street_name AS street, std_zip5 AS zip5,
    std_city AS city, std_state AS state, std_middle AS middle, std_suffix AS suffix,
    std_unit_id AS unit, std_po_box AS po_box"""


MASTER_STD_SQL = f"""
  WITH last AS (
    SELECT record_id, arg_max(struct_pack(street, unit, city, state, zip), tax_year) AS a
    FROM addresses GROUP BY record_id),
  src AS (
    SELECT p.record_id AS uid, p.first_name, p.middle_name, p.last_name, p.suffix,
           p.dob, p.tin, l.a.street AS street, l.a.unit AS unit, l.a.city AS city,
           l.a.state AS state, l.a.zip AS zip
    FROM people p LEFT JOIN last l ON l.record_id = p.record_id),
  s AS (SELECT uid, {_std_select()} FROM src)
  SELECT {STD_COLUMNS},
         concat_ws('|', std_zip5, std_house, std_street_name, std_unit_id, std_po_box) AS hh_key
  FROM s"""


def master_table(con: Any, mf: master.MasterFile, cache: Path) -> Path:
    """The master file standardized for linking (one row per person, last known address),
    cached per master-file content hash. Returns the Parquet path. `con` is a DuckDB
    connection or the `Steps` of an engine."""
    path = cache / "master.parquet"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    st = con if isinstance(con, DuckSteps | SparkSteps) else DuckSteps(con)
    st.source("people", mf.path("people"))
    st.source("addresses", mf.path("addresses"))
    st.write(MASTER_STD_SQL, path, "uid")
    return path


RAW_COLUMNS = (
    "item_id",
    "first_name",
    "middle_name",
    "last_name",
    "suffix",
    "dob",
    "tin",
    "street",
    "unit",
    "city",
    "state",
    "zip",
)
ADDRESS_PARTS = ("street", "unit", "city", "state", "zip")


def _one_line_fixups(st: Steps) -> bool:
    """Items whose whole address sits in the street field: split with usaddress into the
    table `one_line` (these few rows come to the driver). Whether there were any."""
    rows = st.rows(
        """SELECT item_id, street FROM raw_src
           WHERE nullif(trim(street), '') IS NOT NULL AND nullif(trim(city), '') IS NULL
             AND nullif(trim(zip), '') IS NULL AND regexp_matches(street, '[0-9]{5}\\s*$')"""
    )
    if not rows:
        return False
    parsed = [(item_id, std.parse_one_line(street)) for item_id, street in rows]
    fix = pa.table(
        {
            "item_id": [p[0] for p in parsed],
            **{k: [p[1][k] for p in parsed] for k in ADDRESS_PARTS},
        },
        schema=pa.schema([(c, pa.string()) for c in ("item_id", *ADDRESS_PARTS)]),
    )
    st.arrow("one_line", fix)
    return True


def request_table(con: Any, items: Path, out: Path) -> Path:
    """A request's items standardized like the master file. Returns the Parquet path. `con` is
    a DuckDB connection or the `Steps` of an engine."""
    st = con if isinstance(con, DuckSteps | SparkSteps) else DuckSteps(con)
    st.source("raw_src", items)
    cols = ", ".join(f"s.{c}" for c in RAW_COLUMNS if c not in ADDRESS_PARTS)
    if _one_line_fixups(st):
        st.table(
            "raw_items",
            f"""SELECT {cols},
                   CASE WHEN o.item_id IS NULL THEN s.street ELSE o.street END AS street,
                   CASE WHEN o.item_id IS NULL THEN s.unit ELSE coalesce(o.unit, s.unit) END
                     AS unit,
                   CASE WHEN o.item_id IS NULL THEN s.city ELSE o.city END AS city,
                   CASE WHEN o.item_id IS NULL THEN s.state ELSE o.state END AS state,
                   CASE WHEN o.item_id IS NULL THEN s.zip ELSE o.zip END AS zip
                FROM raw_src s LEFT JOIN one_line o ON o.item_id = s.item_id""",
        )
    else:
        st.table("raw_items", f"SELECT {', '.join(RAW_COLUMNS)} FROM raw_src")
    st.write(
        f"""WITH s AS (SELECT item_id AS uid, {_std_select()} FROM raw_items)
            SELECT {STD_COLUMNS}, CAST(NULL AS VARCHAR) AS hh_key FROM s""",
        out,
        "uid",
    )
    return out


def known_first_names() -> pa.Table:
    """First names in the 1990 US census lists (the `names` package data), upper case: a
    spelling in this list is somebody's name, not a typo of another one."""
    import names as names_pkg

    folder = Path(names_pkg.__file__).parent
    seen: set[str] = set()
    for f in ("dist.male.first", "dist.female.first"):
        with open(folder / f) as fh:
            seen.update(line.split()[0].upper() for line in fh if line.strip())
    return pa.table({"name": sorted(seen)})


def nickname_table() -> pa.Table:
    """Name/nickname pairs (both directions) from the curated `nicknames` package data."""
    with resources.as_file(resources.files("nicknames").joinpath("names.csv")) as f, open(f) as fh:
        rows = [(r["name1"].upper(), r["name2"].upper()) for r in csv.DictReader(fh)]
    a = [x for x, _ in rows] + [y for _, y in rows]
    b = [y for _, y in rows] + [x for x, _ in rows]
    return pa.table({"a": a, "b": b})


# ---------------------------------------------------------------------------------------------
# Scoring backends: Splink on DuckDB (default) or on Spark.


class DuckDBBackend:
    name = dialect = "duckdb"

    def __init__(
        self, threads: int | None = None, *, con: duckdb.DuckDBPyConnection | None = None
    ) -> None:
        from splink import DuckDBAPI

        # Splink scores in the caller's bulk connection when given one (one memory limit for
        # the whole link, and the scored pairs never leave DuckDB), else in its own.
        self.own = con is None
        self.con = con if con is not None else master.connect(threads)
        self.db_api = DuckDBAPI(connection=self.con)

    def register(self, path: Path, name: str) -> Any:
        cols = ", ".join(MODEL_COLUMNS)
        self.con.execute(
            f"CREATE OR REPLACE TABLE {name}_input AS SELECT {cols} FROM {parquet(path)}"
        )
        return self.db_api.register(f"{name}_input", dataset_display_name=name)

    def keep(self, sdf: Any, columns: str, con: duckdb.DuckDBPyConnection, first: bool) -> None:
        """Append a chunk's pairs to the temp table `pairs` of `con` (the same connection:
        nothing crosses into Python)."""
        assert con is self.con
        verb = "CREATE OR REPLACE TEMP TABLE pairs AS" if first else "INSERT INTO pairs"
        self.con.execute(f"{verb} SELECT {columns} FROM {sdf.physical_name}")

    def close(self) -> None:
        if self.own:
            master.close(self.con)


class SparkBackend:
    """Splink on Spark: the same model and settings; a cluster is a matter of configuration
    (``CUSTODES_SPARK_MASTER``, default ``local[2]``)."""

    name = dialect = "spark"

    def __init__(self, spark: Any | None = None) -> None:
        from splink import SparkAPI

        self.spark = spark or spark_session()
        self.db_api = SparkAPI(spark_session=self.spark)

    def register(self, path: Path, name: str) -> Any:
        # the session outlives a link: the last link's input of that name goes first
        self.spark.catalog.dropTempView(name)
        df = self.spark.read.parquet(str(path)).select(*MODEL_COLUMNS)
        return self.db_api.register(df, dataset_display_name=name)

    def fetch(self, sdf: Any, columns: str) -> pa.Table:
        return self.spark.sql(f"SELECT {columns} FROM {sdf.physical_name}").toArrow()

    def keep(self, sdf: Any, columns: str, con: duckdb.DuckDBPyConnection, first: bool) -> None:
        """Append a chunk's pairs to the temp table `pairs` of `con`: one chunk at a time
        crosses from Spark (a chunk is at most ITEMS_PER_CHUNK items' pairs)."""
        chunk = self.fetch(sdf, columns)
        con.register("pairs_chunk", chunk)
        verb = "CREATE OR REPLACE TEMP TABLE pairs AS" if first else "INSERT INTO pairs"
        con.execute(f"{verb} SELECT * FROM pairs_chunk")
        con.unregister("pairs_chunk")

    def close(self) -> None:
        """The session is shared and stopped at exit; nothing to release per link."""


def spark_session() -> Any:
    """A Spark session with Splink's similarity functions and a checkpoint directory, on
    ``CUSTODES_SPARK_MASTER`` (default ``local[2]``; ``spark://host:7077`` for a standalone
    cluster). The executors run this Python (``spark.pyspark.python``) and get Splink's jar
    (``spark.jars``); memory is modest by default (driver 2g, executors 1g)."""
    import sys

    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    builder = (
        SparkSession.builder.master(settings.text("CUSTODES_SPARK_MASTER", "local[2]"))
        .appName("custodes")
        .config("spark.jars", similarity_jar_location())
        .config("spark.sql.shuffle.partitions", settings.text("CUSTODES_SPARK_PARTITIONS", "8"))
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", settings.text("CUSTODES_SPARK_MEMORY", "2g"))
        .config("spark.executor.memory", settings.text("CUSTODES_SPARK_EXECUTOR_MEMORY", "1g"))
        .config("spark.pyspark.python", os.environ.get("PYSPARK_PYTHON", sys.executable))
        # DuckDB's semantics for the shared SQL: a bad cast or a missing map key is NULL
        .config("spark.sql.ansi.enabled", "false")
    )
    host = settings.text("CUSTODES_SPARK_DRIVER_HOST")
    if host:  # the address the executors reach this driver at
        builder = builder.config("spark.driver.host", host).config("spark.driver.bindAddress", host)
    spark = builder.getOrCreate()
    # a session made earlier in this process keeps its settings: the runtime ones follow the
    # environment of this call
    spark.conf.set("spark.sql.shuffle.partitions", settings.text("CUSTODES_SPARK_PARTITIONS", "8"))
    spark.conf.set("spark.sql.ansi.enabled", "false")
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="custodes-spark-"))
    return spark


def make_backend(
    name: str, con: duckdb.DuckDBPyConnection | None = None
) -> DuckDBBackend | SparkBackend:
    """Splink's backend; `con`, a bulk connection, is the one DuckDB scores in."""
    if name == "duckdb":
        return DuckDBBackend(con=con)
    if name == "spark":
        return SparkBackend()
    raise InputError("Unknown backend (use duckdb or spark).", code="bad_argument")


# ---------------------------------------------------------------------------------------------
# Scoring and deciding

PAIR_COLUMNS = """CASE WHEN source_dataset_l = 'request' THEN uid_l ELSE uid_r END AS item_id,
    CASE WHEN source_dataset_l = 'request' THEN uid_r ELSE uid_l END AS record_id,
    match_weight, match_probability,
    mw_first + coalesce(mw_tf_adj_first, 0) AS w_first,
    mw_last + coalesce(mw_tf_adj_last, 0) AS w_last,
    mw_middle + coalesce(mw_tf_adj_middle, 0) AS w_middle,
    mw_dob AS w_dob, mw_tin AS w_tin, mw_address AS w_address"""


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
        [sdf_m, sdf_r], for_dialect(model.splink, backend.dialect), log_level=mdl_log_level()
    )
    chunks = max(1, math.ceil(n_items / ITEMS_PER_CHUNK))
    for i in range(1, chunks + 1):
        sdf = linker.inference.predict_chunk(
            left_chunk=(1, 1),
            right_chunk=(i, chunks),
            threshold_match_probability=floor_probability,
            warning_mode="never",
        )
        backend.keep(sdf, PAIR_COLUMNS, con, first=i == 1)
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
        [sdf_m, sdf_r], for_dialect(model.splink, backend.dialect), log_level=mdl_log_level()
    )
    sdf = linker.inference.predict(
        threshold_match_probability=floor_probability, warning_mode="never"
    )
    st.table("pairs", f"SELECT {PAIR_COLUMNS} FROM {sdf.physical_name}", reused=True)
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


def decide_steps(st: Steps, t: Thresholds, envelope_periods: list[int], own_periods: bool) -> None:
    """The deciding steps, in order, each a named SQL table over those before it (DuckDB or
    Spark): ranked → evidence → cand_addr, addr_check → household → gated → gated2 →
    (the namesake bar, two counts) → gated3 → flagged → linked."""
    step_ranked(st)
    step_evidence(st, t)
    step_cand_addr(st)
    step_addr_check(st, envelope_periods, own_periods)
    step_household(st)
    step_gated(st, t)
    step_gated2(st)
    bits = namesake_bits(st, t)
    step_gated3(st, t, bits)
    step_flagged(st, bits)
    step_linked(st, t, bits)


def step_ranked(st: Steps) -> None:
    """The best two candidates of each item."""
    st.table(
        "ranked",
        """SELECT * FROM (
             SELECT *, row_number() OVER (PARTITION BY item_id
                                          ORDER BY match_weight DESC, record_id) AS rank
             FROM pairs) WHERE rank <= 2""",
        reused=True,
    )


def step_evidence(st: Steps, t: Thresholds) -> None:
    """Each item with its best candidate and runner-up, and every comparison the gate uses."""
    floor_w = math.log2(t.floor_probability / (1 - t.floor_probability))
    st.table(
        "evidence",
        f"""WITH b AS (SELECT * FROM ranked WHERE rank = 1),
             s AS (SELECT * FROM ranked WHERE rank = 2)
        SELECT r.uid AS item_id, b.record_id, b.match_probability AS probability,
               b.match_weight AS weight, s.record_id AS runner_up_record_id,
               s.match_probability AS runner_up_probability, s.match_weight AS runner_up_weight,
               b.match_weight - coalesce(s.match_weight, CAST({floor_w} AS DOUBLE)) AS margin_bits,
               b.w_first, b.w_last, b.w_middle, b.w_dob, b.w_tin, b.w_address,
               r.first AS r_first, m.first AS m_first, r.dob AS r_dob, m.dob AS m_dob,
               r.suffix AS r_suffix, m.suffix AS m_suffix, r.tin AS r_tin, m.tin AS m_tin,
               r.last AS r_last, m.last AS m_last, m.hh_key,
               coalesce(r.middle = m.middle, FALSE) AS middle_exact,
               -- middle names (or initials) that say another person
               coalesce(left(r.middle, 1) <> left(m.middle, 1), FALSE) AS middle_conflict,
               r.first = m.first AS first_exact,
               nk.a IS NOT NULL AS first_nick,
               jaro_winkler_similarity(r.first, m.first) AS first_jw,
               damerau_levenshtein(r.first, m.first) AS first_edits,
               {soundex("r.first")} = {soundex("m.first")} AS first_sounds_alike,
               -- first and last name written the other way round (each within a typo); or
               -- only one of them moved, the other field holding something else
               coalesce(jaro_winkler_similarity(r.first, m.last) >= 0.88
                        AND jaro_winkler_similarity(r.last, m.first) >= 0.88, FALSE)
                 AS names_swapped,
               coalesce(NOT (jaro_winkler_similarity(r.first, m.last) >= 0.88
                             AND jaro_winkler_similarity(r.last, m.first) >= 0.88)
                        AND (r.first = m.last OR r.last = m.first), FALSE) AS name_moved,
               CASE WHEN r.first IS NOT NULL THEN kf.name IS NOT NULL END AS first_is_a_name,
               coalesce(r.house = m.house AND (r.zip5 = m.zip5 OR r.city = m.city), FALSE)
                 AS same_house,
               r.dob = m.dob AS dob_exact,
               (left(r.dob, 4) = left(m.dob, 4)
                AND (damerau_levenshtein(substr(r.dob, 6), substr(m.dob, 6)) <= 1
                     OR (substr(r.dob, 6, 2) = substr(m.dob, 9, 2)
                         AND substr(r.dob, 9, 2) = substr(m.dob, 6, 2)))) AS dob_near,
               damerau_levenshtein(replace(r.dob, '-', ''), replace(m.dob, '-', '')) <= 1
                 AS dob_one_digit,
               r.tin IS NOT NULL AND r.tin = m.tin AS tin_exact,
               r.tin IS NOT NULL AND m.tin IS NOT NULL AND r.tin <> m.tin
                 AND damerau_levenshtein(r.tin, m.tin) <= 1 AS tin_one_edit,
               -- the listed TIN is another filer's (a household member's, a relative's)
               coalesce(r.tin <> m.tin AND te.tin IS NOT NULL, FALSE) AS tin_elsewhere,
               -- an ITIN that no filer holds, listed for a record that holds an SSN: the
               -- number the person used before the SSN was issued; it says nothing either way
               coalesce({_is_itin("r.tin")} AND NOT {_is_itin("m.tin")}
                        AND te.tin IS NULL, FALSE)
                 AS itin_for_ssn,
               -- a surname that agrees, is a part of the other (hyphenated, two-part) or close
               coalesce(r.last = m.last
                        OR (length(r.last) >= 4 AND length(m.last) >= 4
                            AND (starts_with(m.last, r.last) OR starts_with(r.last, m.last)
                                 OR ends_with(m.last, r.last) OR ends_with(r.last, m.last)))
                        OR jaro_winkler_similarity(r.last, m.last) >= 0.9
                        OR (jaro_winkler_similarity(r.first, m.last) >= 0.88
                            AND jaro_winkler_similarity(r.last, m.first) >= 0.88)
                        OR r.first = m.last, FALSE)
                   AS last_agrees
        -- (joins, not subqueries in the select list: Spark runs those only in a filter)
        FROM r LEFT JOIN b ON b.item_id = r.uid LEFT JOIN s ON s.item_id = r.uid
        LEFT JOIN m ON m.uid = b.record_id
        LEFT JOIN (SELECT DISTINCT a, b FROM nick) nk ON nk.a = r.first AND nk.b = m.first
        LEFT JOIN (SELECT DISTINCT name FROM known_first) kf ON kf.name = r.first
        LEFT JOIN (SELECT DISTINCT tin FROM m WHERE tin IS NOT NULL) te ON te.tin = r.tin""",
        reused=True,
    )


def step_household(st: Steps) -> None:
    """Household flags: another person at the candidate's last address with a similar surname;
    one with the same first name (Jr/Sr, II); a twin (same surname and date of birth)."""
    st.table(
        "household",
        """SELECT g.item_id,
          bool_or(jaro_winkler_similarity(o.last, g.m_last) >= 0.9) AS household,
          bool_or(o.first = g.m_first AND jaro_winkler_similarity(o.last, g.m_last) >= 0.9)
            AS generational,
          bool_or(o.dob = g.m_dob AND jaro_winkler_similarity(o.last, g.m_last) >= 0.9) AS twin
        FROM evidence g JOIN m o ON o.hh_key = g.hh_key AND o.uid <> g.record_id
        WHERE g.record_id IS NOT NULL AND g.hh_key <> ''
        GROUP BY g.item_id""",
        reused=True,
    )


def step_gated(st: Steps, t: Thresholds) -> None:
    """The person gate, each part."""
    jw = t.first_name_similarity
    # The person gate, one column per part, so that an officer sees which part failed. The
    # evidence that belongs to one person is the first name, the date of birth and the TIN;
    # surname and address are shared by a household (MATCHING.md §2.3). A match needs two of
    # the three to agree and none to contradict, or — when a corrupted list replaced one of
    # them — two to agree and the third outweighed by the household's evidence
    # (docs/decisions/2026-11-30-person-gate-weighs-the-evidence.md).
    st.table(
        "gated",
        f"""WITH g AS (
          SELECT e.*, coalesce(c.any_year, FALSE) AS addr_on_record,
            coalesce(h.household, FALSE) AS hh_any,
            coalesce(h.generational, FALSE) AS hh_generational,
            coalesce(h.twin, FALSE) AS hh_twin,
            tin_exact OR tin_one_edit AS tin_agrees,
            -- a first name that is close but not the same (typo, nickname, sound-alike)
            coalesce(NOT first_exact AND NOT names_swapped
                     AND (first_nick OR first_jw >= {jw}
                          OR (length(r_first) >= 5 AND first_edits <= 2)
                          OR (length(r_first) >= 3 AND first_edits <= 1)
                          OR (length(r_first) >= 3 AND first_sounds_alike)), FALSE)
              AS first_fuzzy
          FROM evidence e LEFT JOIN addr_check c USING (item_id)
          LEFT JOIN household h USING (item_id)),
        d AS (
          SELECT *,
            -- a date of birth one keystroke off (a digit changed, two transposed) counts when
            -- the TIN agrees exactly; without the TIN, when it is less than a generation away
            -- and first name, surname and house agree with no namesake living there (a Jr/Sr
            -- would be at the house) and no middle name that says otherwise (two brothers
            -- named JASON, six years apart, the younger not a filer: 5M x 1M, 2026-11-30)
            coalesce(dob_one_digit
                     AND (tin_exact
                          -- or within one typo of the record's TIN (a number nobody else
                          -- holds; a twin's consecutive SSN comes with a different first name)
                          OR (tin_one_edit AND NOT tin_elsewhere AND first_exact
                              AND last_agrees AND NOT middle_conflict)
                          OR (abs(year(try_cast(r_dob AS DATE)) - year(try_cast(m_dob AS DATE)))
                                < {t.generation_years}
                              AND first_exact AND last_agrees AND (addr_on_record OR same_house)
                              AND NOT hh_generational AND NOT middle_conflict)), FALSE)
              AS dob_typo,
            -- a close first name that is nobody's name (not a sibling's JOAN for JOHN)
            coalesce(first_fuzzy AND NOT first_is_a_name AND dob_exact AND last_agrees
                     AND NOT middle_conflict
                     AND (length(r_first) >= 5 AND first_edits <= 2 OR first_jw >= {jw}
                          OR first_edits <= 1),
                     FALSE) AS first_misspelt
          FROM g)
        SELECT *,
          -- a close first name counts with a TIN or a middle name that agrees; without one it
          -- counts only as a misspelling — a spelling that is nobody's name, with the date of
          -- birth exact and the surname agreeing — because a twin or a sibling with a similar
          -- name (JOHN, JOAN) shares everything else
          coalesce(first_exact OR names_swapped OR r_last = m_first
                   OR (first_fuzzy AND (middle_exact OR tin_agrees)) OR first_misspelt, FALSE)
            AS first_ok,
          coalesce(first_fuzzy AND NOT (middle_exact OR tin_agrees) AND NOT first_misspelt,
                   FALSE) AS first_uncorroborated,
          -- a first name moved to the surname's field is not there to compare: neither
          -- agreement nor contradiction
          coalesce(r_first IS NOT NULL AND m_first IS NOT NULL AND NOT first_exact
                   AND NOT names_swapped AND NOT name_moved AND NOT first_fuzzy, FALSE)
            AS first_conflict,
          -- a date of birth agrees exactly, or by a day/month typo in the same year, or by one
          -- keystroke as above
          coalesce(dob_exact OR dob_near OR dob_typo, FALSE) AS dob_ok,
          coalesce(r_dob IS NOT NULL AND m_dob IS NOT NULL
                   AND NOT (dob_exact OR dob_near OR dob_typo), FALSE) AS dob_conflict,
          coalesce(r_tin IS NOT NULL AND m_tin IS NOT NULL AND NOT tin_agrees
                   AND NOT itin_for_ssn, FALSE) AS tin_differs,
          coalesce(r_suffix IS NOT NULL AND m_suffix IS NOT NULL AND r_suffix <> m_suffix, FALSE)
            AS suffix_conflict
        FROM d""",
    )


def step_gated2(st: Steps) -> None:
    st.table(
        "gated2",
        """SELECT *,
          first_ok::INT + dob_ok::INT + tin_agrees::INT AS person_agree,
          first_conflict::INT + dob_conflict::INT + tin_differs::INT AS person_conflict
        FROM gated""",
        reused=True,
    )


def namesake_bits(st: Steps, t: Thresholds) -> float:
    """The bits a match resting on name and date of birth alone must carry."""
    # A match that no TIN and no address on record supports may be a namesake born the same
    # day (in the same ZIP, if the ZIP agrees). For one item the expected number of such
    # namesakes in the master file is about n_master * 2^-(name + DOB + address bits). Summed
    # over the items that rest on that evidence alone (at 5M x 1M, per-item odds of 1e-4 still
    # made 3 wrong identifications), it must stay below 2^-margin, so each such item needs
    # log2(n_master) + log2(n_unsupported) + namesake_margin_bits (a Bonferroni bound over the
    # items actually at risk; every absent person the request asks about is among them).
    n_master = st.scalar("SELECT count(*) FROM m")
    n_unsupported = st.scalar(
        f"""SELECT count(*) FROM gated2 g
            WHERE g.record_id IS NOT NULL AND g.probability >= {t.review_probability}
              AND NOT g.tin_agrees AND NOT g.addr_on_record"""
    )
    return math.log2(max(n_master, 2)) + math.log2(max(n_unsupported, 2)) + t.namesake_margin_bits


def step_gated3(st: Steps, t: Thresholds, namesake_bits: float) -> None:
    """Whether one contradicting field is outweighed; the gate's verdict and conflicts."""
    st.table(
        "gated3",
        f"""WITH x AS (
          SELECT *,
            -- One contradicting field is outweighed when the two others agree and the
            -- household does too. A first name that differs (people go by a middle name, lists
            -- replace names) needs the TIN and the date of birth exact and the surname or the
            -- house. A date of birth that differs needs the TIN exact, first name, surname and
            -- house, less than a generation between the dates (a Jr/Sr with the other's TIN on
            -- the list) and no namesake at the house.
            -- Nothing is outweighed against a middle name that says another person.
            person_agree >= 2 AND person_conflict = 1 AND NOT middle_conflict
              AND CASE WHEN dob_conflict
                       THEN tin_exact AND first_ok AND last_agrees
                            AND (addr_on_record OR same_house) AND NOT hh_generational
                            AND abs(year(try_cast(r_dob AS DATE))
                                    - year(try_cast(m_dob AS DATE))) < {t.generation_years}
                       -- a TIN that is another filer's is most often a household member's:
                       -- it is outweighed only for a record that lives with no one of its
                       -- surname; a TIN that is nobody's (an old ITIN, a mistyped number)
                       -- only where no twin lives
                       WHEN tin_differs
                       THEN (CASE WHEN tin_elsewhere THEN NOT hh_any ELSE NOT hh_twin END)
                            AND first_ok AND (dob_exact OR dob_near) AND last_agrees
                            AND (addr_on_record OR same_house
                                 -- no house to lean on: name and date of birth must carry
                                 -- the namesake bar with the conflicting TIN against them
                                 OR w_first + w_last + w_middle + w_dob
                                    + greatest(w_address, 0) + w_tin >= {namesake_bits})
                       ELSE tin_exact AND dob_exact
                            AND (last_agrees OR addr_on_record OR same_house) END AS outweighed
          FROM gated2)
        SELECT *,
          (person_agree >= 2 AND (person_conflict = 0 OR outweighed)) AS person_ok,
          -- the TIN on the list is someone else's, and the rest does not outweigh it
          (tin_differs AND NOT outweighed) AS tin_conflict,
          -- the TIN is this record's, but name and date of birth say another person
          (tin_exact AND NOT (person_agree >= 2 AND (person_conflict = 0 OR outweighed))
           AND (first_conflict OR dob_conflict)) AS tin_name_conflict
        FROM x""",
    )


def step_flagged(st: Steps, namesake_bits: float) -> None:
    """The gate's inputs joined with the household and address checks, and the flags."""
    st.table(
        "flagged",
        f"""WITH f AS (
          SELECT g.*, coalesce(h.household, FALSE) AS household,
                 g.addr_on_record AS address_on_record,
                 coalesce(c.in_periods, FALSE) AS address_on_record_in_periods,
                 coalesce(g.tin_agrees OR g.addr_on_record, FALSE) AS supported,
                 g.w_first + g.w_last + g.w_middle + g.w_dob + greatest(g.w_address, 0)
                   AS name_dob_bits,
                 coalesce(NOT g.tin_agrees AND NOT g.addr_on_record
                          AND g.w_first + g.w_last + g.w_middle + g.w_dob
                              + greatest(g.w_address, 0) < CAST({namesake_bits} AS DOUBLE),
                          FALSE)
                   AS namesake_risk,
                 coalesce(h.generational, FALSE) AS generational, coalesce(h.twin, FALSE) AS twin,
                 coalesce(g.person_ok AND NOT g.suffix_conflict, FALSE) AS gate
          FROM gated3 g LEFT JOIN household h USING (item_id)
          LEFT JOIN addr_check c USING (item_id)),
        v AS (
          SELECT f.*,
            list_filter([
              CASE WHEN person_conflict >= 2 THEN 'another_person' END,
            CASE WHEN suffix_conflict THEN 'suffix_conflict' END,
              CASE WHEN tin_conflict THEN 'tin_conflict' END,
              CASE WHEN tin_name_conflict THEN 'tin_name_conflict' END,
              CASE WHEN namesake_risk THEN 'namesake_risk' END,
              CASE WHEN household THEN 'household' END,
              CASE WHEN generational THEN 'generational' END,
              CASE WHEN twin THEN 'twin' END,
              CASE WHEN tin_one_edit THEN 'tin_typo' END,
              CASE WHEN tin_differs AND NOT tin_conflict THEN 'tin_differs' END,
              CASE WHEN itin_for_ssn THEN 'itin_for_ssn' END,
              CASE WHEN first_conflict AND gate THEN 'first_name_replaced' END,
              CASE WHEN dob_conflict AND gate THEN 'dob_replaced' END,
              CASE WHEN names_swapped THEN 'names_swapped' END,
              CASE WHEN r_dob IS NULL AND record_id IS NOT NULL THEN 'dob_missing' END
            ], lambda x: x IS NOT NULL) AS flags,
            coalesce(suffix_conflict OR tin_conflict OR tin_name_conflict OR namesake_risk,
                     FALSE) AS blocked,
            (r_first IS NOT NULL)::INT + (r_dob IS NOT NULL)::INT
              + (r_tin IS NOT NULL AND NOT itin_for_ssn)::INT AS identifiers
          FROM f)
        SELECT * FROM v""",
        reused=True,
    )


def step_linked(st: Steps, t: Thresholds, namesake_bits: float) -> None:
    """One row per item: its status, the evidence and the reasons."""
    st.table(
        "linked",
        f"""SELECT item_id,
          CASE WHEN record_id IS NULL THEN 'not_identified'
               WHEN probability >= {t.min_probability} AND margin_bits >= {t.min_margin_bits}
                    AND gate AND NOT blocked THEN 'identified'
               -- two of first name, date of birth and TIN contradict: another person (a
               -- relative at the house), nothing an officer could resolve
               WHEN person_conflict >= 2 THEN 'not_identified'
               -- fewer than two of the person's own identifiers on the list: nothing in the
               -- master file tells them from a relative at the house (a Jr, a twin), so no
               -- officer could resolve it; it takes a date of birth or a TIN on the list
               WHEN identifiers < 2 THEN 'not_identified'
               WHEN probability >= {t.review_probability} THEN 'review'
               ELSE 'not_identified' END AS status,
          record_id, probability, weight, runner_up_record_id, runner_up_probability,
          runner_up_weight, margin_bits, gate, blocked, flags,
          list_filter([
            CASE WHEN record_id IS NULL THEN 'no_candidate' END,
            CASE WHEN probability < {t.min_probability} THEN 'low_probability' END,
            CASE WHEN margin_bits < {t.min_margin_bits} THEN 'near_tie' END,
            CASE WHEN record_id IS NOT NULL AND NOT first_ok AND NOT gate THEN
                 (CASE WHEN first_uncorroborated THEN 'first_name_uncorroborated'
                       WHEN r_first IS NULL THEN 'first_name_missing'
                       ELSE 'first_name_differs' END) END,
            CASE WHEN record_id IS NOT NULL AND NOT dob_ok AND NOT gate THEN
                 (CASE WHEN r_dob IS NULL THEN 'dob_missing' ELSE 'dob_differs' END) END,
            CASE WHEN record_id IS NOT NULL AND NOT gate AND NOT tin_agrees
                      AND (r_tin IS NULL OR itin_for_ssn) THEN 'tin_missing' END,
            CASE WHEN person_conflict >= 2 THEN 'another_person' END,
            CASE WHEN record_id IS NOT NULL AND NOT gate AND identifiers < 2
                 THEN 'insufficient_identifiers' END,
            CASE WHEN suffix_conflict THEN 'suffix_conflict' END,
            CASE WHEN tin_conflict THEN 'tin_conflict' END,
            CASE WHEN tin_name_conflict THEN 'tin_name_conflict' END,
            CASE WHEN namesake_risk THEN 'namesake_risk' END
          ], lambda x: x IS NOT NULL) AS reasons,
          w_first, w_last, w_middle, w_dob, w_tin, w_address, address_on_record,
          address_on_record_in_periods, supported, name_dob_bits,
          CAST({namesake_bits} AS DOUBLE) AS namesake_bits_required, person_agree,
          person_conflict
        FROM flagged""",
        reused=True,
    )


def _is_itin(col: str) -> str:
    """An IRS Individual Taxpayer Identification Number: nine digits, a 9 first and the
    fourth and fifth in 50–65, 70–88, 90–92 or 94–99 (IRS, "ITIN guidance", Pub. 1915). An SSN
    never begins with 9."""
    mid = f"try_cast(substr({col}, 4, 2) AS INTEGER)"
    return (
        f"coalesce(length({col}) = 9 AND left({col}, 1) = '9' AND ({mid} BETWEEN 50 AND 65 "
        f"OR {mid} BETWEEN 70 AND 88 OR {mid} BETWEEN 90 AND 92 OR {mid} BETWEEN 94 AND 99), "
        "FALSE)"
    )


def soundex(col: str) -> str:
    """American Soundex as SQL over a standardized (upper-case letters) name. Hand-written
    because neither DuckDB nor Spark SQL has it as a portable function."""
    # Vowels (and Y) code 0 and separate; H and W are dropped and do not; then runs of the same
    # code collapse (the first letter's own code included), zeros go, the letter leads.
    codes = f"translate({col}, 'AEIOUYHWBFPVCGJKQSXZDTLMNR', '000000..111122222222334556')"
    collapsed = f"replace({codes}, '.', '')"
    for d in "0123456":
        collapsed = f"regexp_replace({collapsed}, '{d}{d}+', '{d}', 'g')"
    return f"left(left({col}, 1) || replace(substr({collapsed}, 2), '0', '') || '000', 4)"


def step_cand_addr(st: Steps) -> None:
    """Every distinct address each item's candidate filed from, standardized once, with the
    list of years it was on the return (most people file from one address year after year)."""
    cols = std.address_columns("x.")
    std_select = ", ".join(f"{sql} AS {name}" for name, sql in cols.items())
    st.table(
        "cand_addr",
        f"""WITH x AS (
          SELECT record_id, street, unit, city, state, zip, list(tax_year) AS years
          FROM addresses
          WHERE record_id IN (SELECT record_id FROM evidence WHERE record_id IS NOT NULL)
          GROUP BY record_id, street, unit, city, state, zip),
        s AS (SELECT record_id, years, {std_select} FROM x)
        SELECT l.item_id, s.years, {", ".join(f"s.{c}" for c in cols)}
        FROM evidence l JOIN s ON s.record_id = l.record_id""",
    )


def step_addr_check(st: Steps, envelope_periods: list[int], own_periods: bool) -> None:
    """Table `addr_check`: `any_year` and `in_periods` for every item with a candidate: the
    supplied address, standardized, against every address the candidate filed from, with the
    tolerance of `standardize.ADDRESS_MATCH_SQL`. The periods are the item's own
    `taxable_periods` (``;``-separated) or else the envelope's."""
    years = "[" + ", ".join(str(int(y)) for y in envelope_periods) + "]::BIGINT[]"
    own = (
        "list_filter(list_transform(string_split(nullif(trim(taxable_periods), ''), ';'), "
        "lambda x: try_cast(trim(x) AS BIGINT)), lambda x: x IS NOT NULL)"
        if own_periods
        else "NULL::BIGINT[]"
    )
    st.table(
        "addr_check",
        f"""WITH p AS (SELECT item_id, coalesce(nullif({own}, []::BIGINT[]), {years}) AS years
                   FROM items)
        SELECT a.uid AS item_id,
          bool_or({std.ADDRESS_MATCH_SQL}) AS any_year,
          bool_or({std.ADDRESS_MATCH_SQL} AND len(list_intersect(p.years, b.years)) > 0)
            AS in_periods
        FROM (SELECT uid, city AS std_city, state AS std_state, zip5 AS std_zip5,
                     house AS std_house, street AS std_street_name, unit AS std_unit_id,
                     po_box AS std_po_box
              FROM r) a
        JOIN cand_addr b ON b.item_id = a.uid
        LEFT JOIN p ON p.item_id = a.uid
        GROUP BY a.uid""",
        reused=True,
    )


def write_linked(con: Any, model_sha: str, out: Path) -> dict[str, int]:
    """Write the `linked` table (on DuckDB: `con`; or the `Steps` that made it) as one Parquet
    file in item order; return the counts by status (the only rows the driver collects)."""
    st = con if isinstance(con, DuckSteps | SparkSteps) else DuckSteps(con)
    st.write(f"SELECT *, {literal(model_sha)} AS model_sha256 FROM linked", out, "item_id")
    counts = dict(st.rows("SELECT status, count(*) FROM linked GROUP BY status"))
    return {k: counts.get(k, 0) for k in ("identified", "review", "not_identified")}
