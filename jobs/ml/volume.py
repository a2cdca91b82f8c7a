"""Read a volume from its files: one NIfTI, one multi-frame DICOM, the slices of a DICOM series, or one 2-D image.

Intensities are modality values (DICOM's modality LUT applied, no per-slice VOI window, MONOCHROME1 inverted over
the whole volume), so a volume is scaled once as a whole; label maps (``labels=True``) are the stored values. The
slices of a series are ordered by ``jobs.ml.series.order_slices``, the rule the index records volumes with.
Spacing is ``(z, y, x)`` in mm where the headers give it: the slice distance along the normal (a multi-frame file:
SpacingBetweenSlices, else SliceThickness) and PixelSpacing. Every failure is a ``DataError`` naming the input.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.core.errors import DataError
from jobs.ml.formats import DICOM, NIFTI, SNIFF_BYTES, detect_format
from jobs.ml.series import NotAVolume, SliceGeometry, order_slices


@dataclass(frozen=True)
class Volume:
    """Voxel values ``(C, D, H, W)`` float32 (C = 1, or 3 for colour) and spacing ``(z, y, x)`` mm if known."""

    array: np.ndarray
    spacing: tuple[float, float, float] | None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if len(values) == count else None


def _pixel_spacing(ds: Any) -> tuple[float, float] | None:
    found = _floats(ds.get("PixelSpacing"), 2) if ds.get("PixelSpacing") not in (None, "") else None
    return (found[0], found[1]) if found else None


def _slice_distance(ds: Any) -> float | None:
    for name in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(name)
        try:
            if value not in (None, "") and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


def _spacing(z: float | None, ds: Any) -> tuple[float, float, float] | None:
    plane = _pixel_spacing(ds)
    if plane is None and z is None:
        return None
    y, x = plane or (1.0, 1.0)
    return (z or 1.0, y, x)


def _dataset(data: bytes) -> Any:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError("DICOM file has no pixel data")
    return ds


def _stored(ds: Any) -> np.ndarray:
    """Stored label values of every frame, ``(F, H, W)`` (a colour mask's first channel)."""
    arr = ds.pixel_array.astype(np.float32)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    stack = arr if frames > 1 else arr[np.newaxis]
    return stack[..., 0] if stack.ndim == 4 else stack


def _monochrome1(ds: Any, stack: np.ndarray) -> np.ndarray:
    """MONOCHROME1 inverted over the whole volume's range, so bright means dense as in MONOCHROME2."""
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        return stack.max() + stack.min() - stack
    return stack


def _series(files: Sequence[bytes], labels: bool) -> Volume:
    datasets = [_dataset(f) for f in files]
    geometries = [
        SliceGeometry(
            _floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]  # three floats or None
            _floats(ds.get("ImageOrientationPatient"), 6),
            ds.get("Rows"),
            ds.get("Columns"),
        )
        for ds in datasets
    ]
    order = order_slices(geometries)
    if labels:
        stack = np.concatenate([_stored(datasets[i])[:1] for i in order.order])[np.newaxis]
    else:
        stack = _monochrome1(datasets[0], np.stack([_modality_frame(datasets[i], datasets[i].pixel_array)
                                                    for i in order.order], axis=1))  # fmt: skip
    return Volume(stack.astype(np.float32), _spacing(order.spacing, datasets[0]))


def _one_file(data: bytes, frame: str, labels: bool) -> Volume:
    fmt = detect_format(data[:SNIFF_BYTES])
    if fmt == NIFTI:
        from jobs.ml.nifti import UnusableNifti
        from jobs.ml.nifti import decode as decode_nifti

        try:
            array, grid = decode_nifti(data, frame=frame, labels=labels)
        except UnusableNifti as exc:
            raise DataError(str(exc)) from exc
        return Volume(array[np.newaxis], grid.spacing)
    if fmt == DICOM:
        ds = _dataset(data)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spacing = _spacing(_slice_distance(ds) if frames > 1 else None, ds)
        if labels:
            return Volume(_stored(ds)[np.newaxis], spacing)
        pixels = ds.pixel_array
        stack = np.stack([_modality_frame(ds, f) for f in (pixels if frames > 1 else [pixels])], axis=1)
        return Volume(_monochrome1(ds, stack).astype(np.float32), spacing)
    if fmt is None:
        raise DataError("not a DICOM, PNG, JPEG, TIFF or NIfTI image")
    from jobs.ml.preprocess import decode_bitmap

    image = decode_bitmap(data, fmt, frame, labels=labels)  # (C, H, W)
    return Volume(image[:, np.newaxis], None)


def _modality_frame(ds: Any, arr: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        return np.moveaxis(apply_color_lut(arr, ds).astype(np.float32), -1, 0)[:3]
    if int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        return apply_modality_lut(arr, ds).astype(np.float32)[np.newaxis]
    return np.moveaxis(arr.astype(np.float32), -1, 0)[:3]


def _label_planes(files: Sequence[bytes], frame: str) -> Volume:
    """One label plane per file, stacked in the order given: the masks of a series' slices, ordered as they are."""
    planes = [_one_file(data, frame, labels=True).array[0] for data in files]
    shapes = {p.shape[1:] for p in planes}
    if len(shapes) != 1:
        raise DataError(f"the slices' masks differ in size: {sorted(shapes)}")
    return Volume(np.concatenate([p[:1] for p in planes])[np.newaxis], None)


def read_volume(files: Sequence[bytes], name: str = "volume", *, frame: str = "middle", labels: bool = False) -> Volume:
    """The volume in ``files`` (see the module docstring); ``DataError`` naming ``name`` when it cannot be read.

    Several label files (``labels``) are the masks of a series' slices, one each, in the order of the slices
    (the caller orders them as the index ordered the slices, by ``jobs.ml.series``).
    """
    if not files:
        raise DataError(f"{name}: no files")
    try:
        if labels and len(files) > 1:
            return _label_planes(files, frame)
        return _one_file(files[0], frame, labels) if len(files) == 1 else _series(files, labels)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from exc
    except NotAVolume as exc:
        raise DataError(f"{name}: {len(files)} files do not form one volume: {exc}") from exc
    except Exception as exc:
        raise DataError(f"{name}: cannot decode the volume ({type(exc).__name__}: {exc})") from exc
