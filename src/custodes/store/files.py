"""Writing files: never through a symlink, never over a file that is already there, always
whole (a temporary file, then a rename or a link), and CSV cells that a spreadsheet would run
as a formula neutralised (OWASP "CSV injection": a cell beginning with = + - @, a tab or a
carriage return gets a leading apostrophe).
"""

from __future__ import annotations

import glob
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodes import failpoints
from custodes.errors import ConflictError, InputError

if TYPE_CHECKING:  # Arrow only where a table is written: the command line starts without it
    import pyarrow as pa

FORMULA_START = r"^[=+\-@\t\r]"


def out_folder(path: Path) -> Path:
    """A folder the user named for output: created if missing (its parent must exist); a
    file or a symlink in its place is refused."""
    if path.is_symlink():
        raise InputError(f"{path}: is a symbolic link; name a real folder.", code="bad_path")
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder.", code="bad_path")
    if not path.exists():
        if not path.parent.is_dir():
            raise InputError(f"{path.parent}: no such folder.", code="bad_path")
        try:
            path.mkdir(mode=0o700)
        except OSError as exc:
            raise InputError(
                f"{path}: cannot be created ({exc.strerror}).", code="bad_path"
            ) from None
    if not os.access(path, os.W_OK):
        raise InputError(f"{path}: not writable.", code="bad_path")
    return path


def out_file(path: Path, *, overwrite: bool = False) -> Path:
    """A file the user named for output: its folder must exist; an existing file is refused
    unless `overwrite` (a symlink always)."""
    if path.is_symlink():
        raise InputError(f"{path}: is a symbolic link; name a new file.", code="bad_path")
    if path.exists() and (path.is_dir() or not overwrite):
        raise ConflictError(
            f"{path}: already exists; custodes does not overwrite files (name a new one).",
            code="output_exists",
        )
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: no such folder.", code="bad_path")
    return path


def _tmp(path: Path) -> Path:
    """A staged name beside `path`, naming the process that stages it (see `_sweep`)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")


def _sweep(path: Path) -> None:
    """Once a file is in place: remove what was staged for the same name by a process that no
    longer runs (killed between staging and linking; bench/crash.py). A live writer's staged
    file is its own, left alone."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*-*.tmp"):
        pid = stale.name[len(path.name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            stale.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether the process `pid` runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _write_tmp(path: Path, data: bytes) -> Path:
    tmp = _tmp(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    failpoints.hit("file.write")
    return tmp


def _link_new(tmp: Path, path: Path) -> Path:
    """Link a whole staged file into place, never over a name that is taken (even by a racing
    writer); the staged name goes either way."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ConflictError(
            f"{path}: already exists; custodes does not overwrite files (name a new one).",
            code="output_exists",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    _sweep(path)
    return path


def write_new(path: Path, data: bytes) -> Path:
    """Write a file that must not exist yet (no-clobber even against a racing writer: the
    whole file is linked into place, which fails if the name is taken)."""
    return _link_new(_write_tmp(path, data), path)


@contextmanager
def recorded(path: Path, data: bytes, *, replace: bool = False) -> Iterator[Path]:
    """Recorded before it exists: `data` is staged in a hidden temporary file beside `path`
    while the caller's block records it (a ledger event, in a transaction that commits inside
    the block); only when the block has ended without an error does the file appear at `path`
    (linked, no-clobber; or replacing when `replace`). If the record is refused, the staged
    file is removed and nothing is left without its trail."""
    if path.is_symlink():
        raise InputError(
            f"{path}: is a symbolic link; custodes does not follow it.", code="bad_path"
        )
    tmp = _write_tmp(path, data)
    try:
        yield path
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if replace:
        os.replace(tmp, path)
        _sweep(path)
    else:
        _link_new(tmp, path)


def write_replace(path: Path, data: bytes) -> Path:
    """Write (or atomically replace) a file custodes owns; a symlink in its place is refused."""
    if path.is_symlink():
        raise InputError(
            f"{path}: is a symbolic link; custodes does not follow it.", code="bad_path"
        )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.replace(_write_tmp(path, data), path)
    _sweep(path)
    return path


def neutralise(table: pa.Table) -> pa.Table:
    """String cells that a spreadsheet would take for a formula get a leading apostrophe."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            risky = pc.match_substring_regex(col, FORMULA_START)
            col = pc.if_else(risky, pc.binary_join_element_wise("'", col, ""), col)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def csv_bytes(table: pa.Table) -> bytes:
    """A CSV file (header, comma-separated, UTF-8) with formula cells neutralised."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    pacsv.write_csv(neutralise(table), sink, pacsv.WriteOptions(include_header=True))
    data: bytes = sink.getvalue().to_pybytes()  # (pyarrow is untyped)
    return data


class _HashSink:
    """A write-only file that feeds what it is given to a hash."""

    closed = False

    def __init__(self, h: Any) -> None:
        self.h = h

    def write(self, data: Any) -> int:
        self.h.update(data)
        return len(memoryview(data))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def hash_arrow(h: Any, table: pa.Table) -> None:
    """Feed `table`'s Arrow IPC stream into the hash `h` as Arrow writes it, buffer by
    buffer: the same bytes as collecting the stream first, without holding them all."""
    import pyarrow as pa  # only where a table is hashed (the command line starts without it)

    with pa.ipc.new_stream(pa.PythonFile(_HashSink(h), mode="w"), table.schema) as writer:
        writer.write_table(table)
