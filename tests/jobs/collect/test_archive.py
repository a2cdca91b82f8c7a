"""Archive extraction refuses path traversal, links and zip bombs, and tests zips before unpacking."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from jobs.collect.archive import extract, safe_member_name
from jobs.core.errors import DataError
from tests.jobs.collect.conftest import make_tar_gz, make_zip


@pytest.mark.parametrize("maker", [make_zip, make_tar_gz])
def test_members_keep_their_relative_paths(tmp_path, maker):
    archive = tmp_path / "a"
    archive.write_bytes(maker({"top/NORMAL/a.png": b"a", "top/b.txt": b"bb", "__MACOSX/top/._a.png": b"junk"}))
    members = extract(archive, tmp_path / "out", max_bytes=1 << 20)
    assert [(m.name, m.size) for m in members] == [("top/NORMAL/a.png", 1), ("top/b.txt", 2)]
    assert (tmp_path / "out/top/NORMAL/a.png").read_bytes() == b"a"


@pytest.mark.parametrize("maker", [make_zip, make_tar_gz])
@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_path_traversal_is_refused_before_anything_is_written(tmp_path, maker, name):
    archive = tmp_path / "a"
    archive.write_bytes(maker({name: b"x"}))
    with pytest.raises(DataError, match=r"refusing to extract|escapes"):
        extract(archive, tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "evil.txt").exists()


def test_tar_links_are_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    (tmp_path / "a.tar").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="is a link"):
        extract(tmp_path / "a.tar", tmp_path / "out", max_bytes=1 << 20)


@pytest.mark.parametrize("maker", [make_zip, make_tar_gz])
def test_zip_bomb_is_refused(tmp_path, maker):
    # GIVEN 4 MiB of zeros that compress to a few kilobytes, and a 1 MiB limit
    archive = tmp_path / "bomb"
    archive.write_bytes(maker({"zeros.bin": bytes(4 << 20)}))
    assert archive.stat().st_size < 64 << 10
    with pytest.raises(DataError, match="possible zip bomb"):
        extract(archive, tmp_path / "out", max_bytes=1 << 20)


def test_zip_that_lies_about_sizes_is_caught_while_writing(tmp_path):
    # GIVEN a zip whose central directory claims a tiny size for a big member
    data = make_zip({"big.bin": bytes(2 << 20)})
    zf = zipfile.ZipFile(io.BytesIO(data))
    info = zf.infolist()[0]
    patched = bytearray(data)
    cd = data.rfind(b"PK\x01\x02")
    patched[cd + 24 : cd + 28] = (10).to_bytes(4, "little")  # uncompressed size in the central directory
    (tmp_path / "liar.zip").write_bytes(bytes(patched))
    assert info.file_size == 2 << 20
    with pytest.raises(DataError):
        extract(tmp_path / "liar.zip", tmp_path / "out", max_bytes=1 << 20)


def test_corrupt_zip_fails_its_crc_test_before_unpacking(tmp_path):
    data = bytearray(make_zip({"a.dcm": b"A" * 5000, "b.dcm": b"B" * 5000}))
    payload = data.find(b"a.dcm") + len(b"a.dcm") + 2
    data[payload] ^= 0xFF  # flip a byte inside the first member's compressed data
    (tmp_path / "c.zip").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"corrupt|CRC"):
        extract(tmp_path / "c.zip", tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "out").exists()


def test_not_an_archive(tmp_path):
    (tmp_path / "x").write_bytes(b"plain text")
    with pytest.raises(DataError, match="not a zip or tar"):
        extract(tmp_path / "x", tmp_path / "out", max_bytes=1 << 20)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a/b.png", "a/b.png"), ("./a/./b.png", "a/b.png"), ("a\\b.png", "a/b.png"), ("dir/", None),
     ("x/.DS_Store", None), ("__MACOSX/a", None)],
)  # fmt: skip
def test_safe_member_name(name, expected):
    assert safe_member_name(name, "t.zip") == expected
