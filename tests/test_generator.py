"""The synthetic master file: deterministic, valid, and shaped like real mistaken identity."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from custodes.errors import ConflictError
from custodes.records import master
from custodes.services.records import generate as generate_master
from custodes.synthetic.population import generate_tables
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace


@pytest.fixture(scope="module", params=["whole", "sharded"])
def tables(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 20,000 filers drawn at once, and in three shards (as a master file larger than
    `SHARD_PEOPLE` is): every property below holds for both."""
    out = tmp_path_factory.mktemp("gen")
    shard = 7_000 if request.param == "sharded" else 20_000
    generate_tables(20_000, seed=5, out=out, shard_people=shard)
    return out


def q(sql: str):  # type: ignore[no-untyped-def]
    return duckdb.sql(sql).fetchall()


def test_same_seed_same_data_other_seed_other_data(
    request: pytest.FixtureRequest, tmp_path: Path, tables: Path
) -> None:
    again = tmp_path / "again"
    other = tmp_path / "other"
    again.mkdir()
    other.mkdir()
    shard = 7_000 if request.node.callspec.params["tables"] == "sharded" else 20_000
    generate_tables(20_000, seed=5, out=again, shard_people=shard)
    generate_tables(20_000, seed=6, out=other, shard_people=shard)
    for t in ("people", "addresses", "population"):
        same = q(
            f"SELECT count(*) FROM (SELECT * FROM '{tables}/{t}.parquet' EXCEPT ALL "
            f"SELECT * FROM '{again}/{t}.parquet')"
        )[0][0]
        assert same == 0
    assert (
        q(
            f"SELECT count(*) FROM '{tables}/people.parquet' p JOIN "
            f"'{other}/people.parquet' o USING (tin, first_name, last_name, dob)"
        )[0][0]
        < 5
    )


def test_exact_count_and_unique_keys(tables: Path) -> None:
    n, tins, ids = q(
        f"SELECT count(*), count(DISTINCT tin), count(DISTINCT record_id) "
        f"FROM '{tables}/people.parquet'"
    )[0]
    assert n == tins == ids == 20_000


def test_surnames_are_skewed_like_the_us(tables: Path) -> None:
    top = q(
        f"SELECT last_name, count(*) c FROM '{tables}/population.parquet' GROUP BY 1 "
        f"ORDER BY c DESC LIMIT 1"
    )[0]
    share_top10 = q(f"""SELECT sum(c) / (SELECT count(*) FROM '{tables}/population.parquet')
        FROM (SELECT count(*) c FROM '{tables}/population.parquet' GROUP BY last_name
              ORDER BY c DESC LIMIT 10)""")[0][0]
    assert top[0] == "SMITH"
    assert 0.03 < share_top10 < 0.12  # Census 1990: top ten surnames ≈ 5.6%


def test_ids_are_unique_and_links_stay_in_their_household(tables: Path) -> None:
    pop = f"'{tables}/population.parquet'"
    n, ids, first, last = q(
        f"SELECT count(*), count(DISTINCT person_id), min(person_id), max(person_id) FROM {pop}"
    )[0]
    assert n == ids == last - first + 1  # merged shards: one id space, no gap, no repeat
    for link in ("twin_of", "junior_of"):
        stray = q(f"""SELECT count(*) FROM {pop} a LEFT JOIN {pop} b ON a.{link} = b.person_id
                      WHERE a.{link} IS NOT NULL
                      AND (b.person_id IS NULL OR a.household_id <> b.household_id)""")[0][0]
        assert stray == 0
    orphans = q(f"""SELECT count(*) FROM '{tables}/addresses.parquet' a
                    ANTI JOIN '{tables}/people.parquet' p USING (tin)""")[0][0]
    assert orphans == 0
    for name, key in (
        ("people", "record_id"),
        ("addresses", "(tin, tax_year)"),
        ("population", "person_id"),
    ):  # in the file's own order, as an unsharded generation writes it
        ordered = q(f"""SELECT bool_and(k > prev) FROM (SELECT {key} AS k,
                        lag({key}) OVER () AS prev FROM '{tables}/{name}.parquet')
                        WHERE prev IS NOT NULL""")[0][0]
        assert ordered, name


def test_households_share_surname_and_address(tables: Path) -> None:
    shared = q(f"""SELECT count(*) FROM (SELECT household_id FROM '{tables}/population.parquet'
        WHERE filer GROUP BY household_id, last_name, street, zip HAVING count(*) > 1)""")[0][0]
    households = q(
        f"SELECT count(DISTINCT household_id) FROM '{tables}/population.parquet' WHERE filer"
    )[0][0]
    assert shared / households > 0.25


def test_twins_juniors_itins_movers_and_non_filers(tables: Path) -> None:
    pop = f"'{tables}/population.parquet'"
    twins = q(f"""SELECT count(*) FROM {pop} a JOIN {pop} b ON a.twin_of = b.person_id
                  WHERE a.dob = b.dob AND a.last_name = b.last_name
                  AND a.first_name <> b.first_name""")[0][0]
    assert twins > 20
    juniors = q(f"""SELECT count(*) FROM {pop} j JOIN {pop} f ON j.junior_of = f.person_id
                    WHERE j.first_name = f.first_name AND j.last_name = f.last_name
                    AND j.suffix IN ('JR', 'II')""")[0][0]
    assert juniors > 20
    itin_share = q(f"SELECT avg((tin_type = 'ITIN')::INT) FROM '{tables}/people.parquet'")[0][0]
    assert 0.02 < itin_share < 0.08
    assert q(f"SELECT bool_and(left(tin, 1) = '9') FROM {pop} WHERE tin_type = 'ITIN'")[0][0]
    assert q(f"SELECT bool_and(left(tin, 1) <> '9') FROM {pop} WHERE tin_type = 'SSN'")[0][0]
    movers = q(f"""SELECT count(*) FROM (SELECT tin FROM '{tables}/addresses.parquet'
                   GROUP BY tin HAVING count(DISTINCT zip[1:5]) > 1)""")[0][0]
    assert movers / 20_000 > 0.15
    non_filers = q(f"SELECT count(*) FROM {pop} WHERE NOT filer AND record_id IS NULL")[0][0]
    assert non_filers > 2_000
    assert q(f"SELECT count(*) FROM {pop} WHERE filer AND record_id IS NULL")[0][0] == 0


def test_variant_spellings_across_years(tables: Path) -> None:
    a = f"'{tables}/addresses.parquet'"
    spelled = q(f"SELECT count(*) FROM {a} WHERE street LIKE '% STREET' OR street LIKE '% AVENUE'")[
        0
    ][0]
    hash_units = q(f"SELECT count(*) FROM {a} WHERE unit LIKE '# %'")[0][0]
    zip4 = q(f"SELECT count(*) FROM {a} WHERE length(zip) = 10")[0][0]
    rows = q(f"SELECT count(*) FROM {a}")[0][0]
    assert spelled and hash_units and zip4
    assert 0.005 < (spelled + zip4) / rows < 0.05


def test_generate_into_workspace_goes_through_validation(
    workspace: Workspace, staff: Staff
) -> None:
    result = generate_master(workspace, staff.admin, 500, seed=3)
    assert result["people"] == 500
    mf = master.current(workspace)
    assert mf.has("population")
    with pytest.raises(ConflictError) as exc:
        generate_master(workspace, staff.admin, 500, seed=3)
    assert exc.value.code == "master_exists"
    again = generate_master(workspace, staff.admin, 400, seed=4, replace=True)
    assert again["people"] == 400
    assert master.summary(workspace)["people"] == 400
