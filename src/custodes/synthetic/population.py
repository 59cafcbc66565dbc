"""A synthetic master file with ground truth.

The population is built household by household, the way mistaken identity happens in real
data: common surnames are very common (Census frequencies), households share a surname and an
address, fathers and sons share a first name (Sr/Jr, II), twins share a surname and a date of
birth, some households file with ITINs (and their US-born children have SSNs), households move
between tax years, and a few percent of the address-year rows carry variant spellings.
People who live in a household but file no return are kept in the ground truth only: they are
the "absent relatives" a request may ask about.

Random draws are numpy arrays (one generator seeded by the caller, so a seed fixes the output);
strings are assembled in DuckDB from lookup tables. No row goes through a Python loop.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from custodes.errors import ConflictError
from custodes.records import master
from custodes.records.importer import ImportResult, import_master
from custodes.store.sql import path as sqlpath
from custodes.synthetic import reference, shards
from custodes.workspace import Call

FIRST_YEAR, LAST_YEAR = 2020, 2024
HOUSEHOLD_SIZES = np.array([0.28, 0.34, 0.15, 0.13, 0.06, 0.03, 0.01])


@dataclass(frozen=True)
class Rates:
    """The knobs of the synthetic world, with the figures they stand for."""

    spouse: float = 0.78  # households of 2+ with a married/partnered couple
    spouse_own_surname: float = 0.18  # spouse keeps a different surname
    itin_household: float = 0.045  # households whose adults file with ITINs
    itin_child_ssn: float = 0.65  # US-born children in ITIN households
    junior: float = 0.25  # father/son pairs with the same first name
    twins: float = 0.08  # households (with two children) whose first two children are twins
    mover: float = 0.30  # households that move once during the tax years
    variant: float = 0.03  # address-year rows with a variant spelling
    skip_year: float = 0.04  # filer-years without a return
    adult_files: float = 0.93
    teen_files: float = 0.10  # 16- and 17-year-olds


def _unique_ints(
    rng: np.random.Generator, n: int, draw: Callable[[np.random.Generator, int], np.ndarray]
) -> np.ndarray:
    """n distinct values from `draw(rng, k)`, in random order, deterministic for the rng."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < n:
        cand = np.concatenate([out, draw(rng, int((n - len(out)) * 1.05) + 16)])
        _, first = np.unique(cand, return_index=True)
        out = cand[np.sort(first)]
    result: np.ndarray = out[:n]
    return result


def _ssns(rng: np.random.Generator, k: int) -> np.ndarray:
    area = rng.integers(1, 900, k)
    area = np.where(area == 666, 667, area)
    tins: np.ndarray = (
        area * 1_000_000 + rng.integers(1, 100, k) * 10_000 + rng.integers(1, 10_000, k)
    )
    return tins


ITIN_GROUPS = np.array([*range(50, 66), *range(70, 89), *range(90, 93), *range(94, 100)])


def _itins(rng: np.random.Generator, k: int) -> np.ndarray:
    itins: np.ndarray = (
        rng.integers(900, 1000, k) * 1_000_000
        + rng.choice(ITIN_GROUPS, k) * 10_000
        + rng.integers(1, 10_000, k)
    )
    return itins


def _people(rng: np.random.Generator, n_households: int, r: Rates) -> dict[str, np.ndarray]:
    """Household structure, ages, sexes, name indexes and filing, as arrays of persons.
    The steps draw from `rng` in a fixed order: the same seed gives the same people."""
    sizes = rng.choice(np.arange(1, 8), n_households, p=HOUSEHOLD_SIZES)
    hh = np.repeat(np.arange(n_households), sizes)
    start = np.repeat(np.cumsum(sizes) - sizes, sizes)
    pos = np.arange(len(hh)) - start
    has_spouse = (sizes >= 2) & (rng.random(n_households) < r.spouse)
    role = np.where(pos == 0, 0, np.where((pos == 1) & has_spouse[hh], 1, 2))  # head/spouse/child
    male, age, dob = _sexes_and_ages(rng, n_households, hh, role)
    surname = _surnames(rng, n_households, hh, role, r)
    names = _first_and_middle_names(rng, len(hh))
    twin_hh = has_spouse & (sizes >= 4) & (rng.random(n_households) < r.twins)
    twin_b, twin_of = _twins(twin_hh[hh] & (pos == 3), age, dob, names)
    suffix, junior_of = _juniors(rng, r, role, pos, male, start, twin_b, twin_of, names)
    itin, files = _tins_and_filing(rng, r, n_households, hh, role, age)
    return dict(
        hh=hh,
        role=role,
        male=male,
        age=age,
        dob=dob,
        surname=surname,
        first=np.where(male, names["first_m"], names["first_f"]),
        middle=np.where(male, names["mid_m"], names["mid_f"]),
        middle_kind=names["middle_kind"],
        suffix=suffix,
        twin_of=twin_of,
        junior_of=junior_of,
        itin=itin,
        filer=files,
    )


def _sexes_and_ages(
    rng: np.random.Generator, n_households: int, hh: np.ndarray, role: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sex, age and date of birth (an ordinal) of each person, from the household's head."""
    n = len(hh)
    head_male = rng.random(n_households) < 0.5
    male = np.where(
        role == 0,
        head_male[hh],
        np.where(role == 1, ~head_male[hh] ^ (rng.random(n) < 0.04), rng.random(n) < 0.51),
    )
    head_age = np.clip(20 + rng.gamma(4.0, 7.0, n_households), 20, 97)
    age = np.where(
        role == 0,
        head_age[hh],
        np.where(
            role == 1,
            np.clip(head_age[hh] + rng.normal(0, 4, n), 18, 99),
            rng.uniform(0, np.maximum(head_age[hh] - 18, 1)),
        ),
    )
    ref = dt.date(LAST_YEAR, 12, 31).toordinal()
    dob = ref - (age * 365.25).astype(np.int64) - rng.integers(0, 365, n)
    return male, age, dob


def _surnames(
    rng: np.random.Generator, n_households: int, hh: np.ndarray, role: np.ndarray, r: Rates
) -> np.ndarray:
    """The household's surname, or a spouse's own."""
    sn, sp = reference.surnames()
    hh_surname = rng.choice(len(sn), n_households, p=sp)
    surname = hh_surname[hh]
    own = (role == 1) & (rng.random(len(hh)) < r.spouse_own_surname)
    return np.where(own, rng.choice(len(sn), len(hh), p=sp), surname)


def _first_and_middle_names(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Indexes of male and female first and middle names, and the middle name's kind."""
    mn, mp = reference.first_names("M")
    fn, fp = reference.first_names("F")
    return {
        "first_m": rng.choice(len(mn), n, p=mp),
        "first_f": rng.choice(len(fn), n, p=fp),
        "mid_m": rng.choice(len(mn), n, p=mp),
        "mid_f": rng.choice(len(fn), n, p=fp),
        "middle_kind": rng.choice(3, n, p=[0.55, 0.20, 0.25]),  # full / initial / none
    }


def _twins(
    twin_b: np.ndarray, age: np.ndarray, dob: np.ndarray, names: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Twins: the two children right after the couple share a date of birth (`twin_b` marks
    the second), and get different first names. Changes `age`, `dob` and `names` in place;
    returns `twin_b` and each person's twin (-1 for none)."""
    twin_a_idx = np.flatnonzero(twin_b) - 1
    dob[twin_b] = dob[twin_a_idx]
    age[twin_b] = age[twin_a_idx]
    twin_b_idx = np.flatnonzero(twin_b)
    for key, sex in (("first_m", "M"), ("first_f", "F")):
        first, pool = names[key], len(reference.first_names(sex)[0])
        clash = twin_b_idx[first[twin_b_idx] == first[twin_a_idx]]
        first[clash] = (first[clash] + 1) % pool
    twin_of = np.full(len(twin_b), -1)
    twin_of[twin_b_idx] = twin_a_idx
    twin_of[twin_a_idx] = twin_b_idx
    return twin_b, twin_of


def _juniors(
    rng: np.random.Generator,
    r: Rates,
    role: np.ndarray,
    pos: np.ndarray,
    male: np.ndarray,
    head_idx: np.ndarray,
    twin_b: np.ndarray,
    twin_of: np.ndarray,
    names: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Juniors: a son (first child) named after his father; the father sometimes files as SR.
    Changes `names` in place; returns each person's suffix (0 none, 1 JR, 2 SR, 3 II) and
    father (-1 for none)."""
    n = len(role)
    jr = (
        (role == 2)
        & (pos == 2)
        & male
        & male[head_idx]
        & (role[head_idx] == 0)
        & (rng.random(n) < r.junior)
        & ~(twin_b | (twin_of >= 0))
    )
    for key in ("first_m", "mid_m", "middle_kind"):
        names[key][jr] = names[key][head_idx[jr]]
    suffix = np.zeros(n, dtype=np.int8)
    second = rng.random(n) < 0.15
    suffix[jr] = np.where(second[jr], 3, 1)
    father = head_idx[jr]
    suffix[father] = np.where(~second[jr] & (rng.random(len(father)) < 0.5), 2, 0)
    junior_of = np.full(n, -1)
    junior_of[jr] = father
    return suffix, junior_of


def _tins_and_filing(
    rng: np.random.Generator,
    r: Rates,
    n_households: int,
    hh: np.ndarray,
    role: np.ndarray,
    age: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Who holds an ITIN (by household; children sometimes an SSN) and who files."""
    n = len(hh)
    itin_hh = rng.random(n_households) < r.itin_household
    adult = age >= 18
    itin = itin_hh[hh] & (adult | (rng.random(n) >= r.itin_child_ssn))
    files = np.where(
        role == 0,
        age >= 18,
        np.where(
            adult, rng.random(n) < r.adult_files, (age >= 16) & (rng.random(n) < r.teen_files)
        ),
    )
    return itin, files


def _addresses(rng: np.random.Generator, n_households: int, r: Rates) -> dict[str, np.ndarray]:
    """Two addresses per household (the second used only by movers) and the move year."""
    zips, _, _ = reference.zip_table()
    streets = reference.street_names()
    out: dict[str, np.ndarray] = {}
    for k in ("a", "b"):
        out[f"{k}_zip"] = rng.integers(0, len(zips), n_households)
        out[f"{k}_house"] = np.minimum(rng.lognormal(6.0, 1.3, n_households).astype(int) + 1, 99999)
        out[f"{k}_street"] = rng.integers(0, len(streets), n_households)
        out[f"{k}_suffix"] = rng.choice(
            len(reference.SUFFIXES), n_households, p=reference.SUFFIX_WEIGHTS
        )
        out[f"{k}_dir"] = np.where(
            rng.random(n_households) < 0.15, rng.integers(0, 4, n_households), -1
        )
        out[f"{k}_unit"] = np.where(
            rng.random(n_households) < 0.28, rng.integers(1, 400, n_households), -1
        )
    moves = rng.random(n_households) < r.mover
    out["move_year"] = np.where(
        moves, rng.integers(FIRST_YEAR + 1, LAST_YEAR + 1, n_households), LAST_YEAR + 1
    )
    return out


def _lookup(con: duckdb.DuckDBPyConnection, name: str, values: list[str]) -> None:
    con.register(name, pa.table({"i": np.arange(len(values)), "v": values}))


# The arrays of one generation take ≈ 0.8 KB a filer (8.3 GB at 5M, beside DuckDB's share): a
# larger master file is drawn in shards of at most this many filers, one after the other, and
# concatenated, so 25M people generate in the memory of 4M.
SHARD_PEOPLE = 4_000_000


def generate_tables(
    people: int,
    seed: int,
    out: Path,
    rates: Rates | None = None,
    *,
    home: Path | None = None,
    shard_people: int = SHARD_PEOPLE,
) -> None:
    """Write people.parquet, addresses.parquet and population.parquet for `people` filers
    (`home`: the workspace folder, where DuckDB spills). Up to `shard_people` filers are drawn
    at once; more are drawn in shards (`shards.draw_in_shards`)."""
    if people < 1:
        raise ValueError("people must be at least 1")
    r = rates or Rates()
    if people > shard_people:

        def draw(rng: np.random.Generator, count: int, part: Path, tins: shards.Tins) -> None:
            _generate(rng, count, part, r, home, *tins)

        shards.draw_in_shards(people, seed, out, shard_people, draw, (_ssns, _itins))
        return
    _generate(np.random.default_rng(seed), people, out, r, home, _ssns, _itins)


def _generate(
    rng: np.random.Generator,
    people: int,
    out: Path,
    r: Rates,
    home: Path | None,
    ssns: Callable[[np.random.Generator, int], np.ndarray],
    itins: Callable[[np.random.Generator, int], np.ndarray],
    rids: tuple[int, int] = (1, 2**62),
) -> None:
    P, H = _population(rng, people, r)
    n = len(P["hh"])
    A = _addresses(rng, H, r)

    n_itin = int(P["itin"].sum())
    tins = np.empty(n, dtype=np.int64)
    tins[~P["itin"]] = _unique_ints(rng, n - n_itin, ssns)
    tins[P["itin"]] = _unique_ints(rng, n_itin, itins)
    rid = _unique_ints(rng, n, lambda g, k: g.integers(*rids, k))
    P["twin_of"] = np.where(P["twin_of"] >= 0, P["twin_of"], -1)
    filing = _filing(rng, P, A, r)

    con = master.connect(threads=2, home=home)
    try:
        _register(con, P, A, H, tins, rid)
        con.register("filing", filing)
        _assemble(con, rng, H)
        con.execute(PEOPLE_COPY_SQL.format(path=sqlpath(out / "people.parquet")))
        con.execute(ADDRESSES_COPY_SQL.format(path=sqlpath(out / "addresses.parquet")))
        con.execute(
            f"COPY (SELECT * FROM pop ORDER BY person_id) TO "
            f"{sqlpath(out / 'population.parquet')} (FORMAT parquet)"
        )
    finally:
        master.close(con)


def _population(
    rng: np.random.Generator, people: int, r: Rates
) -> tuple[dict[str, np.ndarray], int]:
    """Households drawn until they hold `people` filers, cut after the household of the last
    one (later filers become non-filers); and the number of households kept."""
    n_households = int(people / 1.6) + 50
    while True:
        P = _people(rng, n_households, r)
        if P["filer"].sum() >= people:
            break
        n_households = int(n_households * 1.3) + 50
    rank = np.cumsum(P["filer"])
    P["filer"] &= rank <= people
    last_hh = P["hh"][np.searchsorted(rank, people)]
    keep = P["hh"] <= last_hh
    return {k: v[keep] for k, v in P.items()}, int(last_hh) + 1


def _filing(
    rng: np.random.Generator, P: dict[str, np.ndarray], A: dict[str, np.ndarray], r: Rates
) -> pa.Table:
    """One row per filer and tax year in which they were at least 16, less skipped years."""
    years = np.arange(FIRST_YEAR, LAST_YEAR + 1)
    filer_idx = np.flatnonzero(P["filer"])
    fy_person = np.repeat(filer_idx, len(years))
    fy_year = np.tile(years, len(filer_idx))
    epoch = dt.date(1970, 1, 1).toordinal()
    birth_year = (P["dob"][filer_idx] - epoch).astype("datetime64[D]").astype(
        "datetime64[Y]"
    ).astype(np.int64) + 1970
    fy_birth = np.repeat(birth_year, len(years))
    keep_y = (fy_year - fy_birth >= 16) & (rng.random(len(fy_year)) >= r.skip_year)
    keep_y |= fy_year == LAST_YEAR  # every filer has a last known address
    fy_person, fy_year = fy_person[keep_y], fy_year[keep_y]
    fy_hh = P["hh"][fy_person]
    moved = fy_year >= A["move_year"][fy_hh]
    variant = np.where(rng.random(len(fy_year)) < r.variant, rng.integers(1, 5, len(fy_year)), 0)
    zip4 = rng.integers(1, 10000, len(fy_year))
    return pa.table(
        {
            "pid": fy_person,
            "hh": fy_hh,
            "tax_year": fy_year,
            "moved": moved,
            "variant": variant,
            "zip4": zip4,
        }
    )


# The master file's two tables, written from the population (`{path}`: sqlpath of the file).
PEOPLE_COPY_SQL = """COPY (SELECT record_id, tin, tin_type, first_name, middle_name,
                last_name, suffix, dob FROM pop WHERE filer ORDER BY record_id)
            TO {path} (FORMAT parquet)"""
ADDRESSES_COPY_SQL = """COPY (
            SELECT p.tin, f.tax_year,
              CASE f.variant
                WHEN 1 THEN (CASE WHEN f.moved THEN b_street_long ELSE a_street_long END)
                WHEN 2 THEN (CASE WHEN f.moved THEN b_street_typo ELSE a_street_typo END)
                ELSE (CASE WHEN f.moved THEN b_street ELSE a_street END) END AS street,
              CASE WHEN f.variant = 3 THEN replace(CASE WHEN f.moved THEN b_unit ELSE a_unit END,
                                                   'APT ', '# ')
                ELSE (CASE WHEN f.moved THEN b_unit ELSE a_unit END) END AS unit,
              CASE WHEN f.moved THEN b_city ELSE a_city END AS city,
              CASE WHEN f.moved THEN b_state ELSE a_state END AS state,
              CASE WHEN f.moved THEN b_zip ELSE a_zip END
                || CASE WHEN f.variant = 4 THEN '-' || lpad(f.zip4::VARCHAR, 4, '0') ELSE '' END
                AS zip
            FROM filing f JOIN pop p ON p.person_id = f.pid JOIN hh_addr h ON h.hh = f.hh
            ORDER BY p.tin, f.tax_year)
            TO {path} (FORMAT parquet)"""


def _register(
    con: duckdb.DuckDBPyConnection,
    P: dict[str, np.ndarray],
    A: dict[str, np.ndarray],
    H: int,
    tins: np.ndarray,
    rid: np.ndarray,
) -> None:
    sn, _ = reference.surnames()
    zips, cities, states = reference.zip_table()
    _lookup(con, "surnames", sn)
    _lookup(con, "male", reference.first_names("M")[0])
    _lookup(con, "female", reference.first_names("F")[0])
    _lookup(con, "streets", reference.street_names())
    _lookup(con, "suffixes", [s[0] for s in reference.SUFFIXES])
    _lookup(con, "suffix_long", [s[1] for s in reference.SUFFIXES])
    _lookup(con, "dirs", list(reference.DIRECTIONS))
    con.register(
        "zips", pa.table({"i": np.arange(len(zips)), "zip": zips, "city": cities, "state": states})
    )
    n = len(P["hh"])
    con.register(
        "persons",
        pa.table(
            {
                "pid": np.arange(n),
                "hh": P["hh"],
                "role": P["role"],
                "male": P["male"],
                "dob": (P["dob"] - dt.date(1970, 1, 1).toordinal()).astype(np.int32),
                "surname": P["surname"],
                "first": P["first"],
                "middle": P["middle"],
                "middle_kind": P["middle_kind"],
                "suffix": P["suffix"],
                "twin_of": P["twin_of"],
                "junior_of": P["junior_of"],
                "itin": P["itin"],
                "filer": P["filer"],
                "tin": tins,
                "rid": rid,
            }
        ),
    )
    cols = dict(A)
    cols["hh"] = np.arange(H)
    con.register("households", pa.table(cols))


def _assemble(con: duckdb.DuckDBPyConnection, rng: np.random.Generator, H: int) -> None:
    """Build the household addresses (with their variant spellings) and the population."""
    con.register("typo", pa.table({"hh": np.arange(H), "at": rng.integers(1, 4, H)}))

    def street(k: str) -> tuple[str, str, str]:
        name = f"st_{k}.v"
        lead = f"h.{k}_house::VARCHAR || ' ' || coalesce(d_{k}.v || ' ', '')"
        swapped = (
            f"CASE WHEN length({name}) > t.at + 1 THEN substr({name}, 1, t.at - 1) "
            f"|| substr({name}, t.at + 1, 1) || substr({name}, t.at, 1) || "
            f"substr({name}, t.at + 2) ELSE {name} END"
        )
        return (
            f"{lead} || {name} || ' ' || sf_{k}.v",
            f"{lead} || {name} || ' ' || sl_{k}.v",
            f"{lead} || {swapped} || ' ' || sf_{k}.v",
        )

    joins = " ".join(
        f"JOIN streets st_{k} ON st_{k}.i = h.{k}_street JOIN suffixes sf_{k} ON sf_{k}.i = "
        f"h.{k}_suffix JOIN suffix_long sl_{k} ON sl_{k}.i = h.{k}_suffix "
        f"LEFT JOIN dirs d_{k} ON d_{k}.i = h.{k}_dir JOIN zips z_{k} ON z_{k}.i = h.{k}_zip"
        for k in ("a", "b")
    )
    cols = []
    for k in ("a", "b"):
        plain, long, typo = street(k)
        cols += [
            f"{plain} AS {k}_street",
            f"{long} AS {k}_street_long",
            f"{typo} AS {k}_street_typo",
            f"CASE WHEN h.{k}_unit >= 0 THEN 'APT ' || h.{k}_unit END AS {k}_unit",
            f"z_{k}.city AS {k}_city",
            f"z_{k}.state AS {k}_state",
            f"z_{k}.zip AS {k}_zip",
        ]
    con.execute(
        f"CREATE TABLE hh_addr AS SELECT h.hh, h.move_year, {', '.join(cols)} "
        f"FROM households h JOIN typo t ON t.hh = h.hh {joins}"
    )
    moved = f"ha.move_year <= {LAST_YEAR}"
    cur = {
        c: f"CASE WHEN {moved} THEN ha.b_{c} ELSE ha.a_{c} END AS {c}"
        for c in ("street", "unit", "city", "state", "zip")
    }
    con.execute(f"""
        CREATE TABLE pop AS SELECT p.pid AS person_id,
          CASE WHEN p.filer THEN 'rec-' || lpad(lower(to_hex(p.rid)), 16, '0') END AS record_id,
          p.hh AS household_id,
          CASE p.role WHEN 0 THEN 'head' WHEN 1 THEN 'spouse' ELSE 'child' END AS role,
          p.filer, CASE WHEN p.male THEN 'M' ELSE 'F' END AS sex,
          CASE WHEN p.male THEN m.v ELSE f.v END AS first_name,
          CASE p.middle_kind WHEN 0 THEN (CASE WHEN p.male THEN mm.v ELSE fm.v END)
               WHEN 1 THEN left(CASE WHEN p.male THEN mm.v ELSE fm.v END, 1) END AS middle_name,
          s.v AS last_name,
          CASE p.suffix WHEN 1 THEN 'JR' WHEN 2 THEN 'SR' WHEN 3 THEN 'II' END AS suffix,
          (DATE '1970-01-01' + p.dob) AS dob,
          lpad(p.tin::VARCHAR, 9, '0') AS tin,
          CASE WHEN p.itin THEN 'ITIN' ELSE 'SSN' END AS tin_type,
          CASE WHEN p.twin_of >= 0 THEN p.twin_of END AS twin_of,
          CASE WHEN p.junior_of >= 0 THEN p.junior_of END AS junior_of,
          {", ".join(cur.values())},
          CASE WHEN {moved} THEN ha.a_street END AS previous_street,
          CASE WHEN {moved} THEN ha.a_unit END AS previous_unit,
          CASE WHEN {moved} THEN ha.a_city END AS previous_city,
          CASE WHEN {moved} THEN ha.a_state END AS previous_state,
          CASE WHEN {moved} THEN ha.a_zip END AS previous_zip
        FROM persons p JOIN surnames s ON s.i = p.surname
        LEFT JOIN male m ON m.i = p.first LEFT JOIN female f ON f.i = p.first
        LEFT JOIN male mm ON mm.i = p.middle LEFT JOIN female fm ON fm.i = p.middle
        JOIN hh_addr ha ON ha.hh = p.hh""")


def generate_master(
    call: Call, people: int, seed: int, *, replace: bool = False, rates: Rates | None = None
) -> ImportResult:
    """Generate a synthetic master file into the workspace, through the validating import."""
    ws = call.ws
    current = master.current(ws)
    if current.exists and not current.synthetic:
        # Replacing imported records is never one administrator's act: it goes through an
        # import, confirmed by a second administrator (and a synthetic file is no substitute).
        raise ConflictError(
            "The master file holds imported records; a synthetic one never replaces it (use a "
            "new workspace for synthetic data).",
            code="real_master_file",
        )
    if current.exists and not replace:
        raise ConflictError(
            "The workspace already has a master file; generating would mix synthetic people "
            "into it. Use a new workspace, or --replace to discard the current master file.",
            code="master_exists",
        )
    with tempfile.TemporaryDirectory(dir=ws.bulk) as tmp:
        out = Path(tmp)
        generate_tables(people, seed, out, rates, home=ws.home)
        return import_master(
            call,
            out / "people.parquet",
            out / "addresses.parquet",
            kind="generate",
            replace=replace,
            extra_tables={"population": out / "population.parquet"},
        )
