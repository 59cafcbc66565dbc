"""`records import`: validate two files completely, then merge them into the master file.

All or nothing: every row of both files is validated in one vectorised DuckDB pass before
anything is written; the merged master file is written as a new generation and switched in
atomically (see `master.py`). Re-importing the same data changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import Connection, insert

from custodes.errors import ConflictError, IntegrityError, Problem, ValidationFailed
from custodes.ledger import log
from custodes.ledger.event_types import MasterImported, MasterImportProposed
from custodes.ledger.files import sha256_file
from custodes.records import master
from custodes.records.files import ROW, line_of, parquet_errors, text_source
from custodes.records.schema import (
    ADDRESS_COLUMNS,
    ADDRESS_STORED,
    ITIN_GROUP_SQL,
    MAX_FIELD,
    PEOPLE_COLUMNS,
    PEOPLE_OPTIONAL,
    PEOPLE_STORED,
    SUFFIXES,
    TIN_TYPES,
    US_STATES,
)
from custodes.store import changes as queue
from custodes.store import tables
from custodes.store.sql import literal, parquet
from custodes.store.sql import path as sqlpath
from custodes.workspace import Call, Workspace

MAX_PROBLEMS = 20


@dataclass
class ImportResult:
    people_rows: int
    address_rows: int
    people_added: int
    people_changed: int
    addresses_added: int
    addresses_changed: int
    master_sha256: str
    unchanged: bool
    # An import of records (not a synthetic generation) waits for a second administrator:
    # the new generation is written but published only when they confirm this change.
    pending: bool = False
    change: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# A master file is the agency's own, imported by two administrators, and far larger than any
# upload (25M people: 1.6 GB of Parquet, more decoded); DuckDB reads it under its memory limit.
# The bound refuses a file whose metadata declares an absurd size (a decompression bomb).
MASTER_MAX_BYTES = 256 << 30


def _sql_list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(literal(v) for v in values)


def _clean(col: str) -> str:
    """Trimmed text with runs of white space folded; empty becomes NULL."""
    return f"nullif(regexp_replace(trim({col}), '\\s+', ' ', 'g'), '')"


TIN_SQL = """CASE WHEN regexp_full_match(trim(tin), '[0-9]{9}') THEN trim(tin)
     WHEN regexp_full_match(trim(tin), '[0-9]{3}-[0-9]{2}-[0-9]{4}')
     THEN replace(trim(tin), '-', '') END"""


def _people_view(con: duckdb.DuckDBPyConnection, has_record_id: bool) -> None:
    rid = _clean("record_id") if has_record_id else "NULL::VARCHAR"
    # One table (p2), and p a view of it: at 25M people every full copy is gigabytes of spill.
    con.execute(f"""
        CREATE TEMP TABLE p2 AS SELECT *,
          CASE WHEN tin IS NOT NULL THEN min(r) OVER (PARTITION BY tin) END AS tin_first,
          CASE WHEN record_id IS NOT NULL THEN min(r) OVER (PARTITION BY record_id) END AS rid_first
        FROM (SELECT {ROW} AS r, nullif(trim(tin), '') AS tin_raw, {TIN_SQL} AS tin,
               upper({_clean("tin_type")}) AS tin_type,
               {_clean("first_name")} AS first_name, {_clean("middle_name")} AS middle_name,
               {_clean("last_name")} AS last_name,
               upper(replace({_clean("suffix")}, '.', '')) AS suffix,
               nullif(trim(dob), '') AS dob_raw,
               try_strptime(trim(dob), '%Y-%m-%d')::DATE AS dob,
               {rid} AS record_id
        FROM src_people)""")
    con.execute("CREATE TEMP VIEW p AS SELECT * EXCLUDE (tin_first, rid_first) FROM p2")


def _address_view(con: duckdb.DuckDBPyConnection) -> None:
    """The addresses as views over the file (`a`, and `a2` with the duplicate keys), never a
    copy: 25M people have 125M address rows, and every copy of them (with a window's sort
    buffer beside it) spilled tens of gigabytes. What is read twice is read from the file
    again (a sequential scan); the only table is of the keys that occur more than once."""
    con.execute(f"""
        CREATE TEMP VIEW a AS
        SELECT {ROW} AS r, nullif(trim(tin), '') AS tin_raw, {TIN_SQL} AS tin,
               nullif(trim(tax_year), '') AS year_raw,
               try_cast(trim(tax_year) AS INTEGER) AS tax_year,
               {_clean("street")} AS street, {_clean("unit")} AS unit, {_clean("city")} AS city,
               upper(nullif(trim(state), '')) AS state,
               nullif(trim(zip), '') AS zip_raw,
               CASE WHEN regexp_full_match(trim(zip), '[0-9]{{5}}') THEN trim(zip)
                    WHEN regexp_full_match(trim(zip), '[0-9]{{5}}-?[0-9]{{4}}')
                    THEN substr(trim(zip), 1, 5) || '-' || right(trim(zip), 4) END AS zip
        FROM src_addresses""")
    con.execute("""
        CREATE TEMP TABLE a_dup AS
        SELECT tin, tax_year, min(r) AS key_first FROM a
        WHERE tin IS NOT NULL AND tax_year IS NOT NULL
        GROUP BY tin, tax_year HAVING count(*) > 1""")
    con.execute("""
        CREATE TEMP VIEW a2 AS
        SELECT a.*, d.key_first FROM a
        LEFT JOIN a_dup d ON d.tin = a.tin AND d.tax_year = a.tax_year""")


def _length_checks(table: str, cols: tuple[str, ...]) -> list[tuple[str, str, str, str]]:
    return [
        (table, c, f"length({c}) > {MAX_FIELD[c]}", f"longer than {MAX_FIELD[c]} characters")
        for c in cols
        if c in MAX_FIELD
    ]


_Check = tuple[str, str, str, str]


def _checks(has_master: bool) -> list[_Check]:
    """(table, column, condition that marks a bad row, message). Messages never quote values."""
    return _people_checks(has_master) + _address_checks(has_master)


def _parsed(t: str, column: str, raw: str, required: str, malformed: str) -> list[_Check]:
    """A column parsed from the file's text (`raw`): required, then well-formed (it parsed)."""
    return [
        (t, column, f"{raw} IS NULL", required),
        (t, column, f"{raw} IS NOT NULL AND {column} IS NULL", malformed),
    ]


def _required(t: str, *columns: str) -> list[_Check]:
    return [(t, c, f"{c} IS NULL", f"{c} is required") for c in columns]


def _tin_checks(t: str) -> list[_Check]:
    return _parsed(
        t,
        "tin",
        "tin_raw",
        "TIN is required",
        "TIN must be 9 digits, optionally written NNN-NN-NNNN",
    )


def _people_checks(has_master: bool) -> list[_Check]:
    """The people file's checks (a table of them)."""
    people = [
        *_tin_checks("p2"),
        ("p2", "tin_type", "tin_type IS NULL", "tin_type is required (SSN or ITIN)"),
        (
            "p2",
            "tin_type",
            f"tin_type NOT IN ({_sql_list(TIN_TYPES)})",
            "tin_type must be SSN or ITIN",
        ),
        (
            "p2",
            "tin",
            "tin_type = 'SSN' AND left(tin, 1) = '9'",
            "an SSN never begins with 9 (numbers beginning with 9 are ITINs)",
        ),
        (
            "p2",
            "tin",
            "tin_type = 'SSN' AND (left(tin, 3) IN ('000', '666') "
            "OR substr(tin, 4, 2) = '00' OR right(tin, 4) = '0000')",
            "not a valid SSN (area 000 or 666, group 00 or serial 0000)",
        ),
        ("p2", "tin", "tin_type = 'ITIN' AND left(tin, 1) <> '9'", "an ITIN begins with 9"),
        (
            "p2",
            "tin",
            "tin_type = 'ITIN' AND left(tin, 1) = '9' AND NOT "
            + ITIN_GROUP_SQL.replace("g", "CAST(substr(tin, 4, 2) AS INTEGER)"),
            "ITIN middle digits are outside the ranges the IRS issues (50-65, 70-88, 90-92, 94-99)",
        ),
        *_required("p2", "first_name", "last_name"),
        *_length_checks("p2", ("first_name", "middle_name", "last_name", "record_id")),
        (
            "p2",
            "suffix",
            f"suffix NOT IN ({_sql_list(SUFFIXES)})",
            f"suffix must be empty or one of {', '.join(SUFFIXES)}",
        ),
        *_parsed("p2", "dob", "dob_raw", "dob is required", "dob must be a date as YYYY-MM-DD"),
        (
            "p2",
            "dob",
            "dob < DATE '1900-01-01' OR dob > current_date",
            "dob must lie between 1900-01-01 and today",
        ),
        ("p2", "tin", "tin_first <> r", "TIN appears more than once in this file"),
        ("p2", "record_id", "rid_first <> r", "record_id appears more than once in this file"),
        # Record ids go into the ledger; one shaped like a TIN would publish a TIN there.
        (
            "p2",
            "record_id",
            "regexp_full_match(record_id, '[0-9]{3}-?[0-9]{2}-?[0-9]{4}')",
            "record_id must not be shaped like a TIN (it is recorded in the ledger)",
        ),
    ]
    if has_master:
        people += [
            (
                "p2",
                "record_id",
                "record_id IS NOT NULL AND EXISTS (SELECT 1 FROM master_people m "
                "WHERE m.tin = p2.tin AND m.record_id <> p2.record_id)",
                "record_id differs from the one on file for this TIN",
            ),
            (
                "p2",
                "record_id",
                "record_id IS NOT NULL AND EXISTS (SELECT 1 FROM master_people m "
                "WHERE m.record_id = p2.record_id AND m.tin <> p2.tin)",
                "record_id already belongs to another record on file",
            ),
        ]
    return people


def _address_checks(has_master: bool) -> list[_Check]:
    """The addresses file's checks (a table of them): a TIN must name a person in the people
    file or, when there is one, the master file."""
    year = dt.date.today().year
    known_tin = "tin IN (SELECT tin FROM p WHERE tin IS NOT NULL)"
    if has_master:
        known_tin = f"({known_tin} OR tin IN (SELECT tin FROM master_people))"
    return [
        *_tin_checks("a2"),
        (
            "a2",
            "tin",
            f"tin IS NOT NULL AND NOT {known_tin}",
            "TIN has no person in the people file or the master file",
        ),
        *_parsed("a2", "tax_year", "year_raw", "tax_year is required", "tax_year must be a year"),
        (
            "a2",
            "tax_year",
            f"tax_year < 1900 OR tax_year > {year}",
            f"tax_year must lie between 1900 and {year}",
        ),
        *_required("a2", "street", "city"),
        *_length_checks("a2", ("street", "unit", "city")),
        *_required("a2", "state"),
        ("a2", "state", f"state NOT IN ({_sql_list(US_STATES)})", "state is not a USPS state code"),
        *_parsed(
            "a2",
            "zip",
            "zip_raw",
            "zip is required",
            "zip must be 5 digits or ZIP+4 (12345 or 12345-6789)",
        ),
        ("a2", "tin", "key_first <> r", "the same TIN and tax_year appear more than once"),
    ]


def validate(
    con: duckdb.DuckDBPyConnection, people: Path, addresses: Path, has_master: bool
) -> None:
    """Raise ValidationFailed with the first problems (by file, then line) if any row is bad."""
    checks = _checks(has_master)
    # One pass over each table evaluates all of its checks (a scan per check re-read the
    # 125M address rows of a 25M-person master file fifteen times): a row's failed checks are
    # the indices whose condition is true, exactly what `WHERE cond` selects.
    parts = []
    for table in dict.fromkeys(t for t, _, _, _ in checks):
        mine = [(i, cond) for i, (t, _c, cond, _m) in enumerate(checks) if t == table]
        flags = ", ".join(f"CASE WHEN {cond} THEN {i} END" for i, cond in mine)
        any_bad = " OR ".join(f"({cond})" for _, cond in mine)
        parts.append(
            f"SELECT '{table}' AS t, r, k FROM (SELECT r, unnest([{flags}]) AS k "
            f"FROM {table} WHERE {any_bad}) WHERE k IS NOT NULL"
        )
    con.execute(f"CREATE TEMP TABLE problems AS {' UNION ALL '.join(parts)}")
    total = con.execute("SELECT count(*) FROM problems").fetchall()[0][0]
    if not total:
        return
    rows = con.execute(
        f"SELECT t, r, k FROM problems ORDER BY t DESC, r, k LIMIT {MAX_PROBLEMS}"
    ).fetchall()
    problems = []
    for t, r, k in rows:
        path = people if t == "p2" else addresses
        problems.append(Problem(path.name, line_of(path, r), checks[k][1], checks[k][3]))
    raise ValidationFailed(problems, total)


NEW_ID = "'rec-' || substr(replace(gen_random_uuid()::VARCHAR, '-', ''), 1, 16)"


def _differs(cols: tuple[str, ...], left: str, right: str) -> str:
    return " OR ".join(f"{left}.{c} IS DISTINCT FROM {right}.{c}" for c in cols)


def import_master(
    call: Call,
    people: Path,
    addresses: Path,
    *,
    kind: str = "import",
    replace: bool = False,
    extra_tables: dict[str, Path] | None = None,
) -> ImportResult:
    """Validate `people` and `addresses` and merge them into the workspace's master file.

    With `replace`, the files become the whole master file instead of being merged into it.
    """
    ws = call.ws
    with ws.lock():
        current = master.current(ws)
        if replace:
            current = master.MasterFile(None)
        con = master.connect(ws=ws)
        try:
            people_rows, people_cols = text_source(
                con,
                "src_people",
                people,
                PEOPLE_COLUMNS,
                PEOPLE_OPTIONAL,
                max_bytes=MASTER_MAX_BYTES,
            )
            address_rows, _ = text_source(
                con, "src_addresses", addresses, ADDRESS_COLUMNS, max_bytes=MASTER_MAX_BYTES
            )
            hashes = sha256_file(people), sha256_file(addresses)
            if current.exists:
                con.execute(
                    f"CREATE TEMP VIEW master_people AS SELECT * FROM "
                    f"{parquet(current.path('people'))}"
                )
                con.execute(
                    f"CREATE TEMP VIEW master_addresses AS SELECT * FROM "
                    f"{parquet(current.path('addresses'))}"
                )
            else:
                con.execute(
                    "CREATE TEMP TABLE master_people (record_id VARCHAR, tin VARCHAR, "
                    "tin_type VARCHAR, first_name VARCHAR, middle_name VARCHAR, "
                    "last_name VARCHAR, suffix VARCHAR, dob DATE)"
                )
                con.execute(
                    "CREATE TEMP TABLE master_addresses (record_id VARCHAR, tin VARCHAR, "
                    "tax_year INTEGER, street VARCHAR, unit VARCHAR, city VARCHAR, "
                    "state VARCHAR, zip VARCHAR)"
                )
            with parquet_errors(people):
                _people_view(con, "record_id" in people_cols)
            with parquet_errors(addresses):
                _address_view(con)
            validate(con, people, addresses, current.exists)
            return _merge(
                call,
                con,
                current,
                hashes,
                people_rows,
                address_rows,
                kind,
                extra_tables or {},
            )
        finally:
            master.close(con)


def _merge(
    call: Call,
    con: duckdb.DuckDBPyConnection,
    current: master.MasterFile,
    hashes: tuple[str, str],
    people_rows: int,
    address_rows: int,
    kind: str,
    extra_tables: dict[str, Path],
) -> ImportResult:
    ws = call.ws
    pa_, pc_, aa, ac = _stage(con)
    unchanged = current.exists and not (pa_ or pc_ or aa or ac) and not extra_tables
    folder: Path | None = None
    if unchanged:
        digest = current.sha256()
    else:
        folder, digest = _write_generation(con, ws, current, kind, extra_tables)
    result = ImportResult(people_rows, address_rows, pa_, pc_, aa, ac, digest, unchanged)
    record = {
        "kind": kind,
        "people_sha256": hashes[0],
        "addresses_sha256": hashes[1],
        "people_rows": people_rows,
        "address_rows": address_rows,
        "people_added": pa_,
        "people_changed": pc_,
        "addresses_added": aa,
        "addresses_changed": ac,
        "master_sha256": digest,
    }
    if kind == "import" and folder is not None:
        result.pending, result.change = True, _propose(call, current, folder, record)
        return result
    with call.transaction() as conn:
        _record_import(conn, call, record, {})
        if folder is not None:
            master.record_generation(conn, call, folder)
            master.publish(ws, folder)
    return result


def _stage(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int, int]:
    """The merged people (`new_p`, then `all_p` with the master file's others) and addresses
    (`new_a`) as temporary tables; the people added and changed, the addresses added and
    changed."""
    pcols = PEOPLE_STORED[1:]
    acols = ADDRESS_STORED[2:]
    con.execute(f"""
        CREATE TEMP TABLE new_p AS
        SELECT coalesce(p.record_id, m.record_id, {NEW_ID}) AS record_id,
               {", ".join("p." + c for c in pcols)},
               m.tin IS NULL AS added,
               m.tin IS NOT NULL AND ({_differs(pcols, "p", "m")}) AS changed
        FROM p LEFT JOIN master_people m USING (tin)""")
    con.execute(f"""
        CREATE TEMP TABLE all_p AS
        SELECT {", ".join(PEOPLE_STORED)} FROM master_people
        WHERE tin NOT IN (SELECT tin FROM new_p)
        UNION ALL SELECT {", ".join(PEOPLE_STORED)} FROM new_p""")
    con.execute(f"""
        CREATE TEMP TABLE new_a AS
        SELECT ap.record_id, a.tin, a.tax_year, {", ".join("a." + c for c in acols)},
               m.tin IS NULL AS added,
               m.tin IS NOT NULL AND ({_differs(acols, "a", "m")}) AS changed
        FROM a JOIN all_p ap USING (tin)
        LEFT JOIN master_addresses m ON m.tin = a.tin AND m.tax_year = a.tax_year""")
    pa_, pc_, aa, ac = con.execute(
        "SELECT (SELECT count(*) FILTER (added) FROM new_p), "
        "(SELECT count(*) FILTER (changed) FROM new_p), "
        "(SELECT count(*) FILTER (added) FROM new_a), "
        "(SELECT count(*) FILTER (changed) FROM new_a)"
    ).fetchall()[0]
    # What the new generation is written from is all_p and new_a: the rest goes now, so
    # its spill (gigabytes at 25M people) is not held while the generation is written.
    for drop in ("VIEW a2", "TABLE a_dup", "VIEW a", "VIEW p", "TABLE p2", "TABLE new_p"):
        con.execute(f"DROP {drop}")
    return pa_, pc_, aa, ac


def _write_generation(
    con: duckdb.DuckDBPyConnection,
    ws: Workspace,
    current: master.MasterFile,
    kind: str,
    extra_tables: dict[str, Path],
) -> tuple[Path, str]:
    """A new generation of the master file (not yet published) and its hash: the merged
    tables, the extra ones, the current population when no new one is given; discarded if any
    step fails."""
    folder = master.new_generation(ws)
    try:
        con.execute(
            f"COPY (SELECT * FROM all_p ORDER BY record_id) TO "
            f"{sqlpath(folder / 'people.parquet')} (FORMAT parquet, COMPRESSION zstd)"
        )
        con.execute(f"""COPY (
            SELECT {", ".join(ADDRESS_STORED)} FROM master_addresses m
            WHERE NOT EXISTS (SELECT 1 FROM new_a n WHERE n.tin = m.tin
                              AND n.tax_year = m.tax_year)
            UNION ALL SELECT {", ".join(ADDRESS_STORED)} FROM new_a
            ORDER BY record_id, tax_year) TO {sqlpath(folder / "addresses.parquet")}
            (FORMAT parquet, COMPRESSION zstd)""")
        for name, path in extra_tables.items():
            path.replace(folder / f"{name}.parquet")
        if current.has("population") and "population" not in extra_tables:
            con.execute(
                f"COPY (SELECT * FROM {parquet(current.path('population'))}) "
                f"TO {sqlpath(folder / 'population.parquet')} (FORMAT parquet)"
            )
        if kind == "generate":
            (folder / master.SYNTHETIC).write_text("generated by custodes\n")
        digest = master.MasterFile(folder).sha256()
    except BaseException:
        master.discard(folder)
        raise
    return folder, digest


def _propose(call: Call, current: master.MasterFile, folder: Path, record: dict[str, Any]) -> str:
    """What the gate will disclose is never one administrator's word: the generation waits,
    unpublished, for a second administrator to confirm this change by its id."""
    base = current.folder.name if current.folder is not None and current.exists else None
    payload = record | {"generation": folder.name, "base": base}
    summary = (
        f"master file import: {record['people_added']:,} people added, "
        f"{record['people_changed']:,} changed, {record['addresses_added']:,} addresses "
        f"added, {record['addresses_changed']:,} changed (new master SHA-256 "
        f"{record['master_sha256']})"
    )
    with call.transaction() as conn:
        cid = queue.propose(conn, call.actor, "import", "master file", summary, payload)
        log.append_one(
            conn,
            MasterImportProposed(change_id=cid, master_sha256=record["master_sha256"]),
            actor=call.actor,
        )
    return cid


def _record_import(
    conn: Connection, call: Call, record: dict[str, Any], confirmation: dict[str, Any]
) -> None:
    conn.execute(insert(tables.imports).values(at=dt.datetime.now(dt.UTC), **record))
    # The ledger records that the master file changed (hashes and counts only).
    log.append_one(
        conn,
        MasterImported(
            kind=record["kind"],
            people_sha256=record["people_sha256"],
            addresses_sha256=record["addresses_sha256"],
            master_sha256=record["master_sha256"],
            people_added=record["people_added"],
            people_changed=record["people_changed"],
            addresses_added=record["addresses_added"],
            addresses_changed=record["addresses_changed"],
            **confirmation,
        ),
        actor=call.actor,
    )


def _waiting_generation(ws: Any, p: dict[str, Any]) -> Path:
    """The generation an import proposal wrote, if the master file is still the one it was
    merged into and its files still hash as proposed (checked under the workspace lock)."""
    live = master.current(ws)
    if (live.folder.name if live.folder is not None and live.exists else None) != p["base"]:
        raise ConflictError(
            "The master file changed after this import was proposed; import the files again.",
            code="not_pending",
        )
    folder = master.generation(ws, p["generation"])
    if folder is None or master.MasterFile(folder).sha256() != p["master_sha256"]:
        raise IntegrityError(
            "The generation this import wrote is missing or was changed since it was "
            "proposed; import the files again.",
            code="master_corrupt",
        )
    return folder


def _apply_import(conn: Connection, call: Call, change: dict[str, Any]) -> dict[str, Any]:
    """A second administrator confirms an import: recorded first (the `imports` row and the
    `master.imported` event, in the confirmation's transaction), then, once that committed,
    the generation it wrote is published — if the master file is still the one it was merged
    into and its files still hash as proposed."""
    p = change["payload"]
    ws = call.ws
    with ws.lock():
        folder = _waiting_generation(ws, p)
    record = {k: v for k, v in p.items() if k not in ("generation", "base")}
    _record_import(
        conn, call, record, {"proposed_by": change["proposed_by"], "change_id": change["id"]}
    )
    master.record_generation(conn, call, folder)

    def publish() -> dict[str, Any]:
        with ws.lock():
            master.publish(ws, _waiting_generation(ws, p))
        return {}

    return {
        "master_sha256": p["master_sha256"],
        "generation": p["generation"],
        "after_commit": publish,
    }


queue.register("import", _apply_import)
