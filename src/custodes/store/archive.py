"""Folders that arrive as one uploaded file (a rule-set proposal, a ledger export to check):
a zip or tar archive unpacked into a private temporary folder, with the archive's own paths
never trusted.

The standard library does the reading (zipfile; tarfile with its "data" filter, PEP 706);
what is written here is the policy no library applies for us: no absolute path, no `..`, no
link or device, at most MAX_FILES members and MAX_BYTES unpacked (counted while copying, so a
member that lies about its size is caught), everything owner-only, and the folder removed when
the caller is done. An archive holding a single top-level folder is read as that folder, so
both `zip -r x.zip folder` and `cd folder && zip -r ../x.zip .` work.
"""

from __future__ import annotations

import lzma
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from custodes import settings
from custodes.errors import InputError

MAX_BYTES = settings.integer("CUSTODES_MAX_ARCHIVE", 1 << 30)
MAX_FILES = 100_000
CHUNK = 1 << 20


def _bad(what: str, why: str) -> InputError:
    return InputError(f"The uploaded {what} {why}", code="bad_archive")


def _safe_name(name: str, what: str) -> PurePosixPath | None:
    """The member's relative path, or None for the archive's own root entry."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise _bad(what, "names a path outside its folder (absolute or with '..').")
    parts = [x for x in p.parts if x not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _copy(src: IO[bytes], dest: Path, budget: list[int], what: str) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise _bad(what, f"unpacks to more than {MAX_BYTES:,} bytes.")
            out.write(chunk)


def _unzip(fh: IO[bytes], root: Path, what: str) -> None:
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_FILES:
            raise _bad(what, f"holds more than {MAX_FILES:,} files.")
        budget = [MAX_BYTES]
        for info in infos:
            rel = _safe_name(info.filename, what)
            mode = (info.external_attr >> 16) & 0o170000
            if mode and mode not in (0o100000, 0o040000):
                raise _bad(what, "holds a link or a special file; only files and folders.")
            if rel is None:
                continue
            target = root.joinpath(*rel.parts)
            if info.is_dir():
                target.mkdir(mode=0o700, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with zf.open(info) as src:
                _copy(src, target, budget, what)


def _untar(fh: IO[bytes], root: Path, what: str) -> None:
    with tarfile.open(fileobj=fh, mode="r:*") as tf:
        members = []
        for n, member in enumerate(tf):
            if n >= MAX_FILES:
                raise _bad(what, f"holds more than {MAX_FILES:,} files.")
            if not (member.isfile() or member.isdir()):
                raise _bad(what, "holds a link or a special file; only files and folders.")
            rel = _safe_name(member.name, what)
            if rel is not None:
                members.append((rel, member))
        budget = [MAX_BYTES]
        for rel, member in members:
            target = root.joinpath(*rel.parts)
            if member.isdir():
                target.mkdir(mode=0o700, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            src = tf.extractfile(member)
            if src is None:  # pragma: no cover - isfile() members always have data
                continue
            with src:
                _copy(src, target, budget, what)


def _kind(fh: IO[bytes]) -> str | None:
    head = fh.read(262)
    fh.seek(0)
    if zipfile.is_zipfile(fh):
        fh.seek(0)
        return "zip"
    fh.seek(0)
    if head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar" or head[:3] in (b"BZh", b"\xfd7z"):
        return "tar"
    return None


@contextmanager
def unpacked(fh: IO[bytes], what: str) -> Iterator[Path]:
    """The folder inside an uploaded zip or tar archive, for the duration of the `with`.
    `what` names the upload in messages ("rule-set archive")."""
    kind = _kind(fh)
    if kind is None:
        raise _bad(what, "is not a zip or tar archive.")
    root = Path(tempfile.mkdtemp(prefix="custodes-upload-"))  # mode 0700
    try:
        try:
            (_unzip if kind == "zip" else _untar)(fh, root, what)
        # What the standard library raises on a damaged or unusual archive, beyond its own
        # error classes: a zip of a version or compression method it does not read
        # (NotImplementedError), an encrypted member (RuntimeError), a broken deflate, bzip2
        # or xz stream (zlib.error, OSError, lzma.LZMAError) — each found by fuzzing.
        except (
            zipfile.BadZipFile,
            tarfile.TarError,
            EOFError,
            OSError,
            ValueError,
            NotImplementedError,
            RuntimeError,
            zlib.error,
            lzma.LZMAError,
        ) as exc:
            if isinstance(exc, FileExistsError):
                raise _bad(what, "names the same file twice.") from None
            raise _bad(what, "is damaged or truncated.") from None
        entries = list(root.iterdir())
        folder = entries[0] if len(entries) == 1 and entries[0].is_dir() else root
        yield folder
    finally:
        shutil.rmtree(root, ignore_errors=True)
