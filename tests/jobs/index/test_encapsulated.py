"""Encapsulated pixel data is walked item by item and each frame's codestream header checked, without decoding:
what would fail train's decode is refused with a reason; intact files pass. Files larger than the bytes the
index keeps are walked through ranged reads, on both store backends."""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from jobs.core.store import open_store
from jobs.index import inspection
from jobs.index.dicom_header import UnusableDicom, read_header
from jobs.index.inspection import ObjectReader, Task, inspect
from jobs.ml.preprocess import Preprocessing
from tests.jobs.index.conftest import put_raw

_PIXEL_DATA = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"


def _items(data: bytes) -> list[tuple[int, int]]:
    """(item header offset, length) of the offset table, each fragment and the delimiter."""
    pos, found = data.index(_PIXEL_DATA) + len(_PIXEL_DATA), []
    while True:
        _, elem, length = struct.unpack("<HHI", data[pos : pos + 8])
        found.append((pos, length))
        if elem == 0xE0DD:
            return found
        pos += 8 + length


def _edit(name: str, change: Callable[[bytearray, list[tuple[int, int]]], bytes | None]) -> bytes:
    data = bytearray(Path(get_testdata_file(name)).read_bytes())
    out = change(data, _items(bytes(data)))
    return bytes(data) if out is None else out


def _put(data: bytearray, at: int, fmt: str, *values: int) -> None:
    data[at : at + struct.calcsize(fmt)] = struct.pack(fmt, *values)


def _frame(items: list[tuple[int, int]], n: int = 1) -> int:
    """Offset of the n-th fragment's first byte."""
    return items[n][0] + 8


LENIENT = "decodes"
"""Cases train's decoders get through anyway, returning what is there (a cut codestream, one byte plane as the
whole image): corrupt all the same, and quarantined as such."""

CASES = {
    "cut inside a fragment": (
        "JPEG2000.dcm",
        lambda d, items: bytes(d[: items[1][0] + 100]),
        "truncated: encapsulated pixel data item at byte",
        LENIENT,
    ),
    "no sequence delimiter": (
        "JPEG2000.dcm",
        lambda d, items: bytes(d[: items[-1][0]]),
        "truncated: the file ends inside the encapsulated pixel data",
    ),
    "a fragment longer than the file": (
        "JPEG2000.dcm",
        lambda d, items: _put(d, items[1][0] + 4, "<I", items[1][1] + 1000),
        "damaged encapsulated pixel data: encapsulated pixel data item at byte",
        LENIENT,
    ),
    "an item tag damaged": (
        "SC_rgb_jpeg_gdcm.dcm",
        lambda d, items: _put(d, items[1][0], "<HH", 0x0000, 0x0000),
        "damaged encapsulated pixel data: tag (0000,0000) at byte",
    ),
    "no offset table": (
        "SC_rgb_jpeg_gdcm.dcm",
        lambda d, items: bytes(d[: items[0][0]] + d[items[1][0] :]),  # the first fragment taken for the table
        "inconsistent pixel description: encapsulated pixel data holds no fragment for 1 frame(s)",
    ),
    "JPEG lossless frame width differs from Columns": (
        "SC_rgb_jpeg_gdcm.dcm",
        lambda d, items: _put(d, bytes(d).index(b"\xff\xc3", _frame(items)) + 7, ">H", 99),
        "inconsistent pixel description: frame 1's codestream has columns 99, the header says 100",
    ),
    "JPEG 2000 frame with another height": (
        "JPEG2000.dcm",
        lambda d, items: _put(d, _frame(items) + 12, ">I", 1000),  # SIZ Ysiz
        "inconsistent pixel description: frame 1's codestream has rows 1000, the header says 1024",
    ),
    "JPEG 2000 frame without its SIZ marker": (
        "JPEG2000.dcm",
        lambda d, items: _put(d, _frame(items) + 2, ">H", 0xFF90),
        "damaged codestream: frame 1 does not start with a JPEG 2000 SOC and SIZ marker",
    ),
    "RLE frame with a segment missing": (
        "MR_small_RLE.dcm",
        lambda d, items: _put(d, _frame(items), "<I", 1),
        "inconsistent pixel description: frame 1's codestream has RLE segments 1",
        LENIENT,
    ),
    "RLE segments out of order": (
        "SC_rgb_rle_2frame.dcm",
        lambda d, items: _put(d, _frame(items, 2) + 8, "<I", 30),  # frame 2, second segment's offset
        "damaged codestream: frame 2's RLE segment offsets",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_encapsulated_pixel_data_is_refused_with_a_reason(case):
    # GIVEN a compressed pydicom test file damaged in its encapsulation or a frame's codestream header
    name, change, reason, *lenient = CASES[case]
    data = _edit(name, change)
    # WHEN its header is read THEN it is refused, saying what is wrong
    with pytest.raises(UnusableDicom) as refused:
        read_header(data, len(data))
    assert str(refused.value).startswith(reason), str(refused.value)
    # AND train's own decode fails on it too, unless it is one of the cases decoders get through with garbage
    if lenient:
        return
    with pytest.raises(Exception), warnings.catch_warnings():  # noqa: B017 - decoders fail in many ways
        warnings.simplefilter("ignore")
        Preprocessing(image_size=16).native(data, case)


def test_more_fragments_than_frames_are_needed(tmp_path):
    # GIVEN a 2-frame RLE file that says it has 3 frames
    data = _edit("SC_rgb_rle_2frame.dcm", lambda d, items: bytes(d).replace(b"IS\x02\x002 ", b"IS\x02\x003 ", 1))
    with pytest.raises(UnusableDicom, match=r"inconsistent pixel description: .* 2 fragment\(s\) for 3 frame"):
        read_header(data, len(data))


def test_a_file_larger_than_the_kept_head_is_walked_through_ranged_reads(store_uri, monkeypatch):
    # GIVEN a JPEG 2000 file without its sequence delimiter and an intact one, in the store, and an index that
    # keeps fewer leading bytes than the files hold (as it does for files over HEAD_BYTES)
    cut = _edit("JPEG2000.dcm", lambda d, items: bytes(d[: items[-1][0]]))
    whole = Path(get_testdata_file("JPEG2000.dcm")).read_bytes()
    store = open_store(store_uri)
    manifest = put_raw(store, "big", {"cut.dcm": cut, "whole.dcm": whole})
    monkeypatch.setattr(inspection, "HEAD_BYTES", 3100)  # the header ends at 3,034: the frames lie beyond
    reader = ObjectReader(store_uri)
    opened: list[str] = []
    real_open = reader.open
    monkeypatch.setattr(reader, "open", lambda key: opened.append(key) or real_open(key))
    results = {o.key.rsplit("/", 1)[-1]: inspect(reader, Task(o.key, o.sha256, o.size)) for o in manifest.outputs}
    # THEN the walk reads past the head, on a local file and on an S3 stream alike, opening each object once
    # more than the hashing pass (one forward pass over the items)
    assert sorted(opened) == sorted(2 * [o.key for o in manifest.outputs])
    assert results["cut.dcm"].reason is not None
    assert results["cut.dcm"].reason.startswith("truncated: the file ends inside the encapsulated pixel data")
    assert results["whole.dcm"].reason is None and results["whole.dcm"].dicom is not None
