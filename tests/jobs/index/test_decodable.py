"""Header mode refuses, from header bytes alone, DICOM files that train's decoder cannot decode, and says why;
and a header that breaks pydicom (deep nesting, unknown VRs, broken deflate, bad lengths) is a reason, not a crash.

Every case is a pydicom test file changed in one way; each refusal is checked against train's own decode, which
must fail on the same bytes (the index refuses nothing train could use).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

from jobs.index.dicom_header import UnusableDicom, read_header
from jobs.ml.preprocess import Preprocessing
from tests.support.dicom_fuzz import nested_sequence_bytes


def _file(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def _resaved(name: str, change: Callable[[pydicom.Dataset], None]) -> bytes:
    """``name`` read by pydicom, changed, and written back in its own encoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(get_testdata_file(name))
        change(ds)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _with_syntax(name: str, syntax: str | None) -> bytes:
    """``name`` with its file meta rewritten to name ``syntax`` (``None``: no Transfer Syntax UID); data set as is."""
    data = _file(name)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    start = 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
    meta = ds.file_meta
    if syntax is None:
        del meta.TransferSyntaxUID
    else:
        meta.TransferSyntaxUID = syntax
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=False)
    return data[:128] + b"DICM" + out.getvalue() + data[start:]


def _replace(name: str, old: bytes, new: bytes) -> bytes:
    data = _file(name)
    assert data.count(old) >= 1, old
    return data.replace(old, new, 1)


def _deep_sequence(depth: int) -> bytes:
    data = _file("MR_small.dcm")
    at = data.index(b"\x28\x00\x02\x00US")  # (0028,0002) Samples per Pixel: the nesting goes before it
    return data[:at] + nested_sequence_bytes(depth, implicit=False, defined=False) + data[at:]


def _flip_deflated() -> bytes:
    data = bytearray(_file("image_dfl.dcm"))
    ds = pydicom.dcmread(get_testdata_file("image_dfl.dcm"), stop_before_pixels=True)
    start = 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
    for offset in (3, 40, 90):
        data[start + offset] ^= 0xFF
    return bytes(data)


def _odd_length_rows() -> bytes:
    # (0028,0010) Rows, US, length 2 -> 3 (one byte more after it, so the elements after stay aligned)
    return _replace("MR_small.dcm", b"\x28\x00\x10\x00US\x02\x00\x40\x00", b"\x28\x00\x10\x00US\x03\x00\x40\x00\x00")


CASES = {
    "no transfer syntax, encapsulated data": (
        lambda: _with_syntax("JPEG2000.dcm", None),
        "no transfer syntax: the file meta has no",
    ),
    "video syntax": (lambda: _with_syntax("MR_small.dcm", "1.2.840.10008.1.2.4.100"), "unsupported transfer syntax"),
    "unknown syntax": (lambda: _with_syntax("MR_small.dcm", "1.2.3.4.5"), "unsupported transfer syntax: '1.2.3.4.5'"),
    "native syntax, encapsulated data": (
        lambda: _with_syntax("JPEG2000.dcm", "1.2.840.10008.1.2.1"),
        "pixel data does not match the transfer syntax: Explicit VR Little Endian is native",
    ),
    "compressed syntax, native data": (
        lambda: _with_syntax("MR_small.dcm", "1.2.840.10008.1.2.5"),
        "pixel data does not match the transfer syntax: RLE Lossless is compressed",
    ),
    "bits stored above bits allocated": (
        lambda: _resaved("MR_small.dcm", lambda ds: setattr(ds, "BitsStored", 17)),
        "inconsistent pixel description: A (0028,0101) 'Bits Stored' value of '17' is invalid",
    ),
    "no bits allocated": (
        lambda: _resaved("CT_small.dcm", lambda ds: delattr(ds, "BitsAllocated")),
        "inconsistent pixel description: Missing required element: (0028,0100) 'Bits Allocated'",
    ),
    "rows halved: a second frame's worth of data": (
        lambda: _resaved("MR_small.dcm", lambda ds: setattr(ds, "Rows", 32)),
        "inconsistent pixel description: pixel data holds 8192 bytes, 1 frame(s) more",
    ),
    "colour photometric, one sample": (
        lambda: _resaved("MR_small.dcm", lambda ds: setattr(ds, "PhotometricInterpretation", "RGB")),
        "inconsistent pixel description: (0028,0004) Photometric Interpretation RGB with 1 sample(s)",
    ),
    "palette without its table": (
        lambda: _resaved("MR_small.dcm", lambda ds: setattr(ds, "PhotometricInterpretation", "PALETTE COLOR")),
        "no palette: PALETTE COLOR without its Palette Color Lookup Table",
    ),
    "16-bit YBR": (
        lambda: _resaved("SC_rgb_rle_16bit.dcm", lambda ds: setattr(ds, "PhotometricInterpretation", "YBR_FULL")),
        "inconsistent pixel description: YBR_FULL with 16 bits allocated",
    ),
    "fractional number of frames": (
        lambda: _resaved("MR_small_RLE.dcm", lambda ds: setattr(ds, "NumberOfFrames", "1.5")),
        "inconsistent pixel description: (0028,0008) Number of Frames '1.5' is not a whole number",
    ),
    "rescale intercept not a number": (
        # (0028,1052) Rescale Intercept
        lambda: _replace("CT_small.dcm", b"\x28\x00\x52\x10DS\x06\x00-1024 ", b"\x28\x00\x52\x10DS\x06\x00-1o24 "),
        "unreadable DICOM header value",
    ),
    "sequences nested 400 deep": (lambda: _deep_sequence(400), "sequences nested too deep"),
    "unknown VR": (
        # (0028,0004) Photometric Interpretation
        lambda: _replace("MR_small.dcm", b"\x28\x00\x04\x00CS", b"\x28\x00\x04\x00ZQ"),
        "unknown VR: Unknown Value Representation 'ZQ' in tag (0028,0004)",
    ),
    "broken deflate stream": (_flip_deflated, "deflated data set cannot be inflated: Error -3"),
    "odd length for a 2-byte value": (_odd_length_rows, "bad value length: Expected total bytes to be an even"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_header_mode_refuses_what_train_cannot_decode_and_says_why(case):
    # GIVEN a DICOM file with one thing wrong
    build, reason = CASES[case]
    data = build()
    # WHEN its header is read THEN it is refused with a reason naming what is wrong
    with pytest.raises(UnusableDicom) as refused:
        read_header(data, len(data))
    assert str(refused.value).startswith(reason), str(refused.value)
    # AND train's own decode fails on the same bytes (a DataError, or worse): the refusal loses nothing
    with pytest.raises(Exception), warnings.catch_warnings():  # noqa: B017 - train fails in many ways
        warnings.simplefilter("ignore")
        Preprocessing(image_size=16).native(data, case)


@pytest.mark.parametrize(
    "name",
    ["MR_small.dcm", "CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_gdcm.dcm", "rtdose.dcm",
     "SC_rgb_rle_16bit_2frame.dcm", "SC_ybr_full_422_uncompressed.dcm", "examples_palette.dcm", "liver_1frame.dcm",
     "MR_small_padded.dcm", "J2K_pixelrep_mismatch.dcm", "image_dfl.dcm", "examples_ybr_color.dcm"],
)  # fmt: skip
def test_files_train_decodes_pass_every_check(name):
    # GIVEN a pydicom test file train decodes (padded, deflated, palette, 1-bit, multi-frame, YBR 4:2:2...)
    data = _file(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Preprocessing(image_size=16).native(data, name)
    # WHEN its header is read THEN it is accepted
    header = read_header(data, len(data))
    assert header.rows and header.columns


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: _with_syntax("MR_small.dcm", None), id="file meta without a transfer syntax"),
        pytest.param(lambda: _file("OT-PAL-8-face.dcm"), id="no preamble, no file meta (OT-PAL-8-face.dcm)"),
    ],
)
def test_native_pixels_without_a_transfer_syntax_are_read_as_pydicom_reads_the_data_set(build):
    # GIVEN a DICOM file whose meta names no transfer syntax but whose pixel data is native
    data = build()
    # WHEN train decodes it THEN it decodes in the encoding pydicom read the data set in
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Preprocessing(image_size=16).native(data, "no-syntax")
    assert image.shape[1:] == (16, 16)
    # AND header mode accepts it, recording the (absent) transfer syntax as the header has it
    header = read_header(data, len(data))
    assert header.rows and header.transfer_syntax is None
