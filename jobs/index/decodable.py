"""Will train's decoder take this DICOM image? Header-only checks, so header mode refuses what would fail later.

Train decodes with ``pydicom`` (``jobs.ml.preprocess``): it needs a Transfer Syntax UID in the file meta, a
pixel data decoder for it in this environment, Image Pixel attributes that pydicom's decoders accept, pixel data
of the length (native) or structure (encapsulated) they describe, and for PALETTE COLOR the palette itself.
Each check here costs header bytes only: the attributes are validated by pydicom's own ``DecodeRunner`` (so the
index and the decoder agree on what is valid), and encapsulated frames are checked in ``jobs.index.encapsulated``.
What the checks cannot see is damage inside compressed pixel payloads; ``--verify-pixels`` decodes for that.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Any

from pydicom.pixels.decoders.base import DecodeRunner, get_decoder
from pydicom.uid import UID

from jobs.index.dicom_errors import UnusableDicom

UNDEFINED = 0xFFFFFFFF
PIXEL_KEYWORDS = {0x0010: "PixelData", 0x0008: "FloatPixelData", 0x0009: "DoubleFloatPixelData"}


@dataclass(frozen=True, slots=True)
class PixelFacts:
    """What the header says about the pixel data, as the decoder will read it."""

    transfer_syntax: str | None
    """The file meta's Transfer Syntax UID (what pydicom decodes with); ``None`` when absent."""
    options: dict[str, Any]
    """The Image Pixel attributes under pydicom's option names (``rows``, ``bits_allocated``...), when present."""
    keyword: str
    """``PixelData``, ``FloatPixelData`` or ``DoubleFloatPixelData``."""
    value_length: int
    """The pixel element's length field (``UNDEFINED`` for encapsulated data)."""
    available: int
    """Bytes the file holds after the pixel element's header."""
    palette: bool = False
    """Whether the Palette Color Lookup Table descriptors and data are all present."""
    numbers: dict[str, str] = field(default_factory=dict)
    """Display values train computes with (rescale, window), as text, to be checked as numbers."""


def _runner(facts: PixelFacts) -> DecodeRunner:
    """The validated runner for these facts; the same attributes (a series, a dataset) are validated once."""
    key = (facts.transfer_syntax, tuple(sorted(facts.options.items())), facts.keyword)
    try:
        hash(key)
    except TypeError:  # a multi-valued attribute (a broken file): validated, not remembered
        return _validated(*key)
    return _remembered(*key)


def _validated(syntax: str | None, items: tuple[tuple[str, Any], ...], keyword: str) -> DecodeRunner:
    """A ``DecodeRunner`` whose options pydicom validated; it is only read afterwards, so it can be shared."""
    if not syntax:
        raise UnusableDicom(
            "no transfer syntax: the file meta has no (0002,0010) Transfer Syntax UID, so its pixel data "
            "cannot be decoded"
        )
    uid = UID(syntax)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        named = f"{syntax} ({uid.name})" if uid.name != syntax else repr(syntax)
        raise UnusableDicom(f"unsupported transfer syntax: {named} has no pixel data decoder in pydicom") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise UnusableDicom(f"no decoder installed: {uid.name} pixel data needs {missing}")
    runner = DecodeRunner(uid)
    options = dict(items)
    frames = options.get("number_of_frames")
    if frames in (None, "", 0, "0"):  # pydicom reads an absent, empty or zero Number of Frames as 1
        options["number_of_frames"] = 1
    else:
        try:
            count = float(frames)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            count = 0.5
        if not count.is_integer():
            raise UnusableDicom(
                f"inconsistent pixel description: (0028,0008) Number of Frames {str(frames)!r} is not a whole number"
            )
        options["number_of_frames"] = int(count)
    runner.set_options(**options, pixel_keyword=keyword)  # type: ignore[arg-type]  # pydicom's stub: a TypedDict
    runner.set_source(io.BytesIO())  # a stream source: validate() checks the options, not a buffer
    try:
        runner.validate()
    except (AttributeError, ValueError, TypeError) as exc:
        raise UnusableDicom(f"inconsistent pixel description: {exc}") from None
    _check_colour(runner)
    return runner


_remembered = functools.lru_cache(maxsize=256)(_validated)

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")


def _check_colour(runner: DecodeRunner) -> None:
    """One sample per pixel is grey or palette, three are colour (PS3.3 C.7.6.3.1.2); train relies on it."""
    samples, photometric = runner.samples_per_pixel, runner.photometric_interpretation
    if (samples == 1) != (photometric in _MONOCHROME):
        raise UnusableDicom(
            f"inconsistent pixel description: (0028,0004) Photometric Interpretation {photometric} with "
            f"{samples} sample(s) per pixel"
        )
    if photometric in ("YBR_FULL", "YBR_FULL_422") and runner.bits_allocated != 8:
        # pydicom converts YBR to RGB for 8-bit samples only
        raise UnusableDicom(
            f"inconsistent pixel description: {photometric} with {runner.bits_allocated} bits allocated; "
            "YBR colour is converted to RGB only for 8-bit samples"
        )


def check_decodable(facts: PixelFacts) -> DecodeRunner:
    """Raise ``UnusableDicom`` naming what train's decoder would fail on; the validated runner otherwise."""
    runner = _runner(facts)
    encapsulated = runner.transfer_syntax.is_encapsulated
    if encapsulated and facts.keyword != "PixelData":
        raise UnusableDicom(f"inconsistent pixel description: {facts.keyword} in a compressed transfer syntax")
    if encapsulated != (facts.value_length == UNDEFINED):
        said = "compressed (encapsulated)" if encapsulated else "native"
        found = "native" if encapsulated else "encapsulated"
        raise UnusableDicom(
            f"pixel data does not match the transfer syntax: {runner.transfer_syntax.name} is {said} "
            f"but the Pixel Data element is {found}"
        )
    if not encapsulated:
        _check_native_length(runner, facts)
    if runner.photometric_interpretation == "PALETTE COLOR" and not facts.palette:
        raise UnusableDicom("no palette: PALETTE COLOR without its Palette Color Lookup Table descriptors and data")
    for name, text in facts.numbers.items():
        for part in text.split("\\"):
            try:
                float(part)
            except ValueError:
                raise UnusableDicom(f"unreadable DICOM header value: {name} {text!r} is not a number") from None
    return runner


def _check_native_length(runner: DecodeRunner, facts: PixelFacts) -> None:
    """The element must fit in the file and hold exactly the frames the attributes describe (plus padding)."""
    length = facts.value_length
    if length > facts.available:
        raise UnusableDicom(f"truncated: pixel data declares {length} bytes, the file holds {facts.available}")
    frame = runner.frame_length(unit="bytes")
    frames = runner.number_of_frames
    expected = int(-(-frame * frames // 1))  # 1-bit frames may end mid-byte: whole bytes, rounded up
    if length < expected:
        raise UnusableDicom(f"truncated: pixel data holds {length} bytes, the header needs {expected}")
    described = (
        f"{frames} frame(s) of {runner.rows}x{runner.columns}x{runner.samples_per_pixel} at "
        f"{runner.bits_allocated} bits"
    )
    if runner.photometric_interpretation == "YBR_FULL_422":  # pydicom refuses data a third larger: it is 4:4:4
        full = expected // 2 * 3
        if length >= full + full % 2:
            raise UnusableDicom(
                f"inconsistent pixel description: pixel data holds {length} bytes, a third more than "
                f"YBR_FULL_422 {described} needs"
            )
    # Whole extra frames make pydicom return more frames than Number of Frames says (a shape train cannot use);
    # less than a frame more is padding, which pydicom drops.
    elif frame and length - expected >= frame:
        raise UnusableDicom(
            f"inconsistent pixel description: pixel data holds {length} bytes, "
            f"{int((length - expected) // frame)} frame(s) more than the {described} the header describes"
        )
