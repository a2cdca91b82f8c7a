"""--verify-pixels decodes each format fully and turns a failure into a quarantine reason."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from PIL import Image

from jobs.index.formats import DICOM, JPEG, NIFTI, PNG
from jobs.index.pixels import UndecodablePixels, verify_pixels
from tests.support.dicom_files import dicom_bytes


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(out, format="PNG")
    return out.getvalue()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(out, format="JPEG")
    return out.getvalue()


def _nifti() -> bytes:
    import nibabel

    return nibabel.Nifti1Image(np.ones((4, 4, 2), dtype=np.int16), np.eye(4)).to_bytes()


@pytest.mark.parametrize(
    ("fmt", "data"),
    [(DICOM, dicom_bytes(rows=8, columns=8)), (PNG, _png()), (JPEG, _jpeg()), (NIFTI, _nifti()),
     (NIFTI, gzip.compress(_nifti()))],
)  # fmt: skip
def test_good_images_decode(fmt, data):
    verify_pixels(fmt, data)


@pytest.mark.parametrize(
    ("fmt", "data"),
    [(PNG, _png()[:-30]), (JPEG, _jpeg()[:200]), (NIFTI, _nifti()[:-20]),
     (DICOM, dicom_bytes(rows=8, columns=8)[:-40])],
)  # fmt: skip
def test_cut_images_are_undecodable_with_a_reason(fmt, data):
    with pytest.raises(UndecodablePixels, match="cannot be decoded"):
        verify_pixels(fmt, data)
