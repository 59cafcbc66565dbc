"""Writing files: no symlinks followed, nothing overwritten, CSV formulas neutralised."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pyarrow as pa
import pytest

from custodes.errors import ConflictError, InputError
from custodes.store import files


def test_csv_cells_never_run_as_formulas() -> None:
    data = files.csv_bytes(
        pa.table({"a": ["=1+2", "+A1", "-x", "@SUM(1)", "\tz", "\rq", "ok", None]})
    )
    cells = [(r[0] if r else "") for r in csv.reader(io.StringIO(data.decode(), newline=""))][1:]
    assert cells == ["'=1+2", "'+A1", "'-x", "'@SUM(1)", "'\tz", "'\rq", "ok", ""]


def test_every_csv_custodes_writes_goes_through_the_one_writer() -> None:
    """No other code writes CSV (DuckDB COPY ... CSV, csv.writer, write_csv)."""
    import custodes

    src = Path(custodes.__file__).parent
    offenders = []
    for path in src.rglob("*.py"):
        if path.name == "files.py" and path.parent.name == "store":
            continue
        text = path.read_text()
        for needle in ("(HEADER", "csv.writer(", "csv.DictWriter(", "write_csv("):
            if needle in text:
                offenders.append(f"{path.relative_to(src)}: {needle}")
    assert not offenders, offenders


def test_write_new_never_overwrites_or_follows_links(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious")
    with pytest.raises(ConflictError):
        files.write_new(target, b"x")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ConflictError):
        files.write_new(link, b"x")
    with pytest.raises(InputError):
        files.write_replace(link, b"x")
    assert target.read_text() == "precious"
    files.write_new(tmp_path / "new", b"ok")
    assert (tmp_path / "new").read_bytes() == b"ok"
    assert os.stat(tmp_path / "new").st_mode & 0o077 == 0


def test_output_folders_and_files_are_checked(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError) as exc:
        files.out_folder(tmp_path / "f")
    assert exc.value.code == "bad_path"
    with pytest.raises(InputError) as exc:
        files.out_folder(tmp_path / "missing" / "deeper")
    assert exc.value.code == "bad_path"
    with pytest.raises(InputError) as exc:
        files.out_file(tmp_path / "missing" / "x.csv")
    assert exc.value.code == "bad_path"
    assert files.out_folder(tmp_path / "made").is_dir()
