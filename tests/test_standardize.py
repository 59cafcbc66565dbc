"""Standardization and the address-on-record comparison, on a corpus of tricky US addresses."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from custodes.matching.standardize import ADDRESS_MATCH_SQL, parse_one_line, standardized_select
from custodes.records import master
from custodes.workspace import Workspace

COLS = (
    "street",
    "unit",
    "city",
    "state",
    "zip",
    "first_name",
    "middle_name",
    "last_name",
    "suffix",
    "tin",
    "dob",
)


def std(rows: list[dict[str, str]]) -> list[dict[str, object]]:
    t = pa.table({c: [r.get(c, "") for r in rows] for c in COLS})
    con = duckdb.connect()
    con.register("t", t)
    rel = con.sql(f"SELECT {standardized_select()} FROM t")
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def same_address(a: dict[str, str], b: dict[str, str]) -> bool:
    t = pa.table({c: [a.get(c, ""), b.get(c, "")] for c in COLS})
    con = duckdb.connect()
    con.register("t", t)
    con.execute(
        f"CREATE TABLE s AS SELECT row_number() OVER () AS n, {standardized_select()} FROM t"
    )
    return con.execute(
        f"SELECT {ADDRESS_MATCH_SQL} FROM s a, s b WHERE a.n = 1 AND b.n = 2"
    ).fetchall()[0][0]


def addr(
    street: str, unit: str = "", city: str = "AUSTIN", state: str = "TX", zip_: str = "78701"
) -> dict[str, str]:
    return {"street": street, "unit": unit, "city": city, "state": state, "zip": zip_}


SAME = [
    (addr("123 North Main Street Apartment 4B"), addr("123 N MAIN ST", "APT 4B")),
    (addr("45 E 3rd St", "#2"), addr("45 EAST 3RD STREET", "UNIT 2")),
    (addr("P.O. Box 12"), addr("PO BOX 12")),
    (addr("Post Office Box 12"), addr("PO BOX 12", zip_="78701-0012")),
    (addr("12 Oak Street"), addr("12 OAK ST")),
    (addr("12 Walnut Street"), addr("12 WLANUT ST")),  # one transposition
    (addr("12 Oak"), addr("12 OAK AVE")),  # suffix missing on one side
    (addr("1600-B Elm Ave"), addr("1600-B ELM AVENUE")),
    (addr("7 Maple Dr", "Apt 5"), addr("7 MAPLE DR")),  # unit missing on one side
    (addr("9 Pine Rd", zip_=""), addr("9 PINE RD")),  # no ZIP: city and state agree
    (addr("88 Willow Ln."), addr("88 WILLOW LANE", zip_="78701-1234")),
]
DIFFERENT = [
    (addr("12 Oak St"), addr("14 OAK ST")),  # house number
    (addr("12 Oak St"), addr("12 OAK ST", zip_="78702")),  # ZIP
    (addr("12 Oak St", "APT 4"), addr("12 OAK ST", "APT 5")),  # unit
    (addr("12 Oak St"), addr("12 ELM ST")),  # street
    (addr("12 Ash St"), addr("12 ASP ST")),  # short names allow no typo
    (addr("12 Oak St"), addr("12 OKA ST")),
    (addr("PO Box 12"), addr("PO BOX 21")),
    (addr("PO Box 12"), addr("12 OAK ST")),
    (addr("9 Pine Rd", zip_=""), addr("9 PINE RD", city="DALLAS")),
]


@pytest.mark.parametrize(("a", "b"), SAME, ids=[p[0]["street"] for p in SAME])
def test_same_address(a: dict[str, str], b: dict[str, str]) -> None:
    assert same_address(a, b) and same_address(b, a)


@pytest.mark.parametrize(
    ("a", "b"), DIFFERENT, ids=[f"{p[0]['street']}~{p[1]['street']}" for p in DIFFERENT]
)
def test_different_address(a: dict[str, str], b: dict[str, str]) -> None:
    assert not same_address(a, b) and not same_address(b, a)


def test_names_tins_dates() -> None:
    rows = std(
        [
            {
                "first_name": "José-María",
                "last_name": "de la Cruz Jr.",
                "tin": "123-45-6789",
                "dob": "1980-02-29",
            },
            {
                "first_name": "O'BRIEN",
                "last_name": "Smith",
                "suffix": "Sr.",
                "tin": "12345678",
                "dob": "02/29/1980",
            },
            {"first_name": "  ann  ", "last_name": "Van Der Berg III", "tin": " 987 65 4321 "},
        ]
    )
    assert (rows[0]["std_first"], rows[0]["std_last"], rows[0]["std_suffix"]) == (
        "JOSE MARIA",
        "DELACRUZ",
        "JR",
    )
    assert rows[0]["name_control"] == "DELA" and rows[0]["std_tin"] == "123456789"
    assert str(rows[0]["std_dob"]) == "1980-02-29"
    assert (
        rows[1]["std_first"],
        rows[1]["std_suffix"],
        rows[1]["std_tin"],
        rows[1]["std_dob"],
    ) == ("O BRIEN", "SR", None, None)
    assert (
        rows[2]["std_first"],
        rows[2]["std_last"],
        rows[2]["std_suffix"],
        rows[2]["name_control"],
    ) == ("ANN", "VANDERBERG", "III", "VAND")


def test_parse_one_line() -> None:
    p = parse_one_line("123 Main St Apt 4 Springfield IL 62704")
    assert p == {
        "street": "123 Main St",
        "unit": "Apt 4",
        "city": "Springfield",
        "state": "IL",
        "zip": "62704",
    }
    po = parse_one_line("PO Box 77 Austin TX 78701")
    assert po["street"] == "PO Box 77" and po["zip"] == "78701"


def test_generator_variant_spellings_are_the_same_address(master_ws: Workspace) -> None:
    """Every spelling variant the synthetic master file carries across years (suffix spelled
    out, two letters swapped, '# 4' for 'APT 4', ZIP+4) matches that year's plain address."""
    mf = master.current(master_ws)
    con = duckdb.connect()
    con.execute(f"""CREATE TABLE s AS SELECT tin, tax_year, {standardized_select(names=False)}
                    FROM read_parquet('{mf.path("addresses")}')""")
    # Same person, same ZIP and house number in two years: the same address, however spelled.
    total, matched = con.execute(f"""
        SELECT count(*), count(*) FILTER ({ADDRESS_MATCH_SQL})
        FROM s a JOIN s b ON a.tin = b.tin AND a.tax_year < b.tax_year
        AND a.std_zip5 = b.std_zip5 AND a.std_house = b.std_house""").fetchall()[0]
    assert total > 1000
    assert matched / total > 0.995, (matched, total)
