"""Formats are recognised by content, and non-DICOM headers give their geometry."""

from __future__ import annotations

import gzip
import io
import re
import struct
from pathlib import Path

import nibabel
import numpy as np
import pytest
from PIL import Image

from jobs.index.formats import DICOM, JPEG, NIFTI, PNG, TIFF, Geometry, NotAnImage, geometry, sniff
from tests.support.dicom_files import dicom_bytes


def _pil(fmt: str, mode: str = "L", size: tuple[int, int] = (7, 5)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color=3).save(out, format=fmt)
    return out.getvalue()


def _nifti(shape: tuple[int, ...] = (6, 4, 3)) -> bytes:
    import nibabel

    image = nibabel.Nifti1Image(np.zeros(shape, dtype=np.int16), np.eye(4))
    return image.to_bytes()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("dicom with preamble", dicom_bytes(), DICOM),
        ("dicom without preamble", dicom_bytes(preamble=False), DICOM),
        ("png", _pil("PNG"), PNG),
        ("jpeg", _pil("JPEG"), JPEG),
        ("tiff", _pil("TIFF"), TIFF),
        ("nifti", _nifti(), NIFTI),
        ("nifti gz", gzip.compress(_nifti()), NIFTI),
    ],
)
def test_sniff_recognises_formats_by_content(name, data, expected):
    assert sniff(data[:1024]) == expected, name


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, this is a text file and not an image at all", "not a recognised image format"),
        (gzip.compress(b"just text"), "gzip-compressed file that is not NIfTI"),
        (b"PK\x03\x04" + b"\x00" * 40, "zip archive"),
        (b"\x00" * 100, "truncated"),
    ],
)
def test_sniff_names_what_is_wrong(data, reason):
    with pytest.raises(NotAnImage, match=reason):
        sniff(data)


@pytest.mark.parametrize(
    ("data", "fmt", "expected"),
    [
        (_pil("PNG", "L", (7, 5)), PNG, Geometry(rows=5, columns=7, bits=8, samples=1, frames=1)),
        (_pil("PNG", "RGB", (3, 9)), PNG, Geometry(rows=9, columns=3, bits=8, samples=3, frames=1)),
        (_pil("JPEG", "L", (16, 12)), JPEG, Geometry(rows=12, columns=16, bits=8, samples=1, frames=1)),
        (
            _nifti((6, 4, 3)),
            NIFTI,
            Geometry(rows=4, columns=6, bits=16, frames=3, volume=(3, 4, 6), spacing=(1.0, 1.0, 1.0)),
        ),
        (
            gzip.compress(_nifti((6, 4))),
            NIFTI,
            Geometry(rows=4, columns=6, bits=16, frames=1, volume=(1, 4, 6), spacing=(1.0, 1.0, 1.0)),
        ),
        (_pil("TIFF"), TIFF, Geometry(rows=5, columns=7, bits=8, samples=1)),
        (_pil("TIFF", "RGB", (4, 6)), TIFF, Geometry(rows=6, columns=4, bits=8, samples=3)),
    ],
)
def test_geometry_from_header_bytes(data, fmt, expected):
    assert geometry(fmt, data) == expected


def test_geometry_of_a_cut_jpeg_header_is_empty_not_an_error():
    data = _pil("JPEG")
    sof = data.index(b"\xff\xc0")
    assert geometry(JPEG, data[:sof]) == Geometry()
    assert struct.unpack(">H", data[sof + 5 : sof + 7])[0] == 5  # the SOF really holds the height


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (lambda d: d[:8], "truncated: the TIFF image directory"),  # a DICOM preamble that looks like TIFF, cut early
        (lambda d: d[:-30], "truncated: TIFF"),
        (lambda d: d[:4] + struct.pack("<I", 2) + d[8:], "truncated: the TIFF image directory at byte 2"),
    ],
)
def test_a_tiff_whose_directory_or_strips_lie_past_its_end_is_not_an_image(cut, reason):
    # GIVEN a little-endian TIFF cut short or pointing outside itself WHEN its geometry is read THEN it says why
    data = cut(_pil("TIFF", "L", (40, 30)))
    with pytest.raises(NotAnImage, match=reason):
        geometry(TIFF, data, len(data))


NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("nifti1.hdr", "NIfTI header without its image: a .hdr whose voxels are in a separate .img file"),
        ("nifti2.hdr", "NIfTI header without its image: a .hdr whose voxels are in a separate .img file"),
        ("row_major.dconn.nii", "CIFTI file (NIfTI intent 3001): a connectivity or surface data matrix"),
    ],
)
def test_nifti_files_that_hold_no_image_volume_are_refused_from_their_header(name, reason):
    # GIVEN nibabel's own sample files: .hdr halves of .hdr/.img pairs and a CIFTI dense connectome
    data = (NIBABEL_DATA / name).read_bytes()
    assert sniff(data) == NIFTI
    # WHEN their header is read THEN they are refused, saying what they are
    with pytest.raises(NotAnImage, match=re.escape(reason)):
        geometry(NIFTI, data, len(data))


def test_a_single_file_nifti_volume_keeps_its_geometry():
    data = (NIBABEL_DATA / "anatomical.nii").read_bytes()
    found = geometry(NIFTI, data, len(data))
    assert (found.rows, found.columns, found.bits, found.frames) == (41, 33, 16, 25)
    assert found.volume is not None and sorted(found.volume) == [25, 33, 41]  # the grid, in canonical axis order
