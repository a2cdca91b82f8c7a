"""Read the DICOM header fields the index needs from leading bytes, without touching pixel data.

``pydicom.dcmread(stop_before_pixels=True, force=True)`` parses until the pixel data element, so only the
header is read; ``force`` accepts files written without the 128-byte preamble. The caller hands in the first
bytes of the object; ``NeedMoreBytes`` means the header runs past them and the caller should read further.
"""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
import zlib
from dataclasses import dataclass

import pydicom
from pydicom.errors import BytesLengthException
from pydicom.multival import MultiValue
from pydicom.uid import DeflatedExplicitVRLittleEndian

from jobs.index.decodable import PIXEL_KEYWORDS, UNDEFINED, PixelFacts, check_decodable
from jobs.index.dicom_elements import NotPlain, meta_elements, top_level_elements
from jobs.index.dicom_errors import NeedMoreBytes, UnusableDicom
from jobs.index.encapsulated import Read, check_encapsulated
from jobs.index.non_images import non_image_reason
from jobs.ml.preprocess import implied_syntax

__all__ = ["DicomHeader", "NeedMoreBytes", "UnusableDicom", "fast_header", "pydicom_header", "read_header"]

_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")
_ALL_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
_LONG_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")


@dataclass(frozen=True, slots=True)
class DicomHeader:
    """The header values that go into the index, exactly as pydicom reads them (``None`` when absent)."""

    patient_id: str | None
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    modality: str | None
    body_part: str | None
    photometric: str | None
    transfer_syntax: str | None
    rows: int | None
    columns: int | None
    bits_allocated: int | None
    bits_stored: int | None
    samples_per_pixel: int | None
    frames: int | None
    pixel_spacing_row: float | None
    pixel_spacing_col: float | None
    image_position: tuple[float, ...] | None = None
    """ImagePositionPatient (mm), three values: where the slice lies (``jobs.index.volumes``)."""
    image_orientation: tuple[float, ...] | None = None
    """ImageOrientationPatient, six direction cosines."""
    slice_spacing: float | None = None
    """SpacingBetweenSlices, else SliceThickness (mm): the slice distance of a multi-frame volume."""
    other_patient_id: str | None = None
    """The first of (0010,1000) Other Patient IDs or (0010,1002) Other Patient IDs Sequence: an identity when
    PatientID is empty."""
    lossy_compression: str | None = None
    """(0028,2110) Lossy Image Compression: ``01`` when the pixels were lossy-compressed at some point."""
    # who and how: the subgroups train reports metrics for
    manufacturer: str | None = None
    view_position: str | None = None
    patient_sex: str | None = None
    patient_age: str | None = None


def _text(ds, name: str) -> str | None:
    value = ds.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _transfer_syntax(ds) -> str | None:
    return _text(ds.file_meta, "TransferSyntaxUID") if hasattr(ds, "file_meta") else None


def _int(ds, name: str) -> int | None:
    value = ds.get(name)
    if value is None or value == "":
        return None
    return int(value)


def _spacing(ds) -> tuple[float | None, float | None]:
    value = ds.get("PixelSpacing")
    if value is None or value == "":
        return None, None
    values = list(value) if isinstance(value, list | tuple) or hasattr(value, "__iter__") else [value]
    if len(values) != 2:
        raise UnusableDicom(f"PixelSpacing has {len(values)} values, expected 2")
    return float(values[0]), float(values[1])


def _numbers(ds, name: str, count: int) -> tuple[float, ...] | None:
    """``count`` numbers of a multi-valued DS, or ``None`` when absent, unreadable or not that many numbers.

    Only volumes use these, so a malformed one makes the file a plain image, never a quarantined one.
    """
    try:
        value = ds.get(name)
        if value is None or value == "":
            return None
        values = tuple(float(v) for v in (value if isinstance(value, MultiValue | list | tuple) else [value]))
    except Exception:
        return None
    return values if len(values) == count and all(map(math.isfinite, values)) else None


def _slice_spacing(ds) -> float | None:
    for name in ("SpacingBetweenSlices", "SliceThickness"):
        found = _numbers(ds, name, 1)
        if found is not None and found[0] > 0:
            return found[0]
    return None


def _pixel_length(head: bytes, pos: int, explicit: bool, little: bool) -> tuple[int, int] | None:
    """(header length, value length) of the pixel data element at ``pos``; ``None`` if unparseable."""
    order = "<" if little else ">"
    try:
        if explicit:
            vr = head[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                return 12, struct.unpack(order + "I", head[pos + 8 : pos + 12])[0]
            return 8, struct.unpack(order + "H", head[pos + 6 : pos + 8])[0]
        return 8, struct.unpack(order + "I", head[pos + 4 : pos + 8])[0]
    except struct.error:
        return None


def read_header(head: bytes, size: int, read: Read | None = None) -> DicomHeader:
    """The header of a DICOM object of ``size`` bytes whose first ``len(head)`` bytes are ``head``.

    Raises ``NeedMoreBytes`` when the header continues past ``head``, ``UnusableDicom`` (the quarantine
    reason) when the file is not a DICOM image train can decode: unreadable header, no pixel data, truncated or
    inconsistent pixels, a transfer syntax without a decoder. ``read(offset, size)`` reads the object beyond
    ``head`` for the walk over encapsulated frames; without it only what ``head`` holds is walked.
    """
    found = _fast(head, size)
    header, facts, value_at = found if found is not None else _pydicom(head, size)
    _check_pixels(head, size, read, facts, value_at)
    return header


def pydicom_header(head: bytes, size: int) -> DicomHeader:
    """``read_header`` through a full ``pydicom.dcmread``: the reference every file can take."""
    header, facts, value_at = _pydicom(head, size)
    _check_pixels(head, size, None, facts, value_at)
    return header


def fast_header(head: bytes, size: int) -> DicomHeader | None:
    """``read_header`` for plain little-endian files with a preamble; ``None`` when pydicom must decide."""
    found = _fast(head, size)
    if found is None:
        return None
    header, facts, value_at = found
    _check_pixels(head, size, None, facts, value_at)
    return header


def _check_pixels(head: bytes, size: int, read: Read | None, facts: PixelFacts, value_at: int | None) -> None:
    runner = check_decodable(facts)
    if facts.value_length != UNDEFINED or value_at is None:
        return
    if read is None:
        if len(head) < size:
            return  # the frames lie beyond the bytes given and there is no way to read them
        read = lambda offset, n: head[offset : offset + n]  # noqa: E731
    check_encapsulated(read, value_at, size, runner)


def failure_reason(exc: BaseException) -> str:
    """The quarantine reason for an exception pydicom raised while reading a header: what is wrong, in its words."""
    message = " ".join(str(exc).split())[:240]
    if isinstance(exc, RecursionError):
        return "sequences nested too deep: pydicom cannot read a header nested beyond the recursion limit"
    if isinstance(exc, MemoryError):
        return "element too large: a length in the header asks for more memory than there is"
    if isinstance(exc, zlib.error):
        return f"deflated data set cannot be inflated: {message}"
    if isinstance(exc, BytesLengthException):
        return f"bad value length: {message}"
    if isinstance(exc, NotImplementedError) and "Value Representation" in message:
        return f"unknown VR: {message}"
    return f"unreadable DICOM header: {type(exc).__name__}: {message}"


def _dcmread(buffer: io.BytesIO, *, complete: bool, stop_before_pixels: bool):
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity it tolerates; the index reports outcomes
            warnings.simplefilter("ignore")
            return pydicom.dcmread(buffer, stop_before_pixels=stop_before_pixels, force=True)
    except Exception as exc:  # any failure to parse is this file's, whatever pydicom raised
        if not complete:
            raise NeedMoreBytes from exc
        raise UnusableDicom(failure_reason(exc)) from exc


def _pydicom(head: bytes, size: int) -> tuple[DicomHeader, PixelFacts, int | None]:
    try:
        return _pydicom_read(head, size)
    except (UnusableDicom, NeedMoreBytes):
        raise
    except Exception as exc:  # pydicom converts values lazily: a malformed value fails here, not at read
        reason = failure_reason(exc).replace("unreadable DICOM header:", "unreadable DICOM header value:", 1)
        raise UnusableDicom(reason) from exc


def _pydicom_read(head: bytes, size: int) -> tuple[DicomHeader, PixelFacts, int | None]:
    complete = len(head) >= size
    buffer = io.BytesIO(head)
    ds = _dcmread(buffer, complete=complete, stop_before_pixels=True)
    pos = buffer.tell()
    deflated = _transfer_syntax(ds) == DeflatedExplicitVRLittleEndian
    full = None
    if deflated:  # positions refer to the inflated stream: parse it all and look for pixel data there
        if not complete:
            raise NeedMoreBytes
        full = _dcmread(io.BytesIO(head), complete=True, stop_before_pixels=False)
        at_pixels = any(keyword in full for keyword in PIXEL_KEYWORDS.values())
    else:
        at_pixels = head[pos : pos + 4] in _PIXEL_TAGS
    if not at_pixels:
        if not complete:
            raise NeedMoreBytes
        if any(tag in head[-12:] for tag in _PIXEL_TAGS):  # pydicom swallowed a cut-off pixel element header
            raise UnusableDicom("truncated: the file ends inside the pixel data element's header")
        if _ends_inside_an_element(head):  # pydicom reads a cut-off header quietly; say what happened
            raise UnusableDicom("truncated: the file ends inside the DICOM header, before any pixel data")
        meta = getattr(ds, "file_meta", None)
        sop_class = _text(ds, "SOPClassUID") or (_text(meta, "MediaStorageSOPClassUID") if meta is not None else None)
        raise UnusableDicom(non_image_reason(sop_class, _text(ds, "Modality")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header, options, numbers, palette = _header_values(ds)
    if not header.rows or not header.columns:
        raise UnusableDicom("DICOM header has no Rows/Columns: not an image")
    syntax = header.transfer_syntax
    if full is not None:
        keyword = next(k for k in PIXEL_KEYWORDS.values() if k in full)
        length = len(full[keyword].value or b"")
        return header, PixelFacts(syntax, options, keyword, length, length, palette, numbers), None
    _, little = ds.original_encoding
    little = True if little is None else bool(little)
    # Explicit or implicit by the element's own bytes: some files contradict their transfer syntax.
    explicit = head[pos + 4 : pos + 6] in _ALL_VRS
    lengths = _pixel_length(head, pos, explicit=explicit, little=little)
    if lengths is None:
        raise UnusableDicom("truncated: the file ends inside the pixel data element's header")
    header_len, value_len = lengths
    if syntax is None and value_len != UNDEFINED:
        syntax = implied_syntax(explicit, little)  # what pydicom, and so train, decodes such native pixels as
    (elem,) = struct.unpack("<H" if little else ">H", head[pos + 2 : pos + 4])
    facts = PixelFacts(syntax, options, PIXEL_KEYWORDS[elem], value_len, size - pos - header_len, palette, numbers)
    return header, facts, pos + header_len


_PIXEL_OPTIONS = {
    "SamplesPerPixel": "samples_per_pixel",
    "PhotometricInterpretation": "photometric_interpretation",
    "PlanarConfiguration": "planar_configuration",
    "NumberOfFrames": "number_of_frames",
    "Rows": "rows",
    "Columns": "columns",
    "BitsAllocated": "bits_allocated",
    "BitsStored": "bits_stored",
    "PixelRepresentation": "pixel_representation",
}
"""Image Pixel attributes under the option names of pydicom's decoders."""
_NUMBERS = ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth")
"""Display values train's pipeline computes with (modality LUT, VOI window)."""
_COLOURS = ("Red", "Green", "Blue")


def _other_patient_id(ds) -> str | None:
    """The first non-empty Other Patient ID, from the (retired) multi-valued element or the sequence."""
    value = ds.get("OtherPatientIDs")
    for item in value if isinstance(value, MultiValue) else [value]:
        if item is not None and (text := str(item).strip()):
            return text
    for item in ds.get("OtherPatientIDsSequence") or []:
        if (patient := _text(item, "PatientID")) is not None:
            return patient
    return None


def _header_values(ds) -> tuple[DicomHeader, dict[str, object], dict[str, str], bool]:
    """The index's header fields, the decoder's options, the display numbers as text, and whether a palette is there."""
    row_mm, col_mm = _spacing(ds)
    header = DicomHeader(
        patient_id=_text(ds, "PatientID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        photometric=_text(ds, "PhotometricInterpretation"),
        transfer_syntax=_transfer_syntax(ds),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        bits_allocated=_int(ds, "BitsAllocated"),
        bits_stored=_int(ds, "BitsStored"),
        samples_per_pixel=_int(ds, "SamplesPerPixel"),
        frames=_int(ds, "NumberOfFrames"),
        pixel_spacing_row=row_mm,
        pixel_spacing_col=col_mm,
        image_position=_numbers(ds, "ImagePositionPatient", 3),
        image_orientation=_numbers(ds, "ImageOrientationPatient", 6),
        slice_spacing=_slice_spacing(ds),
        other_patient_id=_other_patient_id(ds),
        lossy_compression=_text(ds, "LossyImageCompression"),
        manufacturer=_text(ds, "Manufacturer"),
        view_position=_text(ds, "ViewPosition"),
        patient_sex=_text(ds, "PatientSex"),
        patient_age=_text(ds, "PatientAge"),
    )
    options: dict[str, object] = {}
    for name, option in _PIXEL_OPTIONS.items():
        value = ds.get(name)
        if value is not None and value != "":
            options[option] = str(value).strip() if isinstance(value, str) else value
    numbers = {}
    for name in _NUMBERS:
        value = ds.get(name)
        if value is not None and value != "":
            numbers[name] = "\\".join(str(v) for v in (value if isinstance(value, MultiValue) else [value]))
    palette = all(f"{c}PaletteColorLookupTableDescriptor" in ds for c in _COLOURS) and (
        all(f"{c}PaletteColorLookupTableData" in ds for c in _COLOURS)
        or all(f"Segmented{c}PaletteColorLookupTableData" in ds for c in _COLOURS)
    )
    return header, options, numbers, palette


# -- fast path ------------------------------------------------------------------------------------------------
# Most files are little-endian with a preamble and plain ASCII values. For those, walking the raw elements with
# pydicom's own element generator and decoding the dozen values we keep is about three times cheaper than
# building a Dataset. Anything unusual (big endian, deflate, no preamble, non-ASCII or multi-valued text, no
# pixel data, a header past ``head``) returns ``None`` and takes the full pydicom path above, which decides.
_IMPLICIT_LE = "1.2.840.10008.1.2"
_SLOW_SYNTAXES = frozenset(("1.2.840.10008.1.2.2", DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.1.99"))
_TEXT_TAGS = {
    0x00100020: "patient_id",
    0x0020000D: "study_uid",
    0x0020000E: "series_uid",
    0x00080018: "sop_uid",
    0x00080060: "modality",
    0x00180015: "body_part",
    0x00280004: "photometric",
    0x00080070: "manufacturer",
    0x00185101: "view_position",
    0x00100040: "patient_sex",
    0x00101010: "patient_age",
    0x00282110: "lossy_compression",
    0x00101000: "other_patient_id",
}
_OTHER_IDS_SEQUENCE = 0x00101002
"""Other Patient IDs Sequence: its items are pydicom's to read."""
_US_TAGS = {
    0x00280010: "rows",
    0x00280011: "columns",
    0x00280100: "bits_allocated",
    0x00280101: "bits_stored",
    0x00280002: "samples_per_pixel",
}
_PIXEL_US_TAGS = {0x00280103: "pixel_representation", 0x00280006: "planar_configuration"}
_NUMBER_TAGS = {0x00281053: "RescaleSlope", 0x00281052: "RescaleIntercept", 0x00281050: "WindowCenter",
                0x00281051: "WindowWidth"}  # fmt: skip
_SHORT_TAGS = {**_US_TAGS, **_PIXEL_US_TAGS}
"""Every US value the fast path reads, under pydicom's decoder option names."""
_FRAMES, _SPACING, _TRANSFER_SYNTAX = 0x00280008, 0x00280030, 0x00020010
_GEOMETRY_TAGS = {0x00200032: ("image_position", 3), 0x00200037: ("image_orientation", 6)}
_SLICE_SPACING_TAGS = (0x00180088, 0x00180050)  # SpacingBetweenSlices, then SliceThickness
_VRS_OF: dict[int, tuple[bytes, ...]] = {
    **dict.fromkeys((0x00100020, 0x00080070, 0x00101000), (b"LO",)),
    0x00101010: (b"AS",),
    **dict.fromkeys((0x0020000D, 0x0020000E, 0x00080018), (b"UI",)),
    **dict.fromkeys((0x00080060, 0x00180015, 0x00280004, 0x00282110, 0x00185101, 0x00100040), (b"CS",)),
    0x00101002: (b"SQ",),
    **dict.fromkeys(_US_TAGS.keys() | _PIXEL_US_TAGS.keys(), (b"US",)),
    **dict.fromkeys(_NUMBER_TAGS, (b"DS",)),
    _FRAMES: (b"IS",),
    _SPACING: (b"DS",),
    **dict.fromkeys((*_GEOMETRY_TAGS, *_SLICE_SPACING_TAGS), (b"DS",)),
}
_UIDS = frozenset((0x0020000D, 0x0020000E, 0x00080018))
_SPECIAL_BYTES = re.compile(rb"[\x01-\x1f\\\x7f-\xff]")


def _ascii(value: bytes, uid: bool = False) -> str | None:
    """A plain ASCII single value, stripped as pydicom strips it; ``None`` when empty.

    Raises ``ValueError`` for what pydicom treats specially (multi-values, character sets, control bytes, NUL
    padding outside UIDs), so the caller falls back to pydicom.
    """
    if _SPECIAL_BYTES.search(value) or (not uid and b"\x00" in value):
        raise ValueError("not a plain ASCII single value")
    text = value.decode("ascii").rstrip("\x00") if uid else value.decode("ascii")
    if "\x00" in text:
        raise ValueError("embedded NUL")
    return text.strip() or None


def _plain_start(head: bytes) -> tuple[str, int] | None:
    """Transfer syntax and dataset offset of a file with a preamble in a syntax the fast reader walks, else ``None``.

    Raises what ``meta_elements`` raises on a broken file meta group; callers decide what that means.
    """
    if head[128:132] != b"DICM":
        return None
    meta, pos = meta_elements(head, 132)
    syntax = _ascii(meta.get(_TRANSFER_SYNTAX, b""), uid=True)
    if syntax is None or syntax in _SLOW_SYNTAXES:
        return None
    return syntax, pos


def _ends_inside_an_element(head: bytes) -> bool:
    """Whether a little-endian file with a preamble stops in the middle of an element (a truncated header)."""
    try:
        start = _plain_start(head)
        if start is None:
            return False
        syntax, pos = start
        top_level_elements(head, pos, syntax == _IMPLICIT_LE, {})
    except NotPlain as exc:
        return str(exc).startswith("ends inside")
    except ValueError:
        return False
    return False


def _fast_numbers(raw: bytes, count: int) -> tuple[float, ...] | None:
    try:
        text = _ascii(raw.replace(b"\\", b"/"))
        values = tuple(float(p) for p in text.split("/")) if text is not None else ()
    except ValueError:
        return None
    return values if len(values) == count and all(map(math.isfinite, values)) else None


def _fast_geometry(found: dict[int, bytes]) -> dict[str, object]:
    """Slice position, orientation and spacing; ``None`` for what is absent or malformed (as ``_numbers``)."""
    geometry: dict[str, object] = {
        name: _fast_numbers(found.get(tag, b""), n) for tag, (name, n) in _GEOMETRY_TAGS.items()
    }
    spacings = [_fast_numbers(found.get(tag, b""), 1) for tag in _SLICE_SPACING_TAGS]
    geometry["slice_spacing"] = next((s[0] for s in spacings if s is not None and s[0] > 0), None)
    return geometry


# A single pass over a binary layout: each branch is one element kind, kept together to stay readable.
def _fast(head: bytes, size: int) -> tuple[DicomHeader, PixelFacts, int] | None:  # noqa: C901
    """Header, pixel facts and pixel value offset of a plain little-endian file; ``None`` when pydicom must decide."""
    try:
        start = _plain_start(head)
        if start is None:
            return None
        syntax, pos = start
        found, pos = top_level_elements(head, pos, syntax == _IMPLICIT_LE, _VRS_OF)
        values: dict[str, object] = {
            name: _ascii(found[tag], uid=tag in _UIDS) if tag in found else None for tag, name in _TEXT_TAGS.items()
        }
        shorts: dict[int, int] = {}
        for tag in _SHORT_TAGS:
            raw = found.get(tag)
            if raw is None or raw == b"":
                continue
            if len(raw) != 2:
                return None
            shorts[tag] = struct.unpack("<H", raw)[0]
        values.update({name: shorts.get(tag) for tag, name in _US_TAGS.items()})
        frames = _ascii(found.get(_FRAMES, b""))
        if frames is not None and not frames.isdigit():
            return None
        spacing = _ascii(found.get(_SPACING, b"").replace(b"\\", b"/"))
        row_mm = col_mm = None
        if spacing is not None:
            parts = spacing.split("/")
            if len(parts) != 2:
                return None
            row_mm, col_mm = float(parts[0]), float(parts[1])
        geometry = _fast_geometry(found)
        numbers = {}
        for tag, name in _NUMBER_TAGS.items():
            if tag in found and (text := _ascii(found[tag].replace(b"\\", b"/"))) is not None:
                numbers[name] = "\\".join(part.strip() for part in text.split("/"))
    except Exception:  # any doubt: the full pydicom path decides, with its own reason
        return None
    header = DicomHeader(
        transfer_syntax=syntax,
        frames=int(frames) if frames is not None else None,
        pixel_spacing_row=row_mm,
        pixel_spacing_col=col_mm,
        **values,  # type: ignore[arg-type]
        **geometry,  # type: ignore[arg-type]
    )
    if not header.rows or not header.columns or header.photometric == "PALETTE COLOR" or _OTHER_IDS_SEQUENCE in found:
        return None  # not an image, a palette to look for or Other Patient IDs items to read: pydicom decides
    options: dict[str, object] = {option: shorts[tag] for tag, option in _SHORT_TAGS.items() if tag in shorts}
    if header.photometric is not None:
        options["photometric_interpretation"] = header.photometric
    if frames is not None:
        options["number_of_frames"] = int(frames)
    lengths = _pixel_length(head, pos, explicit=syntax != _IMPLICIT_LE, little=True)
    if lengths is None:
        raise UnusableDicom("truncated: the file ends inside the pixel data element's header")
    header_len, value_len = lengths
    (elem,) = struct.unpack("<H", head[pos + 2 : pos + 4])
    facts = PixelFacts(syntax, options, PIXEL_KEYWORDS[elem], value_len, size - pos - header_len, numbers=numbers)
    return header, facts, pos + header_len
