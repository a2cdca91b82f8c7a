"""Image formats recognised by content (magic bytes), never by file name: the one ``sniff`` index and train share.

``sniff(head)`` looks at the first bytes of an object: DICOM with the 128-byte preamble and ``DICM``, DICOM
without a preamble (a plausible first data element), PNG, JPEG, TIFF, NIfTI-1/2 and gzip-compressed NIfTI. The
index decides with it what to accept and the decoder (``jobs.ml.preprocess``) how to decode, so the two can never
disagree about what a file is. Pure Python: the slim index image imports it.
"""

from __future__ import annotations

import struct
import zlib

DICOM, PNG, JPEG, TIFF, NIFTI = "dicom", "png", "jpeg", "tiff", "nifti"
FORMATS = (DICOM, PNG, JPEG, TIFF, NIFTI)
SNIFF_BYTES = 1024
"""How many leading bytes ``sniff`` needs at most (gzip-compressed NIfTI needs its first header decompressed)."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
GZIP_MAGIC = b"\x1f\x8b"
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
# Groups a preamble-less DICOM stream plausibly starts with: file meta, identifying, patient, study, image.
_FIRST_GROUPS = frozenset((0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028))
NIFTI1_MAGICS = (b"n+1\x00", b"ni1\x00")
NIFTI2_MAGICS = (b"n+2\x00\r\n\x1a\n", b"ni2\x00\r\n\x1a\n")


class NotAnImage(ValueError):
    """The bytes are not one of the formats the pipeline uses; the message says what they look like."""


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


def gunzip_head(head: bytes, limit: int = 600) -> bytes:
    """The first ``limit`` decompressed bytes of gzip data (empty when it is not inflatable)."""
    try:
        return zlib.decompressobj(wbits=31).decompress(head, limit)
    except zlib.error:
        return b""


def is_nifti(head: bytes) -> bool:
    """Whether uncompressed ``head`` starts with a NIfTI-1 or NIfTI-2 header (single file or .hdr of a pair)."""
    if len(head) >= 348 and head[344:348] in NIFTI1_MAGICS:
        return struct.unpack("<i", head[:4])[0] == 348 or struct.unpack(">i", head[:4])[0] == 348
    return len(head) >= 12 and head[4:12] in NIFTI2_MAGICS


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
    if is_nifti(head):
        return NIFTI
    if head.startswith(GZIP_MAGIC):
        if is_nifti(gunzip_head(head)):
            return NIFTI
        raise NotAnImage("gzip-compressed file that is not NIfTI (.nii.gz); unpack it at collect time")
    if _looks_like_bare_dicom(head):
        return DICOM
    if head.startswith(b"PK\x03\x04"):
        raise NotAnImage("zip archive, not an image; collect should extract archives")
    if len(head) < 132 and head.startswith(b"\x00" * min(len(head), 128)):
        raise NotAnImage(f"truncated: only {len(head)} bytes, a DICOM preamble without data")
    raise NotAnImage("not a recognised image format (DICOM, PNG, JPEG, TIFF, NIfTI)")


def detect_format(head: bytes) -> str | None:
    """``sniff`` without the reason: the format name, or ``None`` for bytes that are none of ``FORMATS``."""
    try:
        return sniff(head)
    except NotAnImage:
        return None
