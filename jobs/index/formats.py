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
            return _nifti(_gzip_head(head) if head.startswith(_GZIP_MAGIC) else head)
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


CIFTI_INTENTS = range(3000, 3100)
"""NIFTI_INTENT_CONNECTIVITY_*: the intent codes of CIFTI files (matrices over brain surfaces, not images)."""


def _nifti(head: bytes) -> Geometry:
    if head[4:8] in (b"n+2\x00", b"ni2\x00"):
        order = "<" if struct.unpack("<i", head[:4])[0] == 540 else ">"
        bitpix = struct.unpack(order + "h", head[14:16])[0]
        dims = struct.unpack(order + "8q", head[16:80])
        intent = struct.unpack(order + "i", head[504:508])[0]
    else:
        order = "<" if struct.unpack("<i", head[:4])[0] == 348 else ">"
        dims = struct.unpack(order + "8h", head[40:56])
        bitpix = struct.unpack(order + "h", head[72:74])[0]
        intent = struct.unpack(order + "h", head[68:70])[0]
    if head[4:8] == b"ni2\x00" or head[344:348] == b"ni1\x00":  # a header whose voxels are in a separate .img
        raise NotAnImage(
            "NIfTI header without its image: a .hdr whose voxels are in a separate .img file, which train does "
            "not read; convert the pair to a single .nii or .nii.gz at the source"
        )
    if intent in CIFTI_INTENTS:
        raise NotAnImage(
            f"CIFTI file (NIfTI intent {intent}): a connectivity or surface data matrix, not an image volume"
        )
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise ValueError("bad dim[0]")
    frames = 1
    for d in dims[3 : ndim + 1]:
        frames *= max(int(d), 1)
    return Geometry(rows=int(dims[2]) if ndim >= 2 else 1, columns=int(dims[1]), bits=int(bitpix), frames=frames)


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
