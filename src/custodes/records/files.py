"""Reading tabular input files (CSV or Parquet) as text columns, with precise refusals.

Every column is read as text so that validation, not the reader, decides what a value means
(a TIN with a leading zero stays a TIN). Error messages name the file and line but never quote
a value, because values are personal data.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from custodes.errors import InputError
from custodes.ledger.files import sha256_file  # noqa: F401  (re-exported for the rooms)
from custodes.store.sql import ident
from custodes.store.sql import path as sqlpath

ROW = "_row"
# Refuse absurd files before reading them; configurable per call.
DEFAULT_MAX_BYTES = 4 << 30


def file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputError(
        "Unsupported file type (use .csv or .parquet).",
        code="unsupported_file_type",
    )


def _first_bad_csv_line(path: Path, ncols: int) -> tuple[int, str] | None:
    """Locate the first line that is not UTF-8, or the line where the first record with the
    wrong number of fields (or an unclosed quote) begins."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno, "is not valid UTF-8 text (save the file as UTF-8)"
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, strict=True)
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return None
            except csv.Error:
                return start, "opens a quoted field that is never closed"
            if fields and len(fields) != ncols:
                if reader.line_num > start:
                    return start, "opens a quoted field that runs over several lines"
                return start, f"has {len(fields)} fields, the header has {ncols}"


def _csv_header(path: Path) -> list[str]:
    """The header record (a quoted name may span lines; it is still one record)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
    try:
        names = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:  # a name over the csv module's field limit (128 KiB), or a stray NUL
        raise InputError(
            f"{path.name}:1: the header line is not a CSV header (a name far too long, or an "
            "unclosed quote).",
            code="bad_csv",
        ) from None
    if any(any("\udc80" <= ch <= "\udcff" for ch in n) for n in names):
        raise InputError(
            f"{path.name}:1: the header is not valid UTF-8 text (save the file as UTF-8).",
            code="bad_encoding",
        )
    return [n.strip() for n in names]


def read_text_table(
    path: Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    *,
    allow_extra: bool = False,
    extra_names: re.Pattern[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_rows: int | None = None,
) -> pa.Table:
    """Read a CSV or Parquet file into an Arrow table of text columns plus a 1-based `_row`.

    Refuses a missing file, a file over `max_bytes`, a wrong encoding, ragged rows, missing
    required columns and (unless `allow_extra`) unknown columns, each with one clear message.
    A Parquet file is compressed, so its size says little of what it holds: it is refused
    when its metadata declares more than `max_rows` rows or more than `max_bytes` bytes
    uncompressed, before anything is decoded, and while it is decoded (batch by batch) once
    the decoded text passes `max_bytes` (a dictionary-encoded column decodes to far more than
    its pages hold). A CSV file over `max_rows` rows is refused too.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file.", code="file_not_found")
    if not path.is_file():
        raise InputError(f"{path}: not a file.", code="file_not_found")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(
            f"{path.name}: {size} bytes is larger than the limit of {max_bytes}.",
            code="file_too_large",
        )
    kind = file_kind(path)
    if kind == "csv":
        if size == 0:
            raise InputError(
                f"{path.name}: the file is empty (a header line is required).", code="empty_file"
            )
        header = _csv_header(path)
        _check_columns(path, header, required, optional, allow_extra, extra_names)
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=16 << 20),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in header},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError):
            where = _first_bad_csv_line(path, len(header))
            if where is None:
                raise InputError(f"{path.name}: not a readable CSV file.", code="bad_csv") from None
            line, what = where
            code = "bad_encoding" if "UTF-8" in what else "bad_csv"
            raise InputError(f"{path.name}:{line}: the line {what}.", code=code) from None
        table = table.rename_columns([n.strip() for n in table.column_names])
        _check_rows(path, table.num_rows, max_rows)
        _check_columns(path, table.column_names, required, optional, allow_extra, extra_names)
    else:
        table = _read_parquet(path, max_bytes, max_rows)
        _check_columns(path, table.column_names, required, optional, allow_extra, extra_names)
        cols = []
        for name in table.column_names:
            col = table.column(name)
            if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
                try:
                    col = pc.cast(col, pa.string())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise InputError(
                        f"{path.name} [{name}]: column type {col.type} cannot be read as text.",
                        code="bad_column_type",
                    ) from None
            cols.append(col)
        table = pa.table(cols, names=table.column_names)
    return table.append_column(ROW, pa.array(range(1, table.num_rows + 1), pa.int64()))


# Arrow types a Parquet column may have for `text_source` to read it as text in DuckDB; a file
# with any other type goes through `read_text_table`, whose refusals name it.
_DUCKDB_TEXT_TYPES = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_decimal,
    pa.types.is_date,
    pa.types.is_boolean,
)


def text_source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[int, list[str]]:
    """`read_text_table`'s table as the view `name` in DuckDB, and its rows and columns.

    A Parquet file of plain columns is not decoded into Python: its metadata is checked (the
    rows, the declared uncompressed size against `max_bytes`, the columns) and DuckDB reads it
    as text with its row numbers, under the connection's memory limit, spilling past it (a
    master file of 25M people decodes to more than this machine could hold in Python). A CSV
    file, or a Parquet file with another column type, is read by `read_text_table` and
    registered. A page that cannot be decoded is refused when the view is read (`bad_parquet`,
    see `parquet_errors`)."""
    if file_kind(path) == "parquet" and path.is_file() and path.stat().st_size <= max_bytes:
        try:
            with pq.ParquetFile(path) as pf:
                meta, schema = pf.metadata, pf.schema_arrow
        except (pa.ArrowException, OSError, UnicodeDecodeError):
            raise InputError(
                f"{path.name}: not a readable Parquet file.", code="bad_parquet"
            ) from None
        if all(any(ok(f.type) for ok in _DUCKDB_TEXT_TYPES) for f in schema):
            declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if declared > max_bytes:
                raise _too_large(path, max_bytes)
            _check_columns(path, schema.names, required, optional, False)
            cols = ", ".join(f"CAST({ident(c)} AS VARCHAR) AS {ident(c)}" for c in schema.names)
            con.execute(
                f"CREATE TEMP VIEW {ident(name)} AS SELECT {cols}, "
                f"CAST(file_row_number + 1 AS BIGINT) AS {ROW} "
                f"FROM read_parquet({sqlpath(path)}, file_row_number = true)"
            )
            return meta.num_rows, list(schema.names)
    # what is decoded into Python stays within the uploads' bound
    table = read_text_table(path, required, optional, max_bytes=min(max_bytes, DEFAULT_MAX_BYTES))
    con.register(name, table)
    return table.num_rows, [c for c in table.column_names if c != ROW]


@contextlib.contextmanager
def parquet_errors(path: Path) -> Iterator[None]:
    """A page of `path` that DuckDB cannot decode while a `text_source` view is read becomes
    `bad_parquet`, as `read_text_table` reports it."""
    try:
        yield
    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
        raise
    except duckdb.Error:  # a damaged page raises the base class itself ("don't know what type")
        raise InputError(f"{path.name}: not a readable Parquet file.", code="bad_parquet") from None


def _check_rows(path: Path, rows: int, max_rows: int | None) -> None:
    if max_rows is not None and rows > max_rows:
        raise InputError(
            f"{path.name}: {rows:,} rows is more than the limit of {max_rows:,}.",
            code="too_many_rows",
        )


def _too_large(path: Path, max_bytes: int) -> InputError:
    return InputError(
        f"{path.name}: decodes to more than the limit of {max_bytes:,} bytes.",
        code="file_too_large",
    )


def _read_parquet(path: Path, max_bytes: int, max_rows: int | None) -> pa.Table:
    """The file's table, refused by its metadata (rows, uncompressed bytes) before decoding
    and by what it decodes to (counted per batch) while decoding."""
    # A damaged file fails in Arrow (any ArrowException) or the OS wherever it is read — its
    # footer, its schema, a page — or in decoding its metadata's names (UnicodeDecodeError: a
    # column path that is not UTF-8, found by fuzzing).
    try:
        return _read_parquet_checked(path, max_bytes, max_rows)
    except (pa.ArrowException, OSError, UnicodeDecodeError):
        raise InputError(f"{path.name}: not a readable Parquet file.", code="bad_parquet") from None


def _read_parquet_checked(path: Path, max_bytes: int, max_rows: int | None) -> pa.Table:
    with pq.ParquetFile(path) as pf:
        meta = pf.metadata
        _check_rows(path, meta.num_rows, max_rows)
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if declared > max_bytes:
            raise _too_large(path, max_bytes)
        # A dictionary-encoded column (pyarrow keeps the Arrow schema, so it reads back as a
        # dictionary) is decoded batch by batch and counted decoded: the budget is what the
        # table will hold, and no more than one batch past it is ever in memory.
        schema = pa.schema(
            f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
            for f in pf.schema_arrow
        )
        batches, decoded = [], 0
        for batch in pf.iter_batches(batch_size=1 << 16):
            batch = pa.RecordBatch.from_arrays(
                [c.cast(t) for c, t in zip(batch.columns, schema.types, strict=True)],
                schema=schema,
            )
            decoded += batch.nbytes
            if decoded > max_bytes:
                raise _too_large(path, max_bytes)
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=schema)


def _check_columns(
    path: Path,
    header: list[str],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    allow_extra: bool,
    extra_names: re.Pattern[str] | None = None,
) -> None:
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(
            f"{path.name}: column(s) named twice: {', '.join(dupes)}.", code="duplicate_columns"
        )
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{path.name}: missing required column(s): {', '.join(missing)} "
            f"(expected: {','.join(required)}).",
            code="missing_columns",
        )
    extra = [c for c in header if c not in required and c not in optional]
    if allow_extra and extra_names is not None:
        bad = [i + 1 for i, c in enumerate(header) if c in extra and not extra_names.fullmatch(c)]
        if bad:
            raise InputError(
                f"{path.name}:1: column {bad[0]}'s name is not allowed (an extra column is named "
                "with lower-case letters, digits and '_').",
                code="bad_column_name",
            )
    if not allow_extra and extra:
        raise InputError(
            f"{path.name}: unknown column(s): {', '.join(extra)} "
            f"(expected exactly: {','.join(required + optional)}).",
            code="unknown_columns",
        )


def line_of(path: Path, row: int) -> int:
    """The line number a data row sits on: CSV rows follow the header line."""
    return row + 1 if file_kind(path) == "csv" else row
