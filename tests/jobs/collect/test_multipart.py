"""The streaming multipart/related reader WADO-RS responses go through: parts split at any chunk boundary."""

from __future__ import annotations

import pytest

from jobs.collect.multipart import MultipartFiles, boundary_of
from jobs.core.errors import DataError

BOUNDARY = "b0undary-42"
PARTS = [b"\x00" * 128 + b"DICM" + bytes(range(256)) * 40, b"second\r\n--b0undary-4 not a delimiter\r\n", b""]


def _body(parts: list[bytes], close: bool = True, preamble: bytes = b"") -> bytes:
    body = preamble + b"".join(
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-Length: {len(p)}\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    )
    return body + (f"--{BOUNDARY}--\r\nepilogue".encode() if close else b"")


CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


@pytest.mark.parametrize("chunk", [1, 2, 7, 13, 64, 1 << 20])
def test_parts_are_written_whole_whatever_the_chunks(tmp_path, chunk):
    # GIVEN a body (with a preamble) cut into chunks of every size, delimiters split between them
    body = _body(PARTS, preamble=b"ignored preamble\r\n")
    sink = MultipartFiles(tmp_path / "parts", "test")
    sink.restart()
    # WHEN it streams in
    for i in range(0, len(body), chunk):
        sink.write(body[i : i + chunk])
    parts = sink.finish(CONTENT_TYPE)
    # THEN each part's content and headers are exactly what was sent
    assert [p.path.read_bytes() for p in parts] == PARTS
    assert parts[0].headers["content-type"] == "application/dicom" and parts[0].size == len(PARTS[0])


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (_body(PARTS, close=False), CONTENT_TYPE, "truncated"),
        (_body(PARTS), "application/dicom", "is not multipart/related"),
        (_body(PARTS), 'multipart/related; boundary="other"', "does not match the boundary"),
    ],
)
def test_an_incomplete_or_mislabelled_body_is_a_data_error(tmp_path, body, content_type, message):
    sink = MultipartFiles(tmp_path / "parts", "WADO-RS test")
    sink.restart()
    sink.write(body)
    with pytest.raises(DataError, match=message):
        sink.finish(content_type)


def test_a_restart_drops_the_parts_received(tmp_path):
    sink = MultipartFiles(tmp_path / "parts", "test")
    sink.restart()
    sink.write(_body(PARTS)[:300])
    assert sink.rewind() == 0 and sink.parts == [] and list((tmp_path / "parts").iterdir()) == []


@pytest.mark.parametrize(
    ("header", "boundary"),
    [('multipart/related; type="application/dicom"; boundary=abc', "abc"), ('multipart/related; boundary="a b"', "a b"),
     ("text/plain", None), (None, None)],
)  # fmt: skip
def test_boundary_of(header, boundary):
    assert boundary_of(header) == boundary
