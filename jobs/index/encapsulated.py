"""Encapsulated (compressed) pixel data: its item structure and each frame's codestream header, without decoding.

The value of an encapsulated Pixel Data element is a Basic Offset Table item, one item per fragment and a
sequence delimiter (PS3.5 A.4). The walk reads only the 8-byte item headers and the first bytes of each
frame, through ``read(offset, size)``, in file order (a stream is read once), so it costs a few reads per
fragment whatever the frame sizes. Each frame's first bytes must be the codestream the transfer syntax
promises, with the size and samples the header describes: JPEG and JPEG-LS start of frame, JPEG 2000 SIZ, the
RLE segment header (PS3.5 G.5).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator

from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes, RLELossless

from jobs.index.dicom_errors import UnusableDicom

Read = Callable[[int, int], bytes]
"""``read(offset, size)``: up to ``size`` bytes of the file from ``offset``."""

_ITEM, _SEQUENCE_END = 0xE000, 0xE0DD
_DELIMITER = struct.pack("<HHI", 0xFFFE, _SEQUENCE_END, 0)
MAX_ITEMS = 1 << 20
"""More fragments than this is not an image any decoder here would take in reasonable time."""
CODESTREAM_HEAD = 4096
"""Leading bytes of a frame read to find its codestream header (JPEG APPn segments come first)."""
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}  # SOF0-15 less DHT/JPG/DAC; JPEG-LS SOF55


def _items(read: Read, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(value offset, length) of every item from ``start`` up to the sequence delimiter, in file order."""
    pos, count = start, 0
    while True:
        head = read(pos, 8)
        if len(head) < 8:
            raise UnusableDicom("truncated: the file ends inside the encapsulated pixel data (no sequence delimiter)")
        group, elem, length = struct.unpack("<HHI", head)
        if group == 0xFFFE and elem == _SEQUENCE_END:
            return
        if group != 0xFFFE or elem != _ITEM:
            raise UnusableDicom(
                f"damaged encapsulated pixel data: tag ({group:04X},{elem:04X}) at byte {pos} where an item "
                "or the sequence delimiter belongs"
            )
        if pos + 8 + length > end:
            # a file that still ends in the delimiter was not cut: the length lies
            kind = "damaged encapsulated pixel data" if read(end - 8, 8) == _DELIMITER else "truncated"
            raise UnusableDicom(
                f"{kind}: encapsulated pixel data item at byte {pos} declares {length} bytes, "
                f"the file holds {end - pos - 8}"
            )
        count += 1
        if count > MAX_ITEMS:
            raise UnusableDicom(f"damaged encapsulated pixel data: more than {MAX_ITEMS} fragments")
        yield pos + 8, length
        pos += 8 + length


def _offsets(read: Read, at: int, length: int) -> tuple[int, ...]:
    if length % 4:
        raise UnusableDicom(f"damaged encapsulated pixel data: the offset table is {length} bytes, not 4 per frame")
    return struct.unpack(f"<{length // 4}I", read(at, length)) if length else ()


def check_encapsulated(read: Read, start: int, end: int, runner: DecodeRunner) -> None:
    """Raise ``UnusableDicom`` unless the items from ``start`` (the value of Pixel Data) can be decoded as framed.

    One pass in file order (a stream is read once): the offset table first, then each fragment, keeping the
    first bytes of those that start a frame.
    """
    items = _items(read, start, end)
    bot = next(items, None)
    if bot is None:
        raise UnusableDicom("damaged encapsulated pixel data: no Basic Offset Table item")
    frames = runner.number_of_frames
    offsets = _offsets(read, *bot)[:frames]  # they count from the first fragment's item header
    first = bot[0] + bot[1] + 8  # where the first fragment's value starts
    wanted = set(offsets)
    heads: list[tuple[bytes, int]] = []  # the first bytes and length of each frame-starting fragment
    fragments = 0
    for at, length in items:
        starts_a_frame = (at - first) in wanted if offsets else fragments == 0 or frames > 1
        if starts_a_frame:
            heads.append((read(at, min(length, CODESTREAM_HEAD)), length))
            wanted.discard(at - first)
        fragments += 1
    if fragments < frames:
        what = "no fragment" if not fragments else f"{fragments} fragment(s)"
        raise UnusableDicom(
            f"inconsistent pixel description: encapsulated pixel data holds {what} for {frames} frame(s)"
        )
    if offsets and (wanted or list(offsets) != sorted(offsets)):
        raise UnusableDicom("damaged encapsulated pixel data: the offset table points between fragments")
    if not offsets and (frames == 1 or fragments != frames):
        heads = heads[:1]  # a frame over several fragments (or frames found by their markers): the first is checked
    syntax = runner.transfer_syntax
    if syntax in JPEG2000TransferSyntaxes:
        check = _check_j2k
    elif syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes:
        check = _check_jpeg
    elif syntax == RLELossless:
        check = _check_rle
    else:
        return
    for number, (head, length) in enumerate(heads, 1):
        check(head, length, runner, number)


def _mismatch(number: int, what: str, found: object, expected: object) -> UnusableDicom:
    return UnusableDicom(
        f"inconsistent pixel description: frame {number}'s codestream has {what} {found}, the header says {expected}"
    )


def _check_geometry(number: int, rows: int, columns: int, samples: int, runner: DecodeRunner) -> None:
    if columns != runner.columns:
        raise _mismatch(number, "columns", columns, runner.columns)
    if rows and rows != runner.rows:  # a JPEG height of 0 is defined later by a DNL marker
        raise _mismatch(number, "rows", rows, runner.rows)
    if samples != runner.samples_per_pixel:
        raise _mismatch(number, "samples per pixel", samples, runner.samples_per_pixel)


def _check_jpeg(head: bytes, length: int, runner: DecodeRunner, number: int) -> None:
    if head[:2] != b"\xff\xd8":
        raise UnusableDicom(f"damaged codestream: frame {number} does not start with a JPEG start-of-image marker")
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            raise UnusableDicom(f"damaged codestream: frame {number}'s JPEG markers are broken at byte {pos}")
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 10 > len(head):
                return
            _, rows, columns, samples = struct.unpack(">BHHB", head[pos + 4 : pos + 10])
            _check_geometry(number, rows, columns, samples, runner)
            return
        if marker == 0xDA:  # start of scan before any start of frame
            raise UnusableDicom(f"damaged codestream: frame {number} has no JPEG start-of-frame marker")
        pos += 2 + length
    # the header runs past the bytes read (large APPn segments): the decoder decides


def _check_j2k(head: bytes, length: int, runner: DecodeRunner, number: int) -> None:
    if head.startswith(_JP2_SIGNATURE):
        return  # a JP2 file wrapped around the codestream: its boxes are the decoder's to read
    if head[:4] != b"\xff\x4f\xff\x51" or len(head) < 42:
        raise UnusableDicom(f"damaged codestream: frame {number} does not start with a JPEG 2000 SOC and SIZ marker")
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", head[8:24])
    (components,) = struct.unpack(">H", head[40:42])
    if xsiz <= xosiz or ysiz <= yosiz:
        raise UnusableDicom(f"damaged codestream: frame {number}'s JPEG 2000 image area is empty")
    _check_geometry(number, ysiz - yosiz, xsiz - xosiz, components, runner)


def _check_rle(head: bytes, length: int, runner: DecodeRunner, number: int) -> None:
    if len(head) < 64:
        raise UnusableDicom(f"damaged codestream: frame {number}'s RLE header is {len(head)} bytes, not 64")
    segments, *offsets = struct.unpack("<16I", head[:64])
    expected = runner.samples_per_pixel * max(1, runner.bits_allocated // 8)
    if segments != expected:
        raise _mismatch(number, "RLE segments", segments, f"{expected} (samples x bytes per sample)")
    used = offsets[:segments]
    if used[0] != 64 or any(b <= a for a, b in itertools.pairwise(used)) or used[-1] >= length:
        raise UnusableDicom(f"damaged codestream: frame {number}'s RLE segment offsets {used} are out of order")
