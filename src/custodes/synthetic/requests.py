"""`requests generate`: a synthetic request in the interchange format, with ground truth.

Items are drawn from the workspace's master file (in-file people) and from people who are not
in it: relatives who live in a filer's household but file nothing (the mistaken-identity risk a
court warned of) and strangers. Each item carries at most one deliberate defect, shaped like the
2025 requests (a name and TIN but no address, placeholder addresses, stale addresses...).
``truth.csv`` says who each item really is (``record_id``, empty when absent) and its defect.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from custodes.errors import ConflictError, InputError
from custodes.ledger import log
from custodes.ledger.event_types import FileWritten
from custodes.ledger.events import Event
from custodes.records import master
from custodes.requests.format import ENVELOPE_FILE, ITEM_COLUMNS, PROVISIONS
from custodes.store.files import csv_bytes, out_folder, write_replace
from custodes.store.sql import parquet
from custodes.synthetic import corrupt, reference
from custodes.workspace import Call

# Address placeholders seen in bulk requests: none of them is an address.
PLACEHOLDER_ADDRESSES = (
    ("FAILED TO PROVIDE", None, None, None),
    ("NA NA", "NA", None, None),
    ("DON'T CARE", None, None, "12345"),
    ("UNKNOWN", "UNKNOWN", None, None),
    ("N/A", None, None, None),
    ("NONE", "NONE", "XX", "00000"),
)
NICKNAMES = {
    "WILLIAM": "BILL",
    "ROBERT": "BOB",
    "RICHARD": "RICK",
    "JAMES": "JIM",
    "JOHN": "JACK",
    "MICHAEL": "MIKE",
    "JOSEPH": "JOE",
    "THOMAS": "TOM",
    "CHARLES": "CHUCK",
    "CHRISTOPHER": "CHRIS",
    "DANIEL": "DAN",
    "MATTHEW": "MATT",
    "ANTHONY": "TONY",
    "ELIZABETH": "LIZ",
    "MARGARET": "PEGGY",
    "JENNIFER": "JEN",
    "PATRICIA": "PAT",
    "KATHERINE": "KATE",
    "DAVID": "DAVE",
    "EDWARD": "ED",
    "SUSAN": "SUE",
    "DEBORAH": "DEB",
    "JOSE": "JOSÉ",
    "MARIA": "MARÍA",
    "JESUS": "JESÚS",
    "RAMON": "RAMÓN",
    "ANGEL": "ÁNGEL",
}

# (defect, share). In-file defects first, then the two kinds of absent people.
DEFECTS = (
    ("none", 0.24),
    ("tin_only", 0.14),
    ("placeholder_address", 0.08),
    ("partial_address", 0.06),
    ("stale_address", 0.08),
    ("wrong_address", 0.04),
    ("name_variant", 0.08),
    ("missing_case_number", 0.02),
    ("tin_typo", 0.02),
    ("typo", 0.06),
    ("absent_relative", 0.12),
    ("absent_stranger", 0.06),
)

ENVELOPES: dict[str, dict[str, Any]] = {
    "irc-6103-i-2": {
        "agency": "U.S. Immigration and Customs Enforcement",
        "signer": {"name": "Synthetic Director", "title": "Director", "role": "head_of_agency"},
        "statutory_authority": "8 U.S.C. 1253(c)",
        "reason": "Each listed person is the subject of an open criminal investigation under the "
        "cited statute for failure to depart after a final order of removal; a current "
        "address is needed to locate the person.",
        "taxable_periods": [2023, 2024],
        "fields_requested": ["last_known_address"],
        "agreement": "irs-ice-2025",
    },
    "irc-6103-i-1": {
        "agency": "U.S. Department of Justice",
        "signer": {
            "name": "Synthetic Attorney",
            "title": "United States Attorney",
            "role": "us_attorney",
        },
        "statutory_authority": "18 U.S.C. 1343",
        "reason": "Wire-fraud investigation; the returns bear on the scheme's proceeds.",
        "taxable_periods": [2022, 2023],
        "fields_requested": ["return_information"],
        "court_order": {
            "court": "U.S. District Court (synthetic)",
            "judge": "Synthetic Judge",
            "docket": "1:26-mc-00001",
            "date": "2026-01-15",
            "expires": "2026-12-31",
            "findings": [
                "reasonable cause to believe a specific crime was committed",
                "the information is probative of a matter in issue",
                "the information cannot reasonably be obtained elsewhere",
            ],
        },
    },
    "irc-6103-l-6": {
        "agency": "State Child Support Enforcement Agency",
        "signer": {
            "name": "Synthetic Administrator",
            "title": "IV-D Director",
            "role": "head_of_agency",
        },
        "statutory_authority": "42 U.S.C. 654",
        "reason": "Establishing and collecting support.",
        "taxable_periods": [2024],
        "fields_requested": ["last_known_address"],
    },
    "irc-6103-l-7": {
        "agency": "State Medicaid Agency",
        "signer": {
            "name": "Synthetic Commissioner",
            "title": "Commissioner",
            "role": "head_of_agency",
        },
        "statutory_authority": "42 U.S.C. 1396a",
        "reason": "Eligibility determination.",
        "taxable_periods": [2024],
        "fields_requested": ["unearned_income"],
    },
    "irc-6103-m-2": {
        "agency": "U.S. Department of Education",
        "signer": {
            "name": "Synthetic Official",
            "title": "Chief Financial Officer",
            "role": "head_of_agency",
        },
        "statutory_authority": "31 U.S.C. 3711",
        "reason": "Locating debtors to collect claims.",
        "taxable_periods": [2024],
        "fields_requested": ["mailing_address"],
    },
    "irc-6103-d": {
        "agency": "State Department of Revenue",
        "signer": {
            "name": "Synthetic Secretary",
            "title": "Secretary of Revenue",
            "role": "head_of_agency",
        },
        "statutory_authority": "State tax code",
        "reason": "State tax administration.",
        "taxable_periods": [2023, 2024],
        "fields_requested": ["return_information"],
    },
}


@dataclass
class GeneratedRequest:
    folder: Path
    items: int
    by_defect: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {"folder": str(self.folder), "items": self.items, "by_defect": self.by_defect}


def _officials(rng: np.random.Generator) -> list[dict[str, str]]:
    return [
        {"id": f"OFF-{i:03d}", "name": f"Synthetic Agent {i}", "title": "Special Agent"}
        for i in range(1, 7)
    ]


def generate_request(
    call: Call,
    provision: str,
    items: int,
    seed: int,
    out: Path,
    *,
    overwrite: bool = False,
    corruption: str = "none",
) -> GeneratedRequest:
    """Write a synthetic request drawn from a *synthetic* master file (never from real people),
    its items corrupted by the named mix (`corrupt.MIXES`), recording the files written in the
    ledger."""
    _check_arguments(provision, items, corruption)
    mf = master.current(call.ws)
    mf.path("people")  # clear error when there is no master file
    master.verified(call)
    if not mf.synthetic:
        raise ConflictError(
            "The master file holds imported (real) people; a synthetic request is drawn only "
            "from a synthetic master file ('custodes records generate' in a new workspace).",
            code="real_master_file",
        )
    out_folder(out)
    if any(out.iterdir()) and not overwrite:
        raise ConflictError(
            f"{out} already exists and is not empty (use --overwrite).", code="output_exists"
        )
    rng = np.random.default_rng(seed)
    files, counts = _draw_items(call, mf, rng, items, corruption, seed)
    envelope = {
        "provision": provision,
        **ENVELOPES[provision],
        "officials": _officials(rng),
        "items": "items.csv",
    }
    files[ENVELOPE_FILE] = (json.dumps(envelope, indent=2, ensure_ascii=False) + "\n").encode()
    for name, data in files.items():
        write_replace(out / name, data)
    with call.transaction() as conn:
        log.append(
            conn,
            [
                Event(
                    FileWritten(
                        what=f"synthetic_request/{name}",
                        rows=items,
                        sha256=hashlib.sha256(data).hexdigest(),
                    ),
                    actor=call.actor,
                )
                for name, data in files.items()
            ],
        )
    return GeneratedRequest(out, items, counts)


def _check_arguments(provision: str, items: int, corruption: str) -> None:
    if corruption not in corrupt.MIXES:
        raise InputError(
            f"Unknown corruption mix (known: {', '.join(corrupt.MIXES)}).",
            code="bad_argument",
        )
    if provision not in PROVISIONS:
        raise InputError(
            f"Unknown provision (known: {', '.join(PROVISIONS)}).",
            code="unknown_provision",
        )
    if items < 1:
        raise InputError("--items must be at least 1.", code="bad_argument")


def _draw_items(
    call: Call,
    mf: master.MasterFile,
    rng: np.random.Generator,
    items: int,
    corruption: str,
    seed: int,
) -> tuple[dict[str, bytes], dict[str, int]]:
    """items.csv and truth.csv drawn from the master file by plan, and the count by defect."""
    con = master.connect(threads=2, ws=call.ws)
    try:
        con.execute(f"CREATE VIEW people AS SELECT * FROM {parquet(mf.path('people'))}")
        con.execute(f"CREATE VIEW addrs AS SELECT * FROM {parquet(mf.path('addresses'))}")
        n_people = con.execute("SELECT count(*) FROM people").fetchall()[0][0]
        has_pop = mf.has("population")
        n_rel = 0
        if has_pop:
            con.execute(f"""CREATE TABLE relatives AS SELECT p.* FROM
                {parquet(mf.path("population"))} p WHERE NOT p.filer AND p.household_id
                IN (SELECT household_id FROM {parquet(mf.path("population"))} WHERE filer)
                ORDER BY person_id""")
            n_rel = con.execute("SELECT count(*) FROM relatives").fetchall()[0][0]
        con.register("plan", _plan(rng, items, n_people, n_rel))
        _register_lookups(con)
        _build_items(con, has_pop)
        _corrupt_items(con, corruption, seed)
        files = {
            "items.csv": csv_bytes(
                con.sql(
                    f"SELECT {', '.join(ITEM_COLUMNS)}, removal_order_date FROM items "
                    "ORDER BY item_id"
                ).to_arrow_table()
            ),
            "truth.csv": csv_bytes(
                con.sql(
                    "SELECT item_id, record_id, defect, corruptions FROM items ORDER BY item_id"
                ).to_arrow_table()
            ),
        }
        counts = dict(
            con.execute("SELECT defect, count(*) FROM items GROUP BY 1 ORDER BY 1").fetchall()
        )
    finally:
        master.close(con)
    return files, counts


def _plan(rng: np.random.Generator, items: int, n_people: int, n_rel: int) -> pa.Table:
    """Every random choice for the items, one row per item (drawn in a fixed order: the same
    seed gives the same request)."""
    names = [d for d, _ in DEFECTS]
    shares = np.array([s for _, s in DEFECTS])
    defect = rng.choice(len(names), items, p=shares / shares.sum())
    rel_code, str_code = names.index("absent_relative"), names.index("absent_stranger")
    if n_rel == 0:
        defect[defect == rel_code] = str_code
    is_in = ~np.isin(defect, [rel_code, str_code])
    # Never ask for more distinct people than exist; extra items become strangers.
    for code, pool in ((None, n_people), (rel_code, n_rel)):
        mask = is_in if code is None else defect == code
        excess = np.flatnonzero(mask)[pool:]
        defect[excess] = str_code
        is_in[excess] = False
    src_idx = np.zeros(items, dtype=np.int64)
    for mask, pool in ((is_in, n_people), (defect == rel_code, n_rel)):
        k = int(mask.sum())
        if k:
            src_idx[mask] = rng.choice(pool, k, replace=False)
    skew = rng.random(items) < 0.6  # most items name the same official
    return pa.table(
        {
            "pos": np.arange(items),
            "defect": np.array(names)[defect],
            "src": src_idx,
            "variant": rng.integers(0, 5, items),
            "ph": rng.integers(0, len(PLACEHOLDER_ADDRESSES), items),
            "partial": rng.integers(0, 2, items),
            "with_tin": rng.random(items) < 0.6,
            "dashed": rng.random(items) < 0.2,
            "typo_digit": rng.integers(0, 9, items),
            "other": rng.integers(0, max(n_people, 1), items),
            "official": np.where(skew, 1, rng.integers(1, 7, items)),
            "case": rng.integers(10_000_000, 99_999_999, items),
            "order_days": rng.integers(30, 5 * 365, items),
            "no_order": rng.random(items) < 0.1,
            "s_first": rng.integers(0, 1_000_000_000, items),
            "s_male": rng.random(items) < 0.5,
            "s_last": rng.choice(len(reference.surnames()[0]), items, p=reference.surnames()[1]),
            "s_dob": rng.integers(-20_000, 12_000, items),
            "s_zip": rng.integers(0, len(reference.zip_table()[0]), items),
            "s_house": rng.integers(1, 9999, items),
            "s_street": rng.integers(0, len(reference.street_names()), items),
        }
    )


def _corrupt_items(con: duckdb.DuckDBPyConnection, mix: str, seed: int) -> None:
    """Replace the items by their corrupted copies and record what was done to each."""
    if not corrupt.MIXES[mix].share:
        con.execute("ALTER TABLE items ADD COLUMN corruptions VARCHAR DEFAULT ''")
        return
    rows = con.sql("SELECT * FROM items ORDER BY item_id").to_arrow_table().to_pylist()
    done = corrupt.corrupt(rows, mix, seed, reference.surnames()[0], _nickname_lists())
    table = pa.Table.from_pylist([{**r, "corruptions": d} for r, d in zip(rows, done, strict=True)])
    con.execute("DROP TABLE items")
    con.register("corrupted", table)
    con.execute("CREATE TABLE items AS SELECT * FROM corrupted")
    con.unregister("corrupted")


def _nickname_lists() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, nick in NICKNAMES.items():
        if nick.isascii():
            out.setdefault(name, []).append(nick)
    return out


def _register_lookups(con: duckdb.DuckDBPyConnection) -> None:
    zips, cities, states = reference.zip_table()
    con.register(
        "zips", pa.table({"i": np.arange(len(zips)), "zip": zips, "city": cities, "state": states})
    )
    sn = reference.surnames()[0]
    con.register("surnames", pa.table({"i": np.arange(len(sn)), "v": sn}))
    for sex in ("M", "F"):
        fn = reference.first_names(sex)[0]
        con.register(f"first_{sex}", pa.table({"i": np.arange(len(fn)), "v": fn}))
    st = reference.street_names()
    con.register("streets", pa.table({"i": np.arange(len(st)), "v": st}))
    con.register("nicknames", pa.table({"name": list(NICKNAMES), "nick": list(NICKNAMES.values())}))
    ph = PLACEHOLDER_ADDRESSES
    con.register(
        "placeholders",
        pa.table(
            {
                "i": np.arange(len(ph)),
                "street": [p[0] for p in ph],
                "city": [p[1] for p in ph],
                "state": [p[2] for p in ph],
                "zip": [p[3] for p in ph],
            }
        ),
    )


# The items, in named SQL steps (each a table the next reads); every random choice comes from
# the `plan` table.
NUMBERED_SQL = """CREATE TABLE numbered AS SELECT row_number() OVER (ORDER BY record_id) - 1
                   AS idx, * FROM people"""
# The latest address of each record, and the latest that differs from it, by a join on the
# latest year (a record files once a year: the import refuses a TIN and year twice), not
# `arg_max` over a struct, which DuckDB cannot spill: at 25M people (125M address rows) it ran
# out at the memory limit, as the standardization's had (records/standardize).
LAST_ADDR_SQL = """CREATE TABLE last_addr AS
          WITH latest AS (SELECT record_id, max(tax_year) AS y FROM addrs GROUP BY record_id)
          SELECT a.record_id, struct_pack(street := a.street, unit := a.unit, city := a.city,
                                          state := a.state, zip := a.zip) AS cur
          FROM addrs a JOIN latest l ON l.record_id = a.record_id AND l.y = a.tax_year"""
PREV_ADDR_SQL = """CREATE TABLE prev_addr AS
          WITH moved AS (SELECT a.* FROM addrs a JOIN last_addr l USING (record_id)
                         WHERE a.zip <> l.cur.zip OR a.street <> l.cur.street),
               latest AS (SELECT record_id, max(tax_year) AS y FROM moved GROUP BY record_id)
          SELECT m.record_id, struct_pack(street := m.street, unit := m.unit, city := m.city,
                                          state := m.state, zip := m.zip) AS prev
          FROM moved m JOIN latest l ON l.record_id = m.record_id AND l.y = m.tax_year"""
# The relatives (in a filer's household, filing nothing), when the master file has them.
WHO_RELATIVES_SQL = """
           UNION ALL SELECT pl.pos, NULL, r.first_name, r.middle_name, r.last_name, r.suffix,
              r.dob, r.tin, struct_pack(street := r.street, unit := r.unit, city := r.city,
              state := r.state, zip := r.zip), NULL
           FROM plan pl JOIN (SELECT row_number() OVER (ORDER BY person_id) - 1 AS idx, *
                              FROM relatives) r ON r.idx = pl.src
           WHERE pl.defect = 'absent_relative'"""
WHO_SQL = """CREATE TABLE who AS
        SELECT pl.pos, n.record_id, n.first_name, n.middle_name, n.last_name, n.suffix, n.dob,
               n.tin, la.cur, pa.prev
        FROM plan pl JOIN numbered n ON n.idx = pl.src
        JOIN last_addr la ON la.record_id = n.record_id
        LEFT JOIN prev_addr pa ON pa.record_id = n.record_id
        WHERE pl.defect NOT IN ('absent_relative', 'absent_stranger')
        {relatives}
        UNION ALL SELECT pl.pos, NULL,
               CASE WHEN pl.s_male THEN fm.v ELSE ff.v END, NULL, s.v, NULL,
               DATE '1970-01-01' + pl.s_dob::INTEGER, NULL,
               struct_pack(street := pl.s_house::VARCHAR || ' ' || st.v || ' ST',
                           unit := NULL::VARCHAR, city := z.city, state := z.state, zip := z.zip),
               NULL
        FROM plan pl JOIN surnames s ON s.i = pl.s_last
        JOIN first_M fm ON fm.i = pl.s_first % (SELECT count(*) FROM first_M)
        JOIN first_F ff ON ff.i = pl.s_first % (SELECT count(*) FROM first_F)
        JOIN zips z ON z.i = pl.s_zip JOIN streets st ON st.i = pl.s_street
        WHERE pl.defect = 'absent_stranger'"""
OTHER_ADDR_SQL = """CREATE TABLE other_addr AS SELECT pl.pos, la.cur AS other
        FROM plan pl JOIN numbered n ON n.idx = pl.other
        JOIN last_addr la ON la.record_id = n.record_id WHERE pl.defect = 'wrong_address'"""
ITEMS_SQL = """CREATE TABLE items AS
        WITH base AS (
          SELECT pl.*, w.record_id, w.first_name, w.middle_name, w.last_name, w.suffix, w.dob,
                 w.tin, CASE WHEN pl.defect = 'stale_address' AND w.prev IS NOT NULL THEN w.prev
                             WHEN pl.defect = 'wrong_address' THEN o.other ELSE w.cur END AS adr,
                 CASE WHEN pl.defect = 'stale_address' AND w.prev IS NULL THEN 'none'
                      ELSE pl.defect END AS d
          FROM plan pl JOIN who w USING (pos) LEFT JOIN other_addr o USING (pos))
        SELECT printf('item-%07d', b.pos + 1) AS item_id, b.record_id, b.d AS defect,
          CASE WHEN b.d = 'name_variant' AND b.variant = 0 THEN coalesce(nk.nick, b.first_name)
               WHEN b.d = 'name_variant' AND b.variant = 2 THEN lower(b.first_name)
               WHEN b.d = 'typo' AND b.variant % 4 = 0 AND length(b.first_name) > 3
                 THEN left(b.first_name, 2) || substr(b.first_name, 4, 1)
                      || substr(b.first_name, 3, 1) || substr(b.first_name, 5)
               ELSE b.first_name END AS first_name,
          CASE WHEN b.d = 'name_variant' AND b.variant = 3 THEN NULL ELSE b.middle_name END
            AS middle_name,
          CASE WHEN b.d = 'name_variant' AND b.variant = 1 AND length(b.last_name) > 3
                 THEN left(b.last_name, 1) || substr(b.last_name, 3, 1) || substr(b.last_name, 2, 1)
                      || substr(b.last_name, 4)
               WHEN b.d = 'name_variant' AND b.variant = 2 THEN lower(b.last_name)
               WHEN b.d = 'name_variant' AND b.variant = 4 THEN b.last_name || '-' || s2.v
               ELSE b.last_name END AS last_name,
          CASE WHEN b.d = 'name_variant' AND b.variant = 3 THEN NULL ELSE b.suffix END AS suffix,
          CASE WHEN b.d = 'typo' AND b.variant % 4 = 1 AND day(b.dob) <= 12
                    AND day(b.dob) <> month(b.dob)
                 THEN strftime(make_date(year(b.dob), day(b.dob), month(b.dob)), '%Y-%m-%d')
               WHEN b.d = 'typo' AND b.variant % 4 IN (1, 2)
                 THEN strftime(b.dob, '%Y-%m-') || CASE WHEN day(b.dob) BETWEEN 10 AND 19
                      THEN lpad((day(b.dob) + 10)::VARCHAR, 2, '0')
                      ELSE lpad((day(b.dob) % 10 + 10)::VARCHAR, 2, '0') END
               WHEN b.d = 'typo' AND b.variant % 4 = 3 THEN NULL
               ELSE strftime(b.dob, '%Y-%m-%d') END AS dob,
          CASE WHEN b.tin IS NULL OR NOT (b.with_tin OR b.d IN ('tin_only', 'tin_typo')) THEN NULL
               ELSE (CASE WHEN b.d = 'tin_typo'
                          THEN left(b.tin, 8)
                               || ((right(b.tin, 1)::INTEGER + 1 + b.typo_digit) % 10)::VARCHAR
                          ELSE b.tin END) END AS tin9,
          CASE WHEN tin9 IS NOT NULL AND b.dashed
               THEN left(tin9, 3) || '-' || substr(tin9, 4, 2) || '-' || right(tin9, 4)
               ELSE tin9 END AS tin,
          CASE WHEN b.d = 'tin_only' THEN NULL WHEN b.d = 'placeholder_address' THEN ph.street
               WHEN b.d = 'partial_address' THEN NULL ELSE b.adr.street END AS street,
          CASE WHEN b.d IN ('tin_only', 'placeholder_address', 'partial_address') THEN NULL
               ELSE b.adr.unit END AS unit,
          CASE WHEN b.d = 'tin_only' THEN NULL WHEN b.d = 'placeholder_address' THEN ph.city
               WHEN b.d = 'partial_address' AND b.partial = 0 THEN NULL ELSE b.adr.city END AS city,
          CASE WHEN b.d = 'tin_only' THEN NULL WHEN b.d = 'placeholder_address' THEN ph.state
               WHEN b.d = 'partial_address' AND b.partial = 0 THEN NULL ELSE b.adr.state END
            AS state,
          CASE WHEN b.d = 'tin_only' THEN NULL WHEN b.d = 'placeholder_address' THEN ph.zip
               WHEN b.d = 'partial_address' AND b.partial = 1 THEN NULL ELSE b.adr.zip END AS zip,
          CASE WHEN b.d = 'missing_case_number' THEN NULL ELSE 'CASE-' || b.case::VARCHAR END
            AS case_number,
          printf('OFF-%03d', b.official) AS official_id,
          CASE WHEN b.no_order THEN NULL
               ELSE strftime(DATE '2026-06-30' - b.order_days::INTEGER, '%Y-%m-%d') END
            AS removal_order_date
        FROM base b LEFT JOIN nicknames nk ON nk.name = b.first_name
        LEFT JOIN placeholders ph ON ph.i = b.ph
        LEFT JOIN surnames s2 ON s2.i = b.other % 1000"""


def _build_items(con: duckdb.DuckDBPyConnection, has_pop: bool) -> None:
    """One SQL statement per step."""
    for sql in (NUMBERED_SQL, LAST_ADDR_SQL, PREV_ADDR_SQL):
        con.execute(sql)
    con.execute(WHO_SQL.replace("{relatives}", WHO_RELATIVES_SQL if has_pop else ""))
    con.execute(OTHER_ADDR_SQL)
    con.execute(ITEMS_SQL)
