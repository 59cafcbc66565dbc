"""`records import`: every validation rule refuses, all-or-nothing, idempotent re-import."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from custodes.access import CheckedCall, enter
from custodes.errors import InputError, ValidationFailed
from custodes.records import master
from custodes.records.importer import ImportResult
from custodes.records.importer import import_master as _import_master
from custodes.store.tables import ledger_events
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

PEOPLE_HEADER = ["tin", "tin_type", "first_name", "middle_name", "last_name", "suffix", "dob"]
ADDR_HEADER = ["tin", "tax_year", "street", "unit", "city", "state", "zip"]


def people_rows() -> list[dict[str, str]]:
    return [
        dict(
            tin="123456789",
            tin_type="SSN",
            first_name="ANA",
            middle_name="",
            last_name="ROE",
            suffix="",
            dob="1980-02-29",
        ),
        dict(
            tin="234-56-7891",
            tin_type="ssn",
            first_name="BEN",
            middle_name="Q",
            last_name="ROE",
            suffix="Jr.",
            dob="2001-07-04",
        ),
        dict(
            tin="912781234",
            tin_type="ITIN",
            first_name="CARLA",
            middle_name="",
            last_name="DIAZ",
            suffix="",
            dob="1975-12-31",
        ),
    ]


def addr_rows() -> list[dict[str, str]]:
    return [
        dict(
            tin="123456789",
            tax_year="2023",
            street="12 OAK ST",
            unit="APT 2",
            city="AUSTIN",
            state="TX",
            zip="78701",
        ),
        dict(
            tin="123456789",
            tax_year="2024",
            street="40 ELM AVE",
            unit="",
            city="AUSTIN",
            state="tx",
            zip="78702-1234",
        ),
        dict(
            tin="234567891",
            tax_year="2024",
            street="40 ELM AVE",
            unit="",
            city="AUSTIN",
            state="TX",
            zip="787021234",
        ),
        dict(
            tin="912781234",
            tax_year="2024",
            street="9 PINE RD",
            unit="",
            city="MIAMI",
            state="FL",
            zip="33101",
        ),
    ]


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path


def files(tmp_path: Path, people=None, addrs=None) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    p = write_csv(
        tmp_path / "people.csv", list((people or people_rows())[0].keys()), people or people_rows()
    )
    a = write_csv(tmp_path / "addresses.csv", ADDR_HEADER, addrs or addr_rows())
    return p, a


def stored(ws: Workspace, table: str) -> list[tuple]:
    path = master.current(ws).path(table)
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY ALL").fetchall()


_SECOND: dict[Path, object] = {}  # each workspace's second administrator


def import_master(call: CheckedCall, people: Path, addresses: Path, **kw: object) -> ImportResult:
    """An import as a real one runs: proposed by one administrator (validated, written, not
    in use) and confirmed by the second, which puts it in use."""
    from custodes.services import users as users_svc

    result = _import_master(call, people, addresses, **kw)  # type: ignore[arg-type]
    if result.pending:
        users_svc.confirm_change(call.ws, _SECOND[call.ws.home], result.change)
    return result


@pytest.fixture
def admin_call(workspace: Workspace, staff: Staff) -> CheckedCall:
    """The first administrator's call (the staff come with the workspace's template)."""
    _SECOND[workspace.home] = staff.second_admin
    return enter(workspace, staff.admin, "records.import")


def test_valid_import_normalises_values(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    result = import_master(admin_call, *files(tmp_path))
    assert (result.people_added, result.addresses_added) == (3, 4)
    people = {r[1]: r for r in stored(workspace, "people")}
    assert set(people) == {"123456789", "234567891", "912781234"}
    assert people["234567891"][2] == "SSN" and people["234567891"][6] == "JR"
    assert all(r[0].startswith("rec-") for r in people.values())
    zips = {r[7] for r in stored(workspace, "addresses")}
    assert zips == {"78701", "78702-1234", "33101"}


def test_reimport_is_idempotent(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    p, a = files(tmp_path)
    first = import_master(admin_call, p, a)
    before = stored(workspace, "people"), stored(workspace, "addresses")
    second = import_master(admin_call, p, a)
    assert second.unchanged and second.master_sha256 == first.master_sha256
    assert (second.people_added, second.people_changed) == (0, 0)
    assert (stored(workspace, "people"), stored(workspace, "addresses")) == before


def test_reimport_with_a_change_updates_and_keeps_record_ids(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    import_master(admin_call, *files(tmp_path))
    ids = {r[1]: r[0] for r in stored(workspace, "people")}
    rows = people_rows()
    rows[0]["middle_name"] = "M"
    addrs = [
        *addr_rows(),
        dict(
            tin="912781234",
            tax_year="2023",
            street="1 BAY DR",
            unit="",
            city="MIAMI",
            state="FL",
            zip="33101",
        ),
    ]
    result = import_master(admin_call, *files(tmp_path, rows, addrs))
    assert (result.people_added, result.people_changed) == (0, 1)
    assert (result.addresses_added, result.addresses_changed) == (1, 0)
    assert {r[1]: r[0] for r in stored(workspace, "people")} == ids


def test_source_record_id_is_kept(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    rows = [r | {"record_id": f"SRC-{i}"} for i, r in enumerate(people_rows())]
    import_master(admin_call, *files(tmp_path, rows))
    assert {r[0] for r in stored(workspace, "people")} == {"SRC-0", "SRC-1", "SRC-2"}
    # A TIN-shaped source key would put TINs in the ledger: refused.
    bad = [r | {"record_id": "555443333"} if i == 1 else r for i, r in enumerate(rows)]
    with pytest.raises(ValidationFailed, match="shaped like a TIN"):
        import_master(admin_call, *files(tmp_path, bad))
    # The same TIN may not come back under another record id.
    rows[0]["record_id"] = "SRC-9"
    with pytest.raises(ValidationFailed, match="differs from the one on file"):
        import_master(admin_call, *files(tmp_path, rows))


@pytest.mark.parametrize(
    ("field", "value", "column", "message"),
    [
        ("tin", "", "tin", "TIN is required"),
        ("tin", "12345678", "tin", "9 digits"),
        ("tin", "12-345-6789", "tin", "9 digits"),
        ("tin", "000456789", "tin", "not a valid SSN"),
        ("tin", "666456789", "tin", "not a valid SSN"),
        ("tin", "123006789", "tin", "not a valid SSN"),
        ("tin", "123450000", "tin", "not a valid SSN"),
        ("tin", "987654321", "tin", "never begins with 9"),
        ("tin_type", "EIN", "tin_type", "SSN or ITIN"),
        ("tin_type", "", "tin_type", "required"),
        ("first_name", "  ", "first_name", "first_name is required"),
        ("last_name", "", "last_name", "last_name is required"),
        ("last_name", "X" * 81, "last_name", "longer than 80"),
        ("suffix", "ESQ", "suffix", "suffix must be"),
        ("dob", "", "dob", "dob is required"),
        ("dob", "02/29/1980", "dob", "YYYY-MM-DD"),
        ("dob", "1981-02-29", "dob", "YYYY-MM-DD"),
        ("dob", "1850-01-01", "dob", "between 1900-01-01 and today"),
        ("dob", "2999-01-01", "dob", "between 1900-01-01 and today"),
    ],
)
def test_people_rule_refuses(
    workspace: Workspace,
    admin_call: CheckedCall,
    tmp_path: Path,
    field: str,
    value: str,
    column: str,
    message: str,
) -> None:
    rows = people_rows()
    rows[0][field] = value
    with pytest.raises(ValidationFailed) as exc:
        import_master(admin_call, *files(tmp_path, rows, addr_rows()[2:]))
    first = exc.value.problems[0]
    assert (first.file, first.line, first.column) == ("people.csv", 2, column)
    assert message in first.message
    if value.strip():
        assert value not in str(exc.value)  # never quote the value
    assert not master.current(workspace).exists  # nothing was loaded


@pytest.mark.parametrize(
    ("tin", "message"),
    [("812781234", "an ITIN begins with 9"), ("912001234", "outside the ranges")],
)
def test_itin_rules(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path, tin: str, message: str
) -> None:
    rows = people_rows()
    rows[2]["tin"] = tin
    with pytest.raises(ValidationFailed) as exc:
        import_master(admin_call, *files(tmp_path, rows, addr_rows()[:3]))
    assert message in str(exc.value)
    assert exc.value.problems[0].line == 4


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tin", "555", "9 digits"),
        ("tin", "345678912", "no person in the people file"),
        ("tax_year", "", "tax_year is required"),
        ("tax_year", "twenty", "must be a year"),
        ("tax_year", "1850", "between 1900"),
        ("street", "", "street is required"),
        ("street", "9" * 121, "longer than 120"),
        ("city", "", "city is required"),
        ("state", "ZZ", "not a USPS state code"),
        ("state", "", "state is required"),
        ("zip", "7870", "5 digits or ZIP+4"),
        ("zip", "", "zip is required"),
    ],
)
def test_address_rule_refuses(
    workspace: Workspace,
    admin_call: CheckedCall,
    tmp_path: Path,
    field: str,
    value: str,
    message: str,
) -> None:
    addrs = addr_rows()
    addrs[3][field] = value
    with pytest.raises(ValidationFailed) as exc:
        import_master(admin_call, *files(tmp_path, None, addrs))
    first = exc.value.problems[0]
    assert (first.file, first.line) == ("addresses.csv", 5)
    assert message in first.message
    assert not master.current(workspace).exists


def test_duplicates_are_refused(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    rows = [*people_rows(), people_rows()[0]]
    addrs = [*addr_rows(), addr_rows()[0]]
    with pytest.raises(ValidationFailed) as exc:
        import_master(admin_call, *files(tmp_path, rows, addrs))
    msgs = {(p.file, p.line, p.message) for p in exc.value.problems}
    assert ("people.csv", 5, "TIN appears more than once in this file") in msgs
    assert ("addresses.csv", 6, "the same TIN and tax_year appear more than once") in msgs


def test_all_or_nothing_keeps_previous_master(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    import_master(admin_call, *files(tmp_path))
    before = master.current(workspace).sha256()
    rows = people_rows()
    rows.append(
        dict(
            tin="345678912",
            tin_type="SSN",
            first_name="NEW",
            middle_name="",
            last_name="PERSON",
            suffix="",
            dob="1990-01-01",
        )
    )
    addrs = [
        *addr_rows(),
        dict(
            tin="345678912",
            tax_year="2024",
            street="1 A ST",
            unit="",
            city="X",
            state="QQ",
            zip="11111",
        ),
    ]
    with pytest.raises(ValidationFailed) as exc:
        import_master(admin_call, *files(tmp_path, rows, addrs))
    assert exc.value.total == 1
    assert master.current(workspace).sha256() == before
    assert len(stored(workspace, "people")) == 3


def test_problem_list_is_capped_but_counts_all(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    rows = [dict(people_rows()[0], tin=f"1234567{i:02d}", dob="bad") for i in range(10, 60)]
    with pytest.raises(ValidationFailed) as exc:
        import_master(admin_call, *files(tmp_path, rows, addr_rows()[:2]))
    # 50 bad dates, and the two address rows now name a TIN no person has.
    assert exc.value.total == 52 and len(exc.value.problems) == 20
    assert "and 32 more" in str(exc.value)
    assert [p.line for p in exc.value.problems] == list(range(2, 22))


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda p: p.write_text("tin,tin_type,first_name\n1,2,3\n"), "missing_columns"),
        (lambda p: p.write_text(",".join([*PEOPLE_HEADER, "ssn_extra"]) + "\n"), "unknown_columns"),
        (
            lambda p: p.write_bytes(
                ",".join(PEOPLE_HEADER).encode() + b"\n123456789,SSN,J\xe9r\xf4me,"
                b",ROE,,1980-01-01\n"
            ),
            "bad_encoding",
        ),
        (
            lambda p: p.write_text(
                ",".join(PEOPLE_HEADER) + "\n123456789,SSN,A,,B,,1980-01-01,X\n"
            ),
            "bad_csv",
        ),
        (lambda p: p.write_text(""), "empty_file"),
        (lambda p: p.rename(p.with_suffix(".xlsx")), "file_not_found"),
    ],
)
def test_file_level_refusals(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path, mutate, code: str
) -> None:  # type: ignore[no-untyped-def]
    p, a = files(tmp_path)
    mutate(p)
    with pytest.raises(InputError) as exc:
        import_master(admin_call, p, a)
    assert exc.value.code == code
    assert "Jérôme" not in str(exc.value) and "123456789" not in str(exc.value)


def test_bad_encoding_names_the_line(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    p, a = files(tmp_path)
    p.write_bytes(p.read_bytes() + b"345678912,SSN,J\xe9r\xf4me,,ROE,,1980-01-01\n")
    with pytest.raises(InputError, match=r"people.csv:5: .*UTF-8"):
        import_master(admin_call, p, a)


def test_utf8_with_bom_and_accents_is_accepted(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    rows = people_rows()
    rows[0]["first_name"] = "JOSÉ"
    p, a = files(tmp_path, rows)
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    import_master(admin_call, p, a)
    assert "JOSÉ" in {r[3] for r in stored(workspace, "people")}


def test_parquet_input(workspace: Workspace, admin_call: CheckedCall, tmp_path: Path) -> None:
    people = pa.Table.from_pylist(people_rows())
    pq.write_table(people, tmp_path / "people.parquet")
    addrs = pa.Table.from_pylist([dict(r, tax_year=int(r["tax_year"])) for r in addr_rows()])
    pq.write_table(addrs, tmp_path / "addresses.parquet")
    result = import_master(admin_call, tmp_path / "people.parquet", tmp_path / "addresses.parquet")
    assert (result.people_added, result.addresses_added) == (3, 4)
    # A Parquet problem is located by row number.
    bad = people_rows()
    bad[1]["dob"] = "never"
    pq.write_table(pa.Table.from_pylist(bad), tmp_path / "people.parquet")
    with pytest.raises(ValidationFailed) as exc:
        import_master(admin_call, tmp_path / "people.parquet", tmp_path / "addresses.parquet")
    assert exc.value.problems[0].line == 2


def test_a_parquet_page_that_cannot_be_decoded_is_refused(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    """A master file's Parquet is read by DuckDB, not decoded into Python first: a damaged data
    page (its footer intact, so the checks of its metadata pass) is still one coded refusal,
    and nothing is imported."""
    rows = [dict(r, tin=f"{100000000 + i:09d}") for i in range(2000) for r in people_rows()[:1]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "people.parquet", use_dictionary=False)
    at = pq.ParquetFile(tmp_path / "people.parquet").metadata.row_group(0).column(0)
    data = bytearray((tmp_path / "people.parquet").read_bytes())
    for i in range(at.data_page_offset, at.data_page_offset + 8):
        data[i] ^= 0xFF
    (tmp_path / "people.parquet").write_bytes(bytes(data))
    _, a = files(tmp_path)
    with pytest.raises(InputError) as exc:
        import_master(admin_call, tmp_path / "people.parquet", a)
    assert exc.value.code == "bad_parquet"
    assert "1000" not in str(exc.value)  # no value of the file in the message
    assert not master.current(workspace).exists


def test_an_import_takes_effect_only_when_a_second_administrator_confirms_it(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    """Issue #22, item 4: `records import` replaced the addresses that will be disclosed on
    one administrator's say. Now the new generation is written but not in use until a second
    administrator confirms that change by its id; an edit of the waiting generation, or a
    master file that moved on meanwhile, is refused at confirmation."""
    from custodes.errors import AccessDenied, ConflictError, IntegrityError
    from custodes.services import users as users_svc

    second = _SECOND[workspace.home]
    import_master(admin_call, *files(tmp_path))  # proposed and confirmed: the base
    before = master.current(workspace).folder
    rows = people_rows()
    rows[0]["middle_name"] = "Q"
    (tmp_path / "b").mkdir()
    proposed = _import_master(admin_call, *files(tmp_path / "b", rows))
    assert proposed.pending and proposed.change
    assert master.current(workspace).folder == before  # written, not in use
    with pytest.raises(AccessDenied) as exc:  # the administrator who imported: refused
        users_svc.confirm_change(workspace, admin_call.caller, proposed.change)
    assert exc.value.code == "separation_of_duties"
    # the waiting generation edited on disk before the confirmation: refused, nothing in use
    waiting = next(p for p in before.parent.glob("g*") if p != before)
    people_file = waiting / "people.parquet"
    people_file.write_bytes(people_file.read_bytes() + b"\0")
    with pytest.raises(IntegrityError) as exc:
        users_svc.confirm_change(workspace, second, proposed.change)
    assert exc.value.code == "master_corrupt" and master.current(workspace).folder == before
    # proposed again, then the master file moves on before the confirmation: refused
    (tmp_path / "c").mkdir()
    again = _import_master(admin_call, *files(tmp_path / "c", rows))
    rows[1]["middle_name"] = "R"
    (tmp_path / "d").mkdir()
    import_master(admin_call, *files(tmp_path / "d", rows))  # another, confirmed first
    with pytest.raises(ConflictError) as exc:
        users_svc.confirm_change(workspace, second, again.change)
    assert exc.value.code == "not_pending"
    with workspace.engine.connect() as conn:
        bodies = conn.execute(
            sa.select(ledger_events.c.body)
            .where(ledger_events.c.type == "master.imported")
            .order_by(ledger_events.c.idx)
        ).scalars()
        body = [json.loads(b) for b in bodies][-1]
    assert body["actor"] == "admin2" and body["proposed_by"] == "admin" and body["change_id"]


def test_a_real_master_file_is_never_replaced_by_a_generated_one(
    workspace: Workspace, admin_call: CheckedCall, tmp_path: Path
) -> None:
    """Review of #22: `records generate --replace` skipped the queue and deleted the imported
    (confirmed) master file, by one administrator's act. Now refused on imported records."""
    from custodes.errors import ConflictError
    from custodes.synthetic.population import generate_master

    import_master(admin_call, *files(tmp_path))
    before = master.current(workspace).folder
    generating = enter(workspace, admin_call.caller, "records.generate")
    with pytest.raises(ConflictError) as exc:
        generate_master(generating, 50, 1, replace=True)
    assert exc.value.code == "real_master_file"
    assert master.current(workspace).folder == before and before.is_dir()
