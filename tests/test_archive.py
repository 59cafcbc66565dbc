"""Uploaded folders (zip or tar archives) unpacked by the one core helper: the folder inside,
owner-only, gone afterwards; every hostile shape refused with `bad_archive`."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from custodes.errors import InputError
from custodes.store import archive


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def test_the_folder_inside_owner_only_and_removed_after() -> None:
    with archive.unpacked(_zip({"rules/a.yaml": b"a", "rules/sub/b.yaml": b"b"}), "x") as d:
        assert d.name == "rules" and (d / "sub" / "b.yaml").read_bytes() == b"b"
        assert stat.S_IMODE((d / "a.yaml").stat().st_mode) == 0o600
        root = d.parent
    assert not root.exists()
    # without a single top-level folder, the archive's root is the folder
    with archive.unpacked(_zip({"a.yaml": b"a", "b.yaml": b"b"}), "x") as d:
        assert sorted(p.name for p in d.iterdir()) == ["a.yaml", "b.yaml"]


def test_a_tar_gz_reads_the_same() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("export/checkpoint")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    buf.seek(0)
    with archive.unpacked(buf, "x") as d:
        assert (d / "checkpoint").read_bytes() == b"abc"


@pytest.mark.parametrize(
    "members",
    [{"../escape": b"x"}, {"/etc/passwd": b"x"}, {"a/../../escape": b"x"}, {"C:/x": b"x"}],
)
def test_paths_outside_the_folder_are_refused(members: dict[str, bytes], tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc, archive.unpacked(_zip(members), "rule-set archive"):
        pass
    assert exc.value.code == "bad_archive" and "outside" in exc.value.message


def test_bombs_floods_links_and_junk_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_BYTES", 1000)
    big = _zip({"a": b"0" * 600, "b": b"0" * 600})  # compresses well, unpacks too large
    with pytest.raises(InputError, match="more than 1,000 bytes"), archive.unpacked(big, "x"):
        pass
    monkeypatch.setattr(archive, "MAX_FILES", 3)
    many = _zip({f"f{i}": b"" for i in range(4)})
    with pytest.raises(InputError, match="more than 3 files"), archive.unpacked(many, "x"):
        pass
    link = io.BytesIO()
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("evil")
        info.external_attr = 0o120777 << 16  # a symbolic link
        zf.writestr(info, "/etc/passwd")
    link.seek(0)
    with pytest.raises(InputError, match="link"), archive.unpacked(link, "x"):
        pass
    for junk in (b"not an archive at all", b"PK\x03\x04 torn", b"\x1f\x8b\x08 torn gzip"):
        with pytest.raises(InputError) as exc, archive.unpacked(io.BytesIO(junk), "x"):
            pass
        assert exc.value.code == "bad_archive"
