"""A seeded corpus of malformed DICOM files, for the index stage's fault campaign.

Each file is a mutation of one of pydicom's own test files (``pydicom.data.get_testdata_file``, the files that
ship inside the pydicom package, so the corpus needs no download) or of a small image built here: byte flips,
truncations, element lengths that lie, sequences nested hundreds of levels deep, unknown VRs, broken deflate
streams, wrong or unknown transfer syntaxes, inconsistent image geometry, damaged or missing pixel data, and
plain garbage. The same seed gives the same files byte for byte (for one pydicom version): every choice comes
from one ``random.Random(seed)``, drawn only through ``random()`` and ``getrandbits()``, whose sequences Python
keeps stable across versions.

``fuzz_corpus(seed, count)`` returns the files; ``corpus_digest`` fingerprints a corpus for reports.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.filereader import data_element_generator
from pydicom.valuerep import STANDARD_VR

from tests.support.dicom_files import dicom_bytes

SEED = 13
"""The campaign's seed (issue 13)."""
COUNT = 1000

BASES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_padded.dcm",
    "JPGExtended.dcm",  # JPEG-lossy.dcm, its twin, does not decode with libjpeg: not a base to mutate
    "JPEG2000.dcm",
    "693_J2KI.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jpeg.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_small_odd_big_endian.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "ExplVR_BigEnd.dcm",
    "rtdose.dcm",
    "rtdose_rle.dcm",
    "liver_1frame.dcm",
    "image_dfl.dcm",
    "examples_palette.dcm",
    "rtplan.dcm",
)
"""pydicom test files the mutations start from: every transfer syntax pydicom decodes, colour, palette,
multi-frame, 1-bit and 32-bit images, a deflated file and one without pixel data."""

_IMPLICIT_LE, _EXPLICIT_LE, _EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_KNOWN_VRS = frozenset(str(vr) for vr in STANDARD_VR)
_LONG_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"))  # 4-byte lengths
_PIXEL_TAG = 0x7FE00010
_TRANSFER_SYNTAXES = (
    "1.2.3.4.5.6.7",  # no such transfer syntax
    "1.2.840.113619.5.2",  # GE private implicit VR big endian
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2: video, no pydicom decoder
    "1.2.840.10008.1.2.4.201",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE
    _IMPLICIT_LE,
    _EXPLICIT_LE,
    _EXPLICIT_BE,
    _DEFLATED,
    "",
    "not a uid",
)


class _Rand:
    """The choices a mutation makes, drawn only through ``random()``/``getrandbits()`` (stable across Pythons)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def below(self, n: int) -> int:
        return min(int(self._rng.random() * n), n - 1) if n > 0 else 0

    def between(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return lo + self.below(hi - lo + 1)

    def pick(self, items: Sequence):
        return items[self.below(len(items))]

    def chance(self, p: float) -> bool:
        return self._rng.random() < p

    def bytes(self, n: int) -> bytes:
        return self._rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


@dataclass(frozen=True, slots=True)
class Element:
    """One top-level data element of a base file: where its header and value are, as written."""

    tag: int
    vr: str | None
    header: int
    value: int
    length: int

    @property
    def length_field(self) -> tuple[int, int]:
        """(offset, size) of the element's length field."""
        if self.vr is None:
            return self.header + 4, 4
        if self.vr in _LONG_VRS:
            return self.header + 8, 4
        return self.header + 6, 2


@dataclass(frozen=True, slots=True)
class Base:
    """A well-formed file to mutate, with its element layout (empty for files the walker cannot lay out)."""

    name: str
    data: bytes
    syntax: str | None
    little: bool
    implicit: bool
    meta: tuple[Element, ...]
    elements: tuple[Element, ...]
    fragments: tuple[tuple[int, int], ...] = ()
    """(start, end) of each encapsulated fragment's value (the offset table excluded)."""

    def element(self, tag: int) -> Element | None:
        return next((e for e in self.meta + self.elements if e.tag == tag), None)


@dataclass(frozen=True, slots=True)
class FuzzFile:
    """One corpus file: its name (``<n>-<family>-<base>.dcm``), bytes, mutation family and base file."""

    name: str
    data: bytes
    family: str
    base: str
    frames_damaged: bool = False
    """Some changed byte lies inside a compressed frame's fragments: damage that decoding may be the only one
    to see (no header check can tell a flipped bit in entropy-coded data)."""


def _walk(data: bytes, start: int, implicit: bool, little: bool, meta_only: bool = False) -> list[Element]:
    """Top-level elements from ``start``, located with pydicom's own element reader."""
    fp = io.BytesIO(data)
    fp.seek(start)
    stop = (lambda tag, vr, length: tag.group != 2) if meta_only else None
    found = []
    gen = data_element_generator(fp, implicit, little, stop_when=stop)
    while True:
        pos = fp.tell()
        try:
            elem = next(gen)
        except StopIteration:
            return found
        header = 8 if implicit else (12 if elem.VR in _LONG_VRS else 8)
        length = getattr(elem, "length", None)
        if length is None:  # undefined-length sequence: pydicom returns it parsed
            length = 0xFFFFFFFF
        found.append(Element(int(elem.tag), None if implicit else elem.VR, pos, pos + header, length))


def _base(name: str, data: bytes) -> Base:
    if data[128:132] != b"DICM":  # no preamble: an explicit VR little endian data set from the first byte
        return Base(name, data, None, True, False, (), tuple(_walk(data, 0, False, True)))
    meta = _walk(data, 132, False, True, meta_only=True)
    syntax_el = next(e for e in meta if e.tag == 0x00020010)
    syntax = data[syntax_el.value : syntax_el.value + syntax_el.length].rstrip(b"\x00 ").decode()
    start = meta[-1].value + meta[-1].length
    if syntax == _DEFLATED:
        return Base(name, data, syntax, True, False, tuple(meta), ())
    little = syntax != _EXPLICIT_BE
    # as pydicom does: the data set's own first element decides implicit or explicit (SC_rgb_jpeg.dcm says
    # JPEG baseline but is implicit VR)
    implicit = data[start + 4 : start + 6].decode("latin-1") not in _KNOWN_VRS
    elements = tuple(_walk(data, start, implicit, little))
    return Base(name, data, syntax, little, implicit, tuple(meta), elements, _fragments(data, elements))


def _fragments(data: bytes, elements: tuple[Element, ...]) -> tuple[tuple[int, int], ...]:
    pixel = next((e for e in elements if e.tag == _PIXEL_TAG), None)
    if pixel is None or pixel.length != 0xFFFFFFFF:
        return ()
    found, pos = [], pixel.value
    while pos + 8 <= len(data):
        _, elem, length = struct.unpack("<HHI", data[pos : pos + 8])
        if elem != 0xE000:
            break
        found.append((pos + 8, pos + 8 + length))
        pos += 8 + length
    return tuple(found[1:])


def _frames_damaged(base: Base, data: bytes) -> bool:
    """Whether ``data`` changes a byte inside ``base``'s compressed fragments (same-length mutations only)."""
    if len(data) != len(base.data) or not base.fragments:
        return False
    changed = np.flatnonzero(np.frombuffer(data, np.uint8) != np.frombuffer(base.data, np.uint8))
    return any(start <= int(pos) < end for pos in changed for start, end in base.fragments)


@cache
def bases() -> tuple[Base, ...]:
    """The files the mutations start from, in a fixed order."""
    found = [_base(name, Path(get_testdata_file(name)).read_bytes()) for name in BASES]
    found.append(_base("synthetic.dcm", dicom_bytes("FUZZ", rows=24, columns=20, seed=13)))
    found.append(_base("synthetic_nopreamble.dcm", dicom_bytes("FUZZ", rows=16, columns=16, seed=14, preamble=False)))
    return tuple(found)


# -- encoding helpers -------------------------------------------------------------------------------------------
def _element_bytes(tag: int, vr: str, value: bytes, *, little: bool = True, implicit: bool = False) -> bytes:
    order = "<" if little else ">"
    head = struct.pack(order + "HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack(order + "I", len(value)) + value
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\x00\x00" + struct.pack(order + "I", len(value)) + value
    return head + vr.encode() + struct.pack(order + "H", len(value)) + value


def _uid(text: str) -> bytes:
    raw = text.encode("latin-1")
    return raw + b"\x00" * (len(raw) % 2)


def _with_meta(base: Base, syntax: str | None, *, fix_group_length: bool = True) -> bytes:
    """``base`` with its file meta group rewritten to say ``syntax`` (``None``: no Transfer Syntax element)."""
    out = []
    for e in base.meta:
        value = base.data[e.value : e.value + e.length]
        if e.tag == 0x00020000:
            continue
        if e.tag == 0x00020010:
            if syntax is None:
                continue
            value = _uid(syntax)
        out.append(_element_bytes(e.tag, e.vr or "UN", value))
    body = b"".join(out)
    length = len(body) if fix_group_length else len(body) + 2 * (1 + len(out))
    group = _element_bytes(0x00020000, "UL", struct.pack("<I", length))
    start = base.meta[-1].value + base.meta[-1].length
    return base.data[:132] + group + body + base.data[start:]


def _replace(data: bytes, offset: int, new: bytes, old_len: int | None = None) -> bytes:
    return data[:offset] + new + data[offset + (len(new) if old_len is None else old_len) :]


def nested_sequence_bytes(depth: int, *, implicit: bool, defined: bool, little: bool = True) -> bytes:
    """A sequence element whose single item holds a sequence whose item holds ... ``depth`` levels deep."""
    order = "<" if little else ">"
    item_tag = struct.pack(order + "HH", 0xFFFE, 0xE000)
    leaf = _element_bytes(0x00080100, "SH", b"LEAF", little=little, implicit=implicit)
    inner = leaf
    for level in range(depth):
        tag = 0x00400275 if level % 2 else 0x00081115  # Request Attributes / Referenced Series Sequence
        if defined:
            item = item_tag + struct.pack(order + "I", len(inner)) + inner
            inner = _element_bytes(tag, "SQ", item, little=little, implicit=implicit)
        else:
            item = (
                item_tag + struct.pack(order + "I", 0xFFFFFFFF) + inner + struct.pack(order + "HHI", 0xFFFE, 0xE00D, 0)
            )
            seq = item + struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
            head = struct.pack(order + "HH", tag >> 16, tag & 0xFFFF)
            head += (
                struct.pack(order + "I", 0xFFFFFFFF)
                if implicit
                else b"SQ\x00\x00" + struct.pack(order + "I", 0xFFFFFFFF)
            )
            inner = head + seq
    return inner


# -- mutation families ------------------------------------------------------------------------------------------
Mutation = Callable[[_Rand, Base], bytes | None]


def _pixel_start(base: Base) -> int:
    pixel = base.element(_PIXEL_TAG)
    return pixel.header if pixel is not None else len(base.data)


def flip(rng: _Rand, base: Base) -> bytes:
    """1-8 random bytes anywhere in the file replaced by random values."""
    data = bytearray(base.data)
    for _ in range(rng.between(1, 8)):
        data[rng.below(len(data))] = rng.below(256)
    return bytes(data)


def flip_header(rng: _Rand, base: Base) -> bytes:
    """1-4 bytes of the header (file meta and data set before pixel data) replaced; single bits sometimes."""
    data = bytearray(base.data)
    start = 128 if base.data[128:132] == b"DICM" else 0
    end = max(start + 1, _pixel_start(base) + 12)
    for _ in range(rng.between(1, 4)):
        pos = rng.between(start, min(end, len(data)) - 1)
        data[pos] = data[pos] ^ (1 << rng.below(8)) if rng.chance(0.5) else rng.below(256)
    return bytes(data)


def truncate(rng: _Rand, base: Base) -> bytes:
    """The file cut short: anywhere, inside the header, or in its last bytes."""
    size = len(base.data)
    where = rng.below(3)
    if where == 0:
        cut = rng.below(size)
    elif where == 1:
        cut = rng.below(min(size, _pixel_start(base) + 16))
    else:
        cut = size - rng.between(1, min(64, size - 1))
    return base.data[:cut]


def length_lie(rng: _Rand, base: Base) -> bytes | None:
    """One element's length field says something else: huge, odd, undefined, zero, a little off."""
    elements = [e for e in base.elements + base.meta if e.length != 0xFFFFFFFF]
    if not elements:
        return None
    e = rng.pick(elements)
    offset, width = e.length_field
    limit = 0xFFFF if width == 2 else 0xFFFFFFFF
    choices = [0, 1, e.length + 1, max(0, e.length - 1), e.length + rng.between(2, 4096), limit, limit - 1,
               len(base.data), 2 * len(base.data), rng.below(limit)]  # fmt: skip
    if width == 4:
        choices += [0x7FFFFFFF, 0xFFFFFFFF]
    value = min(rng.pick(choices), limit)
    order = "<" if (base.little or e.tag >> 16 == 2) else ">"
    return _replace(base.data, offset, struct.pack(order + ("H" if width == 2 else "I"), value))


def nested_sequence(rng: _Rand, base: Base) -> bytes | None:
    """A sequence nested 300-3,000 levels deep inserted before the image attributes."""
    if not base.elements or base.syntax is None:
        return None
    depth = rng.pick((300, 301, 500, 1000, 3000)) if rng.chance(0.7) else rng.between(300, 3000)
    defined = rng.chance(0.4)
    if defined and depth > 1000:
        depth = 1000  # defined lengths grow quadratically with depth; 1,000 is plenty
    nested = nested_sequence_bytes(depth, implicit=base.implicit, defined=defined, little=base.little)
    after = next((e for e in base.elements if e.tag >> 16 >= 0x0028), base.elements[-1])
    return _replace(base.data, after.header, nested, 0)


def unknown_vr(rng: _Rand, base: Base) -> bytes | None:
    """One explicit-VR element's VR replaced by letters no standard defines (or by raw bytes)."""
    explicit = [e for e in base.elements + base.meta if e.vr is not None]
    if not explicit:
        return None
    e = rng.pick(explicit)
    while True:
        vr = bytes([rng.between(0x41, 0x5A), rng.between(0x41, 0x5A)]) if rng.chance(0.8) else rng.bytes(2)
        if vr.decode("latin-1") not in _KNOWN_VRS:
            return _replace(base.data, e.header + 4, vr)


def broken_deflate(rng: _Rand, base: Base) -> bytes | None:
    """A deflated data set whose compressed stream is damaged: flipped, cut, garbage, or not deflate at all."""
    if base.syntax is None or not base.meta:
        return None
    start = base.meta[-1].value + base.meta[-1].length
    if base.syntax == _DEFLATED:
        meta_part, stream = base.data[:start], base.data[start:]
    else:
        if base.syntax != _EXPLICIT_LE:
            return None
        ds = pydicom.dcmread(io.BytesIO(base.data), force=True)
        out = io.BytesIO()
        ds.file_meta.TransferSyntaxUID = _DEFLATED
        ds.save_as(out, enforce_file_format=True)
        data = out.getvalue()
        meta = _walk(data, 132, False, True, meta_only=True)
        start = meta[-1].value + meta[-1].length
        meta_part, stream = data[:start], data[start:]
    how = rng.below(5)
    if how == 0:  # bytes flipped inside the compressed stream
        damaged = bytearray(stream)
        for _ in range(rng.between(1, 6)):
            damaged[rng.below(len(damaged))] = rng.below(256)
        stream = bytes(damaged)
    elif how == 1:  # cut
        stream = stream[: rng.below(len(stream))]
    elif how == 2:  # random bytes
        stream = rng.bytes(rng.between(1, 2048))
    elif how == 3:  # the data set not compressed at all
        stream = zlib.decompress(stream, -15) if _inflates(stream) else stream
    else:  # a zlib header (deflate expects raw) in front of the stream
        stream = b"\x78\x9c" + stream
    return meta_part + stream


def _inflates(stream: bytes) -> bool:
    try:
        zlib.decompress(stream, -15)
    except zlib.error:
        return False
    return True


def transfer_syntax(rng: _Rand, base: Base) -> bytes | None:
    """The file meta names a transfer syntax the data is not in, an unknown one, none, or garbage."""
    if not base.meta:
        return None
    choice = rng.below(len(_TRANSFER_SYNTAXES) + 1)
    syntax = None if choice == len(_TRANSFER_SYNTAXES) else _TRANSFER_SYNTAXES[choice]
    if syntax == base.syntax:
        syntax = "1.2.840.10008.1.2.4.100"
    return _with_meta(base, syntax, fix_group_length=rng.chance(0.8))


_GEOMETRY = {
    0x00280010: "Rows",
    0x00280011: "Columns",
    0x00280100: "BitsAllocated",
    0x00280101: "BitsStored",
    0x00280102: "HighBit",
    0x00280002: "SamplesPerPixel",
    0x00280103: "PixelRepresentation",
    0x00280006: "PlanarConfiguration",
}


def geometry(rng: _Rand, base: Base) -> bytes | None:
    """One image attribute rewritten in place (Rows, Columns, Bits..., Samples...) to an inconsistent value."""
    present = [e for e in base.elements if e.tag in _GEOMETRY and e.length == 2]
    if not present:
        return None
    e = rng.pick(present)
    order = "<" if base.little else ">"
    (old,) = struct.unpack(order + "H", base.data[e.value : e.value + 2])
    value = rng.pick((0, 1, 2, 3, 4, 7, 8, 12, 16, 17, 24, 32, 33, 64, 65535, old + 1, max(0, old - 1), old * 2))
    return _replace(base.data, e.value, struct.pack(order + "H", value & 0xFFFF))


_TEXT_ATTRIBUTES = {
    "PhotometricInterpretation": ("MONOCHROME1", "RGB", "YBR_FULL_422", "PALETTE COLOR", "CMYK", "ARGB", "BOGUS"),
    "NumberOfFrames": ("0", "2", "3", "30", "-1", "1000000", "1.5"),
}
_DROPPABLE = (
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "SamplesPerPixel",
    "PixelRepresentation",
    "Rows",
    "Columns",
    "PlanarConfiguration",
    "PixelData",
)


def attributes(rng: _Rand, base: Base) -> bytes | None:
    """Re-encoded by pydicom with one image attribute changed to a wrong value, or removed."""
    if not base.elements or base.syntax is None:
        return None
    ds = pydicom.dcmread(io.BytesIO(base.data), force=True)
    if rng.chance(0.5):
        name = rng.pick(sorted(_TEXT_ATTRIBUTES))
        setattr(ds, name, rng.pick(_TEXT_ATTRIBUTES[name]))
    else:
        name = rng.pick(_DROPPABLE)
        if name not in ds:
            return None
        delattr(ds, name)
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=False)
    except (TypeError, ValueError):  # pydicom cannot re-encode this base (its syntax contradicts its data set)
        return None
    return out.getvalue()


def pixel_data(rng: _Rand, base: Base) -> bytes | None:
    """Pixel Data made short, empty, odd, or its encapsulated items damaged (lengths, tags, delimiter)."""
    pixel = base.element(_PIXEL_TAG)
    if pixel is None:
        return None
    data, order = base.data, "<" if base.little else ">"
    offset, width = pixel.length_field
    if pixel.length != 0xFFFFFFFF:  # native: shorter value with a matching length, or an empty one
        keep = rng.pick((0, 1, pixel.length // 2, pixel.length - 2, pixel.length - 1, rng.below(pixel.length)))
        out = _replace(data, offset, struct.pack(order + ("H" if width == 2 else "I"), keep))
        start = pixel.value
        return out[:start] + out[start : start + keep] + out[pixel.value + pixel.length :]
    items = []  # encapsulated: the item headers after the value start
    pos = pixel.value
    while pos + 8 <= len(data):
        _, elem, length = struct.unpack(order + "HHI", data[pos : pos + 8])
        items.append((pos, elem, length))
        if elem != 0xE000:
            break
        pos += 8 + length
    how = rng.below(5)
    target = rng.pick(items)
    if how == 0:  # an item length lies
        return _replace(data, target[0] + 4, struct.pack(order + "I", rng.pick((0, 1, 3, target[2] + 8, 0xFFFFFFF0))))
    if how == 1:  # an item tag damaged
        return _replace(data, target[0], rng.bytes(4))
    if how == 2:  # the sequence delimiter missing
        return data[: items[-1][0]] if len(items) > 1 else data[:-8]
    if how == 3 and len(items) > 2:  # only the offset table left
        first = items[0]
        return data[: first[0] + 8 + first[2]] + struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
    fragment = rng.pick(items[1:-1] or items)  # a fragment's first bytes (the codestream's own header) garbage
    return _replace(data, fragment[0] + 8, rng.bytes(min(16, max(fragment[2], 0))))


def garbage(rng: _Rand, base: Base) -> bytes:
    """Random bytes behind a DICOM preamble and magic, or behind a plausible first element."""
    body = rng.bytes(rng.between(8, 4096))
    if rng.chance(0.5):
        return b"\x00" * 128 + b"DICM" + body
    return _element_bytes(0x00080005, "CS", b"ISO_IR 100") + body


FAMILIES: dict[str, tuple[float, Mutation]] = {
    "flip": (0.13, flip),
    "flip-header": (0.12, flip_header),
    "truncate": (0.10, truncate),
    "length-lie": (0.12, length_lie),
    "nested-sequence": (0.06, nested_sequence),
    "unknown-vr": (0.08, unknown_vr),
    "deflate": (0.12, broken_deflate),
    "transfer-syntax": (0.08, transfer_syntax),
    "geometry": (0.08, geometry),
    "attributes": (0.07, attributes),
    "pixel-data": (0.06, pixel_data),
    "garbage": (0.03, garbage),
}


def _family(rng: _Rand) -> str:
    point, total = rng._rng.random() * sum(w for w, _ in FAMILIES.values()), 0.0
    for name, (weight, _) in FAMILIES.items():
        total += weight
        if point < total:
            return name
    return name


def fuzz_corpus(seed: int = SEED, count: int = COUNT) -> list[FuzzFile]:
    """``count`` mutated files, the same bytes for the same seed; names are unique and sort in draw order."""
    rng = _Rand(seed)
    pydicom_log = logging.getLogger("pydicom")
    files: list[FuzzFile] = []
    all_bases = bases()
    while len(files) < count:
        family, base = _family(rng), rng.pick(all_bases)
        with warnings.catch_warnings():  # pydicom warns about the values it is told to write; they are the point
            warnings.simplefilter("ignore")
            pydicom_log.disabled = True
            try:
                data = FAMILIES[family][1](rng, base)
            finally:
                pydicom_log.disabled = False
        if data is None:  # the family does not apply to this base (no pixel data, no meta...): draw again
            continue
        stem = base.name.rsplit(".", 1)[0]
        name = f"{len(files):04d}-{family}-{stem}.dcm"
        files.append(FuzzFile(name, data, family, base.name, _frames_damaged(base, data)))
    return files


def corpus_digest(files: Sequence[FuzzFile]) -> str:
    """SHA-256 over the names and bytes of a corpus, in order."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\x00" + hashlib.sha256(f.data).digest())
    return digest.hexdigest()
