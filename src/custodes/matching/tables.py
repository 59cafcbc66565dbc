"""The two tables a link reads: the master file and a request's items, standardized alike
(one row per person with the last known address; one row per item), and the reference tables
of first names and nicknames the deciding steps use."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from custodes.matching import standardize as std
from custodes.records import master
from custodes.records.schema import ADDRESS_PARTS, ITEM_PERSON_COLUMNS
from custodes.store.steps import DuckSteps, SparkSteps, Steps


def _std_select() -> str:
    cols = std.name_columns() | std.address_columns()
    return ", ".join(f"{sql} AS {name}" for name, sql in cols.items())


# The columns both standardized tables carry: the model's, then those the gate and flags use.
STD_COLUMNS = """uid, std_first AS first, std_last AS last, strftime(std_dob, '%Y-%m-%d') AS dob,
    std_tin AS tin, std_house AS house, std_street_name AS street, std_zip5 AS zip5,
    std_city AS city, std_state AS state, std_middle AS middle, std_suffix AS suffix,
    std_unit_id AS unit, std_po_box AS po_box"""


MASTER_STD_SQL = f"""
  WITH latest AS (SELECT record_id, max(tax_year) AS tax_year FROM addresses GROUP BY record_id),
  last AS (
    SELECT a.record_id, struct_pack(a.street, a.unit, a.city, a.state, a.zip) AS a
    FROM addresses a JOIN latest USING (record_id, tax_year)),
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


RAW_COLUMNS = ITEM_PERSON_COLUMNS


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
