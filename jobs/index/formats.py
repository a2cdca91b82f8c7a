"""Image formats recognised by content (magic bytes), never by file name, and their cheap header facts.

``sniff(head)`` looks at the first bytes of an object: DICOM with the 128-byte preamble and ``DICM``, DICOM
without a preamble (a plausible first data element), PNG, JPEG, TIFF, NIfTI-1/2 and gzip-compressed NIfTI.
For the non-DICOM formats ``geometry(fmt, head)`` reads width/height/bit depth from the header bytes alone.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

DICOM, PNG, JPEG, TIFF, NIFTI = "dicom", "png", "jpeg", "tiff", "nifti"
FORMATS = (DICOM, PNG, JPEG, TIFF, NIFTI)
SNIFF_BYTES = 1024
"""How many leading bytes ``sniff`` needs at most (gzip-compressed NIfTI needs its first header decompressed)."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_GZIP_MAGIC = b"\x1f\x8b"
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
# Groups a preamble-less DICOM stream plausibly starts with: file meta, identifying, patient, study, image.
_FIRST_GROUPS = frozenset((0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028))


class NotAnImage(ValueError):
    """The bytes are not one of the formats the index stage uses; the message says what they look like."""


def _looks_like_bare_dicom(head: bytes) -> bool:
    """A DICOM data set written without preamble: the first element has a known group and a sane VR/length."""
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group, element = struct.unpack(order + "HH", head[:4])
        if group not in _FIRST_GROUPS:
            continue
        if head[4:6] in _VRS:  # explicit VR
            return True
        (length,) = struct.unpack(order + "I", head[4:8])  # implicit VR: a 4-byte length that fits the element
        if element <= 0x0100 and length < 0x10000:
            return True
    return False


def _gzip_head(head: bytes) -> bytes:
    try:
        return zlib.decompressobj(wbits=31).decompress(head, 600)
    except zlib.error:
        return b""


def _is_nifti(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return struct.unpack("<i", head[:4])[0] == 348 or struct.unpack(">i", head[:4])[0] == 348
    return len(head) >= 12 and head[4:12] in (b"n+2\x00\r\n\x1a\n", b"ni2\x00\r\n\x1a\n")


def sniff(head: bytes) -> str:
    """The format of an object whose first bytes are ``head``; ``NotAnImage`` says why it is none of them."""
    if not head:
        raise NotAnImage("empty file (0 bytes)")
    if len(head) >= 132 and head[128:132] == b"DICM":
        return DICOM
    if head.startswith(_PNG_MAGIC):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] in _TIFF_MAGICS:
        return TIFF
    if _is_nifti(head):
        return NIFTI
    if head.startswith(_GZIP_MAGIC):
        if _is_nifti(_gzip_head(head)):
            return NIFTI
        raise NotAnImage("gzip-compressed file that is not NIfTI (.nii.gz); unpack it at collect time")
    if _looks_like_bare_dicom(head):
        return DICOM
    if head.startswith(b"PK\x03\x04"):
        raise NotAnImage("zip archive, not an image; collect should extract archives")
    if len(head) < 132 and head.startswith(b"\x00" * min(len(head), 128)):
        raise NotAnImage(f"truncated: only {len(head)} bytes, a DICOM preamble without data")
    raise NotAnImage("not a recognised image format (DICOM, PNG, JPEG, TIFF, NIfTI)")


@dataclass(frozen=True, slots=True)
class Geometry:
    """What a non-DICOM header says about the pixels (``None`` where the format's header does not say)."""

    rows: int | None = None
    columns: int | None = None
    bits: int | None = None
    samples: int | None = None
    frames: int | None = None


def geometry(fmt: str, head: bytes) -> Geometry:
    """Width, height, bit depth and channels from a PNG, JPEG or NIfTI header; empty for others or on doubt."""
    try:
        if fmt == PNG:
            return _png(head)
        if fmt == JPEG:
            return _jpeg(head)
        if fmt == NIFTI:
            return _nifti(_gzip_head(head) if head.startswith(_GZIP_MAGIC) else head)
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


def _nifti(head: bytes) -> Geometry:
    if head[4:8] in (b"n+2\x00", b"ni2\x00"):
        order = "<" if struct.unpack("<i", head[:4])[0] == 540 else ">"
        bitpix = struct.unpack(order + "h", head[14:16])[0]
        dims = struct.unpack(order + "8q", head[16:80])
    else:
        order = "<" if struct.unpack("<i", head[:4])[0] == 348 else ">"
        dims = struct.unpack(order + "8h", head[40:56])
        bitpix = struct.unpack(order + "h", head[72:74])[0]
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise ValueError("bad dim[0]")
    frames = 1
    for d in dims[3 : ndim + 1]:
        frames *= max(int(d), 1)
    return Geometry(rows=int(dims[2]) if ndim >= 2 else 1, columns=int(dims[1]), bits=int(bitpix), frames=frames)
