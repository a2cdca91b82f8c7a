"""Which DICOM slices form a volume, in which order, with which spacing: one rule for the index and the decoder.

Slices of one SeriesInstanceUID form a volume when every slice has an ImagePositionPatient and the same
ImageOrientationPatient, Rows and Columns, and no two share a position. They are ordered by their position
projected on the slice normal (row direction x column direction), ascending, which for axial slices in the
patient coordinate system (LPS) runs inferior -> superior; the slice spacing is the median distance between
neighbours along the normal. The index records the order and spacing it finds (``jobs.index.volumes``) and the
decoder assembles the volume with the same function (``jobs.ml.volume``), so the two cannot disagree.
Pure Python and NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ORIENTATION_TOLERANCE = 1e-3
"""Direction cosines that differ by less than this are the same orientation."""
POSITION_TOLERANCE = 1e-3
"""Slices closer than this (mm) along the normal are at the same position."""


class NotAVolume(ValueError):
    """The slices do not form one volume; the message says why."""


@dataclass(frozen=True, slots=True)
class SliceGeometry:
    """What the header says about where one slice lies."""

    position: tuple[float, float, float] | None
    """ImagePositionPatient (mm): the centre of the first transmitted pixel."""
    orientation: tuple[float, ...] | None
    """ImageOrientationPatient: the row direction cosines, then the column direction cosines."""
    rows: int | None
    columns: int | None


@dataclass(frozen=True)
class SeriesOrder:
    """The slices' order (indices into the input, first slice first) and the spacing between them (mm)."""

    order: tuple[int, ...]
    spacing: float
    irregular: bool
    """Whether neighbour distances differ by more than half the median (missing or uneven slices)."""


def normal(orientation: Sequence[float]) -> np.ndarray:
    """The slice normal of an ImageOrientationPatient: row direction x column direction."""
    values = np.asarray(orientation, dtype=np.float64)
    return np.cross(values[:3], values[3:6])


def order_slices(slices: Sequence[SliceGeometry]) -> SeriesOrder:
    """The order and spacing of ``slices`` as one volume, or ``NotAVolume`` with the reason."""
    if len(slices) < 2:
        raise NotAVolume("a single slice")
    first = slices[0]
    for geometry in slices:
        if geometry.position is None or geometry.orientation is None or len(geometry.orientation) != 6:
            raise NotAVolume("a slice has no ImagePositionPatient/ImageOrientationPatient")
        if (geometry.rows, geometry.columns) != (first.rows, first.columns):
            raise NotAVolume("slices differ in Rows/Columns")
        assert first.orientation is not None
        if np.abs(np.subtract(geometry.orientation, first.orientation)).max() > ORIENTATION_TOLERANCE:
            raise NotAVolume("slices differ in ImageOrientationPatient")
    assert first.orientation is not None
    axis = normal(first.orientation)
    if not np.isfinite(axis).all() or np.linalg.norm(axis) < 0.5:
        raise NotAVolume("ImageOrientationPatient has no valid slice normal")
    along = np.array([float(np.dot(axis, g.position)) for g in slices if g.position is not None])
    order = np.argsort(along, kind="stable")
    gaps = np.diff(along[order])
    if (gaps < POSITION_TOLERANCE).any():
        raise NotAVolume("two slices share a position")
    spacing = float(np.median(gaps))
    irregular = bool(np.abs(gaps - spacing).max() > 0.5 * spacing)
    return SeriesOrder(tuple(int(i) for i in order), spacing, irregular)
