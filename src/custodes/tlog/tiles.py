"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles@v0.1.0): paths, entry bundles, tile files.

A level-L tile holds 256 hashes; hash i of tile N at level L is the perfect subtree of height
8·L at index N·256 + i (level 0: leaf hashes). Partial tiles (width 1..255) end in `.p/W`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from custodes.tlog.tree import HASH_SIZE, Perfect

TILE_WIDTH = 256
TILE_HEIGHT = 8


class TileError(ValueError):
    """A tile or bundle is missing, has the wrong size or does not parse."""


def encode_index(n: int) -> str:
    """1234067 -> x001/x234/067; 5 -> 005."""
    digits = f"{n:d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int | str, n: int, width: int = TILE_WIDTH) -> str:
    base = f"tile/{level}/{encode_index(n)}"
    return base if width == TILE_WIDTH else f"{base}.p/{width}"


def tiles_for(size: int, level: int) -> Iterator[tuple[int, int]]:
    """(index, width) of every tile at `level` a tree of `size` needs (full then partial)."""
    count = size >> (TILE_HEIGHT * level)
    full, partial = divmod(count, TILE_WIDTH)
    for n in range(full):
        yield n, TILE_WIDTH
    if partial:
        yield full, partial


def levels_for(size: int) -> int:
    level = 0
    while size >> (TILE_HEIGHT * level):
        level += 1
    return level


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > 0xFFFF:
            raise TileError("an entry is longer than 65,535 bytes")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def decode_bundle(data: bytes, expected: int, where: str) -> list[bytes]:
    entries, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileError(f"{where}: truncated entry length")
        (n,) = struct.unpack(">H", data[pos : pos + 2])
        if pos + 2 + n > len(data):
            raise TileError(f"{where}: truncated entry")
        entries.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    if len(entries) != expected:
        raise TileError(f"{where}: holds {len(entries)} entries, expected {expected}")
    return entries


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_tiles(folder: Path, size: int, perfect: Perfect, entries: Iterator[bytes]) -> int:
    """Write every hash tile and entry bundle for a tree of `size`. Returns files written."""
    written = 0
    for level in range(levels_for(size)):
        for n, width in tiles_for(size, level):
            data = b"".join(perfect(TILE_HEIGHT * level, n * TILE_WIDTH + i) for i in range(width))
            _write_atomic(folder / tile_path(level, n, width), data)
            written += 1
    for n, width in tiles_for(size, 0):
        bundle = encode_bundle(next(entries) for _ in range(width))
        _write_atomic(folder / tile_path("entries", n, width), bundle)
        written += 1
    return written


def write_file(folder: Path, name: str, data: bytes) -> None:
    _write_atomic(folder / name, data)


def read_tile(folder: Path, level: int, n: int, width: int) -> list[bytes]:
    path = folder / tile_path(level, n, width)
    if not path.exists():
        raise TileError(f"{tile_path(level, n, width)}: missing")
    data = path.read_bytes()
    if len(data) != width * HASH_SIZE:
        raise TileError(
            f"{tile_path(level, n, width)}: {len(data)} bytes, expected {width * HASH_SIZE}"
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def read_entries(folder: Path, size: int) -> Iterator[bytes]:
    for n, width in tiles_for(size, 0):
        name = tile_path("entries", n, width)
        path = folder / name
        if not path.exists():
            raise TileError(f"{name}: missing")
        yield from decode_bundle(path.read_bytes(), width, name)


def parse_tile_path(path: str) -> tuple[int | str, int, int]:
    """`L/x001/234[.p/W]` or `entries/...` -> (level or "entries", index, width); the
    inverse of `tile_path`, refusing anything `tile_path` would not have written."""
    head, _, rest = path.partition("/")
    width = TILE_WIDTH
    if ".p/" in rest:
        rest, _, w = rest.partition(".p/")
        if not (w.isascii() and w.isdigit()) or w != str(int(w)) or not 1 <= int(w) < TILE_WIDTH:
            raise TileError("a partial tile's width is 1 to 255")
        width = int(w)
    parts = rest.split("/")
    if not parts or any(len(p) != (4 if i < len(parts) - 1 else 3) for i, p in enumerate(parts)):
        raise TileError("not a tile index")
    if any(not p.startswith("x") for p in parts[:-1]):
        raise TileError("not a tile index")
    digits = "".join(p.removeprefix("x") for p in parts)
    if not (digits.isascii() and digits.isdigit()):
        raise TileError("not a tile index")
    n = int(digits)
    level: int | str
    if head == "entries":
        level = head
    elif head.isascii() and head.isdigit() and head == str(int(head)) and int(head) < 64:
        level = int(head)
    else:
        raise TileError("not a tile level")
    if tile_path(level, n, width) != f"tile/{path}":
        raise TileError("not the canonical path of a tile")
    return level, n, width
