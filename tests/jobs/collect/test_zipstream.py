"""Unpacking a ZIP as it streams: same files as zipfile, any chunking, resumable, and as strict as extract()."""

from __future__ import annotations

import hashlib
import io
import os
import random
import zipfile

import pytest

from jobs.collect.zipstream import NotStreamable, ZipStream
from jobs.core.errors import DataError
from tests.jobs.collect.conftest import Unseekable

MEMBERS = {
    "a/1.dcm": os.urandom(70_000),
    "a/2.dcm": b"compressible " * 9_000,
    "b/empty.txt": b"",
    "LICENSE": b"CC BY 4.0\n",
    "__MACOSX/a/._1.dcm": b"junk",
}


def build(members=MEMBERS, method=zipfile.ZIP_DEFLATED, descriptors=False, zip64=False, folders=()) -> bytes:
    out = Unseekable() if descriptors else io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for folder in folders:
            zf.mkdir(folder)
        for name, data in members.items():
            with zf.open(name, "w", force_zip64=zip64) as fh:
                fh.write(data)
    return bytes(out.data) if descriptors else out.getvalue()


def feed(stream: ZipStream, data: bytes, sizes=None, start: int = 0) -> None:
    rng = random.Random(7)
    pos = start
    while pos < len(data):
        n = sizes if isinstance(sizes, int) else rng.randint(1, 9_000)
        stream.write(data[pos : pos + n])
        pos += n


def kept(members=MEMBERS) -> dict[str, bytes]:
    return {k: v for k, v in members.items() if not k.startswith("__MACOSX/")}


def check(result, dest, members=MEMBERS) -> None:
    expected = kept(members)
    assert [m.name for m in result] == sorted(expected)
    for m in result:
        assert m.path == dest / m.name
        assert m.path.read_bytes() == expected[m.name]
        assert (m.size, m.sha256) == (len(expected[m.name]), hashlib.sha256(expected[m.name]).hexdigest())
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == sorted(expected)


@pytest.mark.parametrize(
    ("method", "descriptors", "zip64"),
    [(zipfile.ZIP_STORED, False, False), (zipfile.ZIP_DEFLATED, False, False), (zipfile.ZIP_DEFLATED, True, False),
     (zipfile.ZIP_DEFLATED, False, True), (zipfile.ZIP_STORED, False, True), (zipfile.ZIP_DEFLATED, True, True)],
)  # fmt: skip
@pytest.mark.parametrize("chunk", [1, 13, None, 1 << 20])
def test_members_match_zipfile_whatever_the_chunking(tmp_path, method, descriptors, zip64, chunk):
    # GIVEN a zip written stored or deflated, with or without data descriptors and ZIP64 fields
    data = build(method=method, descriptors=descriptors, zip64=zip64, folders=["empty-folder"])
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    # WHEN it arrives in chunks of any size
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    feed(stream, data, chunk)
    # THEN the same files come out, with their sizes and SHA-256, folders and OS noise left out
    check(stream.finish(), tmp_path / "out")


@pytest.mark.parametrize("cut_at", [3, 40, 1_000, 60_000, 75_000, -30, -5])
def test_a_resumed_stream_continues_from_the_entry_it_was_reading(tmp_path, cut_at):
    # GIVEN a download that broke off somewhere (in a header, a member's data, the central directory)
    data = build(descriptors=True)
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    feed(stream, data[:cut_at])
    # WHEN it rewinds and the rest arrives from the offset it names
    offset = stream.rewind()
    assert 0 <= offset <= len(data[:cut_at])
    if cut_at in (1_000, 60_000):  # inside the first member: its partial file is gone
        assert offset == 0 and not any(p.is_file() for p in (tmp_path / "out").rglob("*"))
    feed(stream, data, start=offset)
    # THEN the result is the same as an uninterrupted download
    check(stream.finish(), tmp_path / "out")


def test_restart_drops_everything(tmp_path):
    data = build()
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    feed(stream, data[: len(data) // 2])
    stream.restart()
    assert not (tmp_path / "out").exists()
    feed(stream, data)
    check(stream.finish(), tmp_path / "out")


def _flip_in_member(data: bytes, name: bytes) -> bytes:
    corrupt = bytearray(data)
    corrupt[data.find(name) + len(name) + 100] ^= 0xFF
    return bytes(corrupt)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_flipped_byte_fails_the_crc_and_abort_leaves_nothing(tmp_path, method):
    data = _flip_in_member(build(method=method), b"a/1.dcm")
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    with pytest.raises(DataError, match=r"t.zip: not a valid zip .*the download is corrupt"):
        feed(stream, data)
        stream.finish()
    stream.abort()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("keep", [10, 30, 0.5, -23])
def test_a_truncated_zip_is_corrupt(tmp_path, keep):
    data = build()
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    feed(stream, data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(DataError, match="corrupt"):
        stream.finish()


@pytest.mark.parametrize("field", ["crc", "name", "count"])
def test_a_central_directory_that_disagrees_with_the_members_is_corrupt(tmp_path, field):
    data = bytearray(build(method=zipfile.ZIP_STORED))
    cd = data.find(b"PK\x01\x02")
    if field == "crc":
        data[cd + 16] ^= 0x01
    elif field == "name":
        data[cd + 46] ^= 0x01
    else:  # the end record claims nothing, and the central directory loses its last entry
        data[data.rfind(b"PK\x01\x02")] = 0
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    feed(stream, bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        stream.finish()


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_path_traversal_is_refused_before_anything_is_written(tmp_path, name):
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    with pytest.raises(DataError, match=r"refusing to extract|escapes"):
        feed(stream, build({"ok.txt": b"fine", name: b"x"}))
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()


def test_a_symbolic_link_in_the_central_directory_is_refused(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    feed(stream, out.getvalue())
    with pytest.raises(DataError, match="symbolic link"):
        stream.finish()


@pytest.mark.parametrize("descriptors", [False, True])
def test_zip_bomb_is_refused_while_inflating(tmp_path, descriptors):
    # GIVEN 4 MiB of zeros that deflate to a few kilobytes, and a 1 MiB limit (declared up front, or not)
    data = build({"zeros.bin": bytes(4 << 20)}, descriptors=descriptors)
    assert len(data) < 64 << 10
    stream = ZipStream(tmp_path / "out", 1 << 20, "t.zip")
    with pytest.raises(DataError, match="possible zip bomb"):
        feed(stream, data, 1 << 20)


def test_not_a_zip(tmp_path):
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    with pytest.raises(DataError, match="not a zip archive"):
        feed(stream, b"<html>maintenance</html>")


@pytest.mark.parametrize(
    ("members", "method", "descriptors"),
    [({"a.bin": b"x" * 100}, zipfile.ZIP_BZIP2, False), ({"a.bin": b"x" * 100}, zipfile.ZIP_STORED, True)],
)
def test_zips_that_cannot_be_read_front_to_back_say_so(tmp_path, members, method, descriptors):
    # a compression method other than stored/deflate, or a stored member whose size comes after it
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    with pytest.raises(NotStreamable):
        feed(stream, build(members, method=method, descriptors=descriptors))


def test_an_empty_zip_has_no_members(tmp_path):
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    feed(stream, build({}))
    assert stream.finish() == []


def test_a_member_named_twice_is_refused(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("a.dcm", b"first")
        zf.writestr("a.dcm", b"second")
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    with pytest.raises(DataError, match="appears twice"):
        feed(stream, out.getvalue())


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_local_header_that_lies_about_the_compressed_size_is_corrupt(tmp_path, method):
    # GIVEN a member whose local header claims 10 more compressed bytes than it has (so it swallows the next one)
    data = bytearray(build({"a.bin": os.urandom(5000), "b.bin": b"b" * 5000}, method=method))
    size = int.from_bytes(data[18:22], "little")
    data[18:22] = (size + 10).to_bytes(4, "little")
    stream = ZipStream(tmp_path / "out", 1 << 30, "t.zip")
    with pytest.raises(DataError, match="corrupt"):
        feed(stream, bytes(data))
        stream.finish()
