"""Preprocessing follows the DICOM display pipeline on pydicom's own test files, and bitmaps take the same path."""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from jobs.core.errors import DataError, UsageError
from jobs.index.formats import NotAnImage, sniff
from jobs.ml.preprocess import Preprocessing, decode, detect_format, resize, scale_intensity, to_channels


def _testfile(name: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return pydicom.dcmread(path)


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_modality_lut_applies_rescale_slope_and_intercept():
    # GIVEN CT_small.dcm with a rescale slope of 2 and intercept of -1024 (no VOI window in the file)
    ds = _testfile("CT_small.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    raw = ds.pixel_array.astype(np.float64)
    # WHEN decoded without scaling
    out = decode(_bytes(ds), voi_lut=False)
    # THEN each value is raw * slope + intercept (Hounsfield units)
    assert out.shape == (1, 128, 128)
    np.testing.assert_allclose(out[0], raw * 2 - 1024)


def test_window_centre_width_follows_the_dicom_linear_formula():
    # GIVEN MR_small.dcm with a narrow window so that both ends clip
    ds = _testfile("MR_small.dcm")
    raw = ds.pixel_array.astype(np.float64)
    c, w = float(np.median(raw)), 200.0
    ds.WindowCenter, ds.WindowWidth = c, w
    # WHEN preprocessed at native size
    out = Preprocessing(image_size=64).native(_bytes(ds))
    # THEN it equals PS3.3 C.11.2.1.2: ((x - (c - 0.5)) / (w - 1) + 0.5) clipped to [0, 1]
    expected = np.clip((raw - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(out[0], expected, atol=2e-3)
    assert (out == 0).any() and (out == 1).any()


def test_voi_lut_sequence_is_applied_instead_of_the_window():
    # GIVEN MR_small.dcm with a two-entry VOI LUT: raw <= t maps to 65535, raw > t maps to 0 (an inverting step)
    ds = _testfile("MR_small.dcm")
    raw = ds.pixel_array
    t = int(np.median(raw))
    item = Dataset()
    item.LUTDescriptor = [2, t, 16]
    item.LUTData = np.array([65535, 0], dtype="<u2").tobytes()
    ds.VOILUTSequence = Sequence([item])
    # WHEN preprocessed
    out = Preprocessing(image_size=64).native(_bytes(ds))
    # THEN the LUT, not the window centre/width in the file, decided every value
    np.testing.assert_array_equal(out[0], np.where(raw <= t, 1.0, 0.0))


def test_voi_lut_can_be_switched_off():
    ds = _testfile("MR_small.dcm")
    raw = ds.pixel_array.astype(np.float64)
    out = Preprocessing(image_size=64, voi_lut=False).native(_bytes(ds))
    np.testing.assert_allclose(out[0], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


def test_monochrome1_is_inverted_so_bright_means_dense():
    # GIVEN the same pixels labelled MONOCHROME2 and MONOCHROME1 (window removed)
    ds = _testfile("CT_small.dcm")
    mono2 = Preprocessing(image_size=128)(_bytes(ds))
    ds.PhotometricInterpretation = "MONOCHROME1"
    # WHEN both are preprocessed
    mono1 = Preprocessing(image_size=128)(_bytes(ds))
    # THEN MONOCHROME1 is the intensity inverse of MONOCHROME2
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_rgb_dicom_keeps_three_channels_or_becomes_luminance():
    ds = _testfile("ExplVR_BigEnd.dcm")
    rgb = ds.pixel_array.astype(np.float64)
    native = Preprocessing(image_size=80).native(_bytes(ds))
    assert native.shape == (3, 80, 80)
    grey = decode(_bytes(ds))
    lum = to_channels(grey, 1)[0]
    np.testing.assert_allclose(lum, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-3)


def test_compressed_dicom_decodes_through_the_same_path():
    # GIVEN a JPEG 2000 CT with a rescale intercept (needs the pylibjpeg-openjpeg plugin)
    ds = _testfile("693_J2KI.dcm")
    out = Preprocessing(image_size=64)(_bytes(ds))
    assert out.shape == (1, 64, 64) and out.dtype == np.float32
    assert 0.0 <= out.min() < out.max() <= 1.0


def _pil_bytes(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "array", "fmt", "channels"),
    [
        ("png 8-bit grey", np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8), "PNG", 1),
        ("png 16-bit grey", (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16), "PNG", 1),
        ("png rgb", np.dstack([np.arange(64 * 64).reshape(64, 64) % 256] * 3).astype(np.uint8), "PNG", 3),
        ("jpeg grey", np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)), "JPEG", 1),
        ("tiff 16-bit", (np.arange(64 * 64).reshape(64, 64) * 8).astype(np.uint16), "TIFF", 1),
    ],
)
def test_bitmaps_go_through_the_same_intensity_path(name, array, fmt, channels):
    # GIVEN a bitmap with a known ramp
    data = _pil_bytes(array, fmt)
    # WHEN preprocessed at native size
    out = Preprocessing(image_size=64).native(data, name)
    # THEN channels are kept, intensities are min-max scaled to [0, 1] and the ramp survives (lossy JPEG roughly)
    assert out.shape == (channels, 64, 64)
    ref = array.astype(np.float64) if array.ndim == 2 else np.moveaxis(array, -1, 0)[0].astype(np.float64)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    np.testing.assert_allclose(out[0], ref, atol=0.05 if fmt == "JPEG" else 1e-4)


def test_float_tiff_falls_back_to_tifffile():
    import tifffile

    array = np.linspace(-1, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.stack([array, array]))  # a two-page stack: the middle page is used
    out = Preprocessing(image_size=32).native(buffer.getvalue())
    np.testing.assert_allclose(out[0], (array + 1) / 2, atol=1e-5)


def _nifti1_head() -> bytes:
    import nibabel

    return nibabel.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)).to_bytes()[:352]


@pytest.mark.parametrize(
    ("layout", "dtype"),
    [("separate", np.float64), ("separate", np.uint16), ("contig", np.float64)],
    ids=["planar float64", "planar uint16", "contiguous float64"],
)
def test_an_rgb_tiff_keeps_its_three_channels_whether_planar_or_contiguous(layout, dtype):
    import tifffile

    # GIVEN an RGB TIFF Pillow cannot open, its samples stored plane by plane or interleaved
    rgb = (np.random.default_rng(7).random((3, 12, 10)) * 1000).astype(dtype)
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer, rgb if layout == "separate" else np.moveaxis(rgb, 0, -1), planarconfig=layout, photometric="rgb"
    )
    # WHEN decoded THEN it is the three planes, in order: red, green, blue
    image = decode(buffer.getvalue())
    assert image.shape == (3, 12, 10)
    np.testing.assert_allclose(image, rgb.astype(np.float32))


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00" * 128 + b"DICM" + b"\x02\x00", "dicom"),
        (b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", "dicom"),
        # preamble-less DICOM starting past the identifying group: patient, acquisition, study, image groups
        (b"\x10\x00\x10\x00PN\x08\x00Doe^John", "dicom"),
        (b"\x18\x00\x50\x00DS\x04\x001.25", "dicom"),
        (b"\x20\x00\x0d\x00\x0a\x00\x00\x001.2.3.4.5\x00", "dicom"),
        (b"\x28\x00\x02\x00US\x02\x00\x01\x00", "dicom"),
        (_nifti1_head(), "nifti"),
        (gzip.compress(_nifti1_head() + b"\x00" * 4), "nifti"),
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"\xff\xd8\xff\xe0....", "jpeg"),
        (b"II*\x00....", "tiff"),
        (b"MM\x00*....", "tiff"),
        (b"hello world", None),
        (b"", None),
    ],
)
def test_detect_format_by_content(head, expected):
    assert detect_format(head) == expected
    # the index's sniffer is the same function: what it accepts, train decodes as the same format
    try:
        assert sniff(head) == expected
    except NotAnImage:
        assert expected is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a DICOM, PNG, JPEG, TIFF or NIfTI"),
        (b"just some text, not an image at all" * 8, "not a DICOM, PNG, JPEG, TIFF or NIfTI"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "broken.png: cannot decode png"),
    ],
)
def test_unreadable_bytes_are_a_data_error_naming_the_file(data, match):
    with pytest.raises(DataError, match=match):
        decode(data, "broken.png")


def test_errors_found_after_reading_name_the_file():
    # GIVEN a DICOM without pixel data, and a float TIFF holding NaN
    ds = _testfile("CT_small.dcm")
    del ds.PixelData
    nan_tiff = io.BytesIO()
    tifffile.imwrite(nan_tiff, np.full((4, 4), np.nan, np.float32))
    # WHEN preprocessed THEN the error names the file (train logs it when it skips an unreadable image)
    with pytest.raises(DataError, match=r"^raw/a\.dcm: DICOM file has no pixel data$"):
        Preprocessing(image_size=8).native(_bytes(ds), "raw/a.dcm")
    with pytest.raises(DataError, match=r"^raw/n\.tif: image holds NaN or infinite values$"):
        Preprocessing(image_size=8).native(nan_tiff.getvalue(), "raw/n.tif")


def test_truncated_dicom_is_a_data_error():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file("MR_truncated.dcm")
    with open(path, "rb") as fh, pytest.raises(DataError, match=r"raw/x\.dcm: cannot decode dicom"):
        decode(fh.read(), "raw/x.dcm")


def test_resize_scale_and_channel_helpers():
    image = np.zeros((1, 64, 48), np.float32)
    image[0, :, 24:] = 1.0
    small = resize(image, 16)
    assert small.shape == (1, 16, 16)
    assert small[0, :, :7].max() < 0.05 and small[0, :, 9:].min() > 0.95
    assert scale_intensity(np.full((1, 4, 4), 7.0)).max() == 0.0  # constant image: zeros, no division by 0
    clipped = scale_intensity(np.arange(100, dtype=np.float32).reshape(1, 10, 10), (10.0, 90.0))
    assert clipped.min() == 0.0 and clipped.max() == 1.0 and (clipped == 0).sum() == 10  # p10 = 9.9
    assert to_channels(np.ones((1, 2, 2), np.float32), 3).shape == (3, 2, 2)


def test_config_round_trips_and_validates():
    prep = Preprocessing(image_size=96, channels=3, percentiles=(0.5, 99.5))
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    with pytest.raises(UsageError, match="percentiles"):
        Preprocessing(image_size=32, percentiles=(50.0, 10.0))
    with pytest.raises(UsageError, match="channels"):
        Preprocessing(image_size=32, channels=2)
