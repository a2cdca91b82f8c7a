"""NIfTI: what the index may accept is what the decoder reads, on nibabel's own test files and built cases."""

from __future__ import annotations

import gzip
import os
import struct

import nibabel
import numpy as np
import pytest

from jobs.core.errors import DataError
from jobs.ml import nifti
from jobs.ml.preprocess import Preprocessing

NIBABEL_DATA = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data")


def _read(name: str) -> bytes:
    with open(os.path.join(NIBABEL_DATA, name), "rb") as fh:
        return fh.read()


@pytest.mark.parametrize(
    ("name", "shape", "spacing"),
    [
        ("anatomical.nii", (25, 41, 33), (2.0, 2.0, 2.0)),
        ("example4d.nii.gz", (24, 96, 128), (2.2, 2.0, 2.0)),
        ("example_nifti2.nii.gz", (12, 20, 32), (2.2, 2.0, 2.0)),
        ("functional.nii", (3, 21, 17), (8.0, 4.0, 4.0)),
        ("standard.nii.gz", (7, 5, 4), (2.0, 3.0, 1.0)),
        ("reoriented_anat_moved.nii", (22, 26, 21), (4.0, 4.0, 4.0)),
        ("resampled_anat_moved.nii", (3, 21, 17), (8.0, 4.0, 4.0)),
    ],
)
def test_nibabel_test_volumes_pass_the_header_check_and_decode_to_the_grid_it_predicts(name, shape, spacing):
    # GIVEN one of nibabel's own NIfTI files
    data = _read(name)
    # WHEN the index checks its header and train decodes it
    nifti.check_header(data[: 1 << 20], len(data))
    grid = nifti.grid(data[: 1 << 20])
    volume, decoded = nifti.decode(data)
    # THEN the header predicted the decoded grid, and the 2-D and 3-D inputs are finite and in [0, 1]
    assert grid.shape == shape == volume.shape
    np.testing.assert_allclose(grid.spacing, spacing, rtol=1e-5)
    assert decoded == grid
    for prep in (Preprocessing(image_size=16), Preprocessing(image_size=16, dims=3, depth=8)):
        x = prep(data, name)
        assert x.shape == (1, *prep.input_shape) and np.isfinite(x).all() and 0 <= x.min() <= x.max() <= 1


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("nifti1.hdr", "NIfTI header without its image"),
        ("nifti2.hdr", "NIfTI header without its image"),
        ("row_major.dconn.nii", "CIFTI file (NIfTI intent 3001)"),
    ],
)
def test_nibabel_files_the_decoder_cannot_take_are_refused_from_the_header(name, reason):
    data = _read(name)
    with pytest.raises(nifti.UnusableNifti, match=reason.replace("(", r"\(").replace(")", r"\)")):
        nifti.check_header(data, len(data))


def _image(array: np.ndarray, affine: np.ndarray, dtype=np.int16, **header) -> bytes:
    image = nibabel.Nifti1Image(array.astype(dtype), affine)
    for key, value in header.items():
        image.header[key] = value
    return image.to_bytes()


def _patched(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


@pytest.mark.parametrize(
    ("case", "build", "reason"),
    [
        ("complex", lambda: _image(np.ones((4, 4, 2)), np.eye(4), np.complex64), "datatype complex64"),
        ("one dimension", lambda: _image(np.ones(8), np.eye(4)), "fewer than two spatial dimensions"),
        ("truncated", lambda: _image(np.ones((8, 8, 4)), np.eye(4))[:-100], "truncated: the NIfTI voxels need"),
        (
            "bad offset",
            lambda: _patched(_image(np.ones((4, 4, 2)), np.eye(4)), 108, struct.pack("<f", 100.0)),
            "vox_offset 100",
        ),
    ],
)
def test_built_files_the_decoder_cannot_take_are_refused(case, build, reason):
    data = build()
    with pytest.raises(nifti.UnusableNifti, match=reason):
        nifti.check_header(data, len(data))


def test_the_same_anatomy_decodes_the_same_whatever_the_stored_axis_order():
    # GIVEN one volume stored RAS, and the same voxels stored with flipped x and y (an LPS-ordered array)
    rng = np.random.default_rng(0)
    ras = rng.integers(0, 1000, (6, 7, 5))
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    as_ras = _image(ras, np.eye(4))
    as_lps = _image(ras[::-1, ::-1, :], lps_affine)
    # WHEN both are decoded THEN they give the same (D, H, W) array: anatomy, not storage order, decides
    a, grid_a = nifti.decode(as_ras)
    b, _ = nifti.decode(gzip.compress(as_lps))
    np.testing.assert_array_equal(a, b)
    assert grid_a.shape == (5, 7, 6)
    # AND the layout is (inferior->superior, anterior->posterior, right->left), as a sorted DICOM axial series
    np.testing.assert_array_equal(a[2], ras[::-1, ::-1, 2].T)


def test_nan_voxels_become_the_smallest_finite_value_and_4d_gives_the_middle_frame():
    volume = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 3)
    volume[0, 0, 0, :] = np.nan
    data = _image(volume, np.eye(4), np.float32)
    middle, _ = nifti.decode(data)
    first, _ = nifti.decode(data, frame="first")
    assert np.isfinite(middle).all()
    np.testing.assert_array_equal(middle[:, -1, -1][1:], volume[0, 0, 1:, 1])
    assert middle.min() == np.nanmin(volume[..., 1]) and first.max() == np.nanmax(volume[..., 0])


def test_damaged_compressed_voxels_are_a_data_error_naming_the_file():
    data = gzip.compress(_image(np.random.default_rng(0).integers(0, 999, (16, 16, 8)), np.eye(4)))
    with pytest.raises(DataError, match=r"^raw/v\.nii\.gz: compressed NIfTI data cannot be inflated"):
        Preprocessing(image_size=8)(data[: len(data) // 2], "raw/v.nii.gz")
