"""A minimal walker over little-endian DICOM data elements, for the header fast path.

It reads element headers with ``struct`` and skips values (sequences included, by walking their items), so
it costs a fraction of building a pydicom ``Dataset``. It understands only what it must: explicit and implicit
VR little endian, defined and undefined lengths. Anything else raises ``NotPlain``, and the caller falls back
to pydicom, which has the last word on every file the walker does not fully understand.
"""

from __future__ import annotations

import struct

_U16x2 = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
UNDEFINED = 0xFFFFFFFF
VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
PIXEL_ELEMENTS = (0x0010, 0x0008, 0x0009)  # (7FE0,0010) PixelData, (7FE0,0008) Float, (7FE0,0009) Double
_ITEM, _ITEM_END, _SEQUENCE_END = 0xE000, 0xE00D, 0xE0DD


class NotPlain(ValueError):
    """The bytes hold something the walker does not handle (or end early): let pydicom read the file."""


def _element(buf: bytes, pos: int, implicit: bool) -> tuple[int, int, bytes | None, int, int]:
    """(group, element, VR or None, value start, value length) of the element header at ``pos``."""
    if pos + 8 > len(buf):
        raise NotPlain("ends inside an element header")
    group, elem = _U16x2.unpack_from(buf, pos)
    if implicit or group == 0xFFFE:  # item tags never carry a VR
        return group, elem, None, pos + 8, _U32.unpack_from(buf, pos + 4)[0]
    vr = buf[pos + 4 : pos + 6]
    if vr not in VRS:
        raise NotPlain(f"unknown VR {vr!r}")
    if vr in LONG_VRS:
        if pos + 12 > len(buf):
            raise NotPlain("ends inside an element header")
        return group, elem, vr, pos + 12, _U32.unpack_from(buf, pos + 8)[0]
    return group, elem, vr, pos + 8, _U16.unpack_from(buf, pos + 6)[0]


def _skip_sequence(buf: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Position after an undefined-length sequence whose items start at ``pos``."""
    if depth > 16:
        raise NotPlain("sequences nested too deep")
    while True:
        group, elem, _, start, length = _element(buf, pos, True)
        if group != 0xFFFE:
            raise NotPlain("expected an item tag inside a sequence")
        if elem == _SEQUENCE_END:
            return start
        if elem != _ITEM:
            raise NotPlain("unexpected delimiter inside a sequence")
        pos = start + length if length != UNDEFINED else _skip_item(buf, start, implicit, depth + 1)
        if pos > len(buf):
            raise NotPlain("ends inside a sequence")


def _skip_item(buf: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Position after an undefined-length item's data set and its delimiter."""
    while True:
        group, elem, vr, start, length = _element(buf, pos, implicit)
        if group == 0xFFFE:
            if elem != _ITEM_END:
                raise NotPlain("unexpected delimiter inside an item")
            return start
        pos = _after_value(buf, start, length, vr, implicit, depth)


def _after_value(buf: bytes, start: int, length: int, vr: bytes | None, implicit: bool, depth: int) -> int:
    if length != UNDEFINED:
        end = start + length
        if end > len(buf):
            raise NotPlain("ends inside a value")
        return end
    if vr is None or vr == b"SQ":
        return _skip_sequence(buf, start, implicit, depth)
    if vr == b"UN":  # undefined-length UN holds an implicit VR little endian sequence
        return _skip_sequence(buf, start, True, depth)
    raise NotPlain(f"undefined length on VR {vr!r}")


def meta_elements(buf: bytes, pos: int) -> tuple[dict[int, bytes], int]:
    """The file meta group (explicit VR little endian) from ``pos``: ``{tag: value}`` and where it ends."""
    values: dict[int, bytes] = {}
    while True:
        group, elem, vr, start, length = _element(buf, pos, False)
        if group != 0x0002:
            return values, pos
        if length == UNDEFINED:
            raise NotPlain("undefined length in the file meta group")
        values[0x00020000 | elem] = buf[start : start + length]
        pos = _after_value(buf, start, length, vr, False, 0)


def top_level_elements(
    buf: bytes, pos: int, implicit: bool, wanted: dict[int, tuple[bytes, ...]]
) -> tuple[dict[int, bytes], int]:
    """Values of the ``wanted`` top-level tags up to the pixel data element, and that element's position.

    ``wanted`` maps a tag to the VRs it may have (checked in explicit VR); raises ``NotPlain`` if the data
    set ends before pixel data, or if the first element looks explicit in an implicit data set.
    """
    if implicit and pos + 6 <= len(buf) and buf[pos + 4 : pos + 6] in VRS:
        raise NotPlain("implicit VR declared but the data set looks explicit")
    found: dict[int, bytes] = {}
    while True:
        if pos == len(buf):  # the data set ends on an element boundary: a whole file with no pixel data
            raise NotPlain("no pixel data: the data set ends before any pixel data element")
        group, elem, vr, start, length = _element(buf, pos, implicit)
        if group == 0x7FE0 and elem in PIXEL_ELEMENTS:
            return found, pos
        tag = group << 16 | elem
        if tag in wanted:
            if vr is not None and vr not in wanted[tag]:
                raise NotPlain(f"unexpected VR {vr!r} for ({group:04X},{elem:04X})")
            if length == UNDEFINED:
                raise NotPlain("undefined length on a wanted element")
            found[tag] = buf[start : start + length]
        pos = _after_value(buf, start, length, vr, implicit, 0)
