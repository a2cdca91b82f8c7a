"""Image formats recognised by content (magic bytes), never by file name, and their cheap header facts.

``sniff(head)`` is ``jobs.ml.formats.sniff``, the one train's decoder uses too, so the index never accepts a file
as a format train would not decode it as. For the non-DICOM formats ``geometry(fmt, head)`` reads width/height/
bit depth from the header bytes alone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from jobs.ml.formats import DICOM, FORMATS, JPEG, NIFTI, PNG, SNIFF_BYTES, TIFF, NotAnImage
from jobs.ml.formats import sniff as sniff

__all__ = ["DICOM", "FORMATS", "JPEG", "NIFTI", "PNG", "SNIFF_BYTES", "TIFF", "Geometry", "NotAnImage", "geometry",
           "sniff"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Geometry:
    """What a non-DICOM header says about the pixels (``None`` where the format's header does not say)."""

    rows: int | None = None
    columns: int | None = None
    bits: int | None = None
    samples: int | None = None
    frames: int | None = None
    volume: tuple[int, int, int] | None = None
    """A NIfTI volume's ``(D, H, W)`` as train decodes it (canonical axes, ``jobs.ml.nifti.grid``)."""
    spacing: tuple[float, float, float] | None = None
    """Its voxel spacing ``(z, y, x)`` in mm."""


def geometry(fmt: str, head: bytes, size: int | None = None) -> Geometry:
    """Width, height, bit depth and channels from a PNG, JPEG, TIFF or NIfTI header; empty for others or on doubt.

    Raises ``NotAnImage`` for a TIFF of ``size`` bytes whose directory or strips lie past its end (a DICOM
    file with a TIFF-compatible preamble, cut before its ``DICM``, looks like one).
    """
    try:
        if fmt == TIFF:
            return _tiff(head, len(head) if size is None else size)
        if fmt == PNG:
            return _png(head)
        if fmt == JPEG:
            return _jpeg(head)
        if fmt == NIFTI:
            return _nifti(head, size)
    except NotAnImage:
        raise
    except (struct.error, IndexError, ValueError):
        pass
    return Geometry()


def _png(head: bytes) -> Geometry:
    if head[12:16] != b"IHDR":
        raise ValueError("no IHDR")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    return Geometry(rows=height, columns=width, bits=depth, samples=samples, frames=1)


def _jpeg(head: bytes) -> Geometry:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            raise ValueError("lost marker sync")
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            bits, height, width, samples = struct.unpack(">BHHB", head[pos + 4 : pos + 10])
            return Geometry(rows=height, columns=width, bits=bits, samples=samples, frames=1)
        pos += 2 + length
    raise ValueError("no SOF marker in header bytes")


def _nifti(head: bytes, size: int | None) -> Geometry:
    """The grid of a NIfTI file, after ``jobs.ml.nifti.check_header`` refused what train's decoder cannot read."""
    from jobs.ml.nifti import UnusableNifti, check_header, grid

    try:
        header = check_header(head, size)
        volume = grid(head)
    except UnusableNifti as exc:
        raise NotAnImage(str(exc)) from None
    dims = header.dims
    frames = 1
    for d in dims[2:]:
        frames *= max(int(d), 1)
    return Geometry(rows=int(dims[1]), columns=int(dims[0]), bits=header.bitpix, frames=frames,
                    volume=volume.shape, spacing=volume.spacing)  # fmt: skip


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4)}  # SHORT, LONG: the types of the tags read here
_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_BITS, _TIFF_SAMPLES = 256, 257, 258, 277
_TIFF_OFFSETS = ((273, 279), (324, 325))  # StripOffsets/StripByteCounts, TileOffsets/TileByteCounts


def _tiff(head: bytes, size: int) -> Geometry:
    """The first image directory of a classic TIFF; strips and tiles must lie inside the file."""
    order = "<" if head[:2] == b"II" else ">"
    if len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
        return Geometry()  # BigTIFF: its 8-byte offsets are the decoder's to read
    (ifd,) = struct.unpack(order + "I", head[4:8])
    if ifd < 8 or ifd + 2 > size:
        raise NotAnImage(f"truncated: the TIFF image directory at byte {ifd} lies past the end of the file")
    if ifd + 2 > len(head):
        return Geometry()
    (count,) = struct.unpack(order + "H", head[ifd : ifd + 2])
    if ifd + 2 + 12 * count > size:
        raise NotAnImage("truncated: the file ends inside the TIFF image directory")
    values: dict[int, tuple[int, ...]] = {}
    for n in range(count):
        at = ifd + 2 + 12 * n
        entry = head[at : at + 12]
        if len(entry) < 12:
            return Geometry()
        tag, kind, number = struct.unpack(order + "HHI", entry[:8])
        if kind not in _TIFF_TYPES or number == 0:
            continue
        code, item_size = _TIFF_TYPES[kind]
        span = number * item_size
        where = at + 8 if span <= 4 else struct.unpack(order + "I", entry[8:12])[0]
        if where + span > size:
            raise NotAnImage(f"truncated: TIFF tag {tag}'s values lie past the end of the file")
        if where + span <= len(head):
            values[tag] = struct.unpack(f"{order}{number}{code}", head[where : where + span])
    for offsets_tag, counts_tag in _TIFF_OFFSETS:
        offsets, counts = values.get(offsets_tag), values.get(counts_tag)
        if offsets and counts and any(o + c > size for o, c in zip(offsets, counts, strict=False)):
            raise NotAnImage("truncated: TIFF image data lies past the end of the file")
    width, length = values.get(_TIFF_WIDTH, (None,))[0], values.get(_TIFF_LENGTH, (None,))[0]
    if width == 0 or length == 0:
        raise NotAnImage("TIFF image directory says the image is empty (width or length 0)")
    bits = values.get(_TIFF_BITS)
    samples = values.get(_TIFF_SAMPLES, (1,))[0]
    return Geometry(rows=length, columns=width, bits=bits[0] if bits else None, samples=samples)
