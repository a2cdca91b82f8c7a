"""Resampling of n-D arrays in plain NumPy: antialiased linear for intensities, nearest for label maps.

``resize`` applies, axis by axis, a weight matrix that is a triangle (linear) filter widened by the shrink factor
when shrinking, as Pillow's antialiased bilinear filter does in 2-D, so a volume shrunk 8x averages what it drops
instead of aliasing it. ``fit`` first resamples to a target voxel spacing (when one is given and the spacing is
known) and then centre-crops or pads to the target shape; without a target spacing it resizes to the shape.
No torch and no SciPy: the index and serving use this module too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np


@functools.lru_cache(maxsize=64)
def _weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` rows of triangle-filter weights summing to 1 (pixel centres aligned, antialiased)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    taps = np.arange(n_in) + 0.5
    weights = np.clip(1.0 - np.abs(taps[None, :] - centres[:, None]) / support, 0.0, None)
    sums = weights.sum(axis=1, keepdims=True)
    empty = sums[:, 0] == 0
    if empty.any():  # cannot happen for n_in >= 1, but never divide by zero
        weights[empty, np.clip(centres[empty].astype(int), 0, n_in - 1)] = 1.0
        sums = weights.sum(axis=1, keepdims=True)
    return (weights / sums).astype(np.float32)


def _nearest(n_in: int, n_out: int) -> np.ndarray:
    return np.clip(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), 0, n_in - 1)


def resize(array: np.ndarray, shape: Sequence[int], *, nearest: bool = False) -> np.ndarray:
    """``array`` resampled to ``shape`` (same number of axes); nearest neighbour for label maps."""
    if len(shape) != array.ndim:
        raise ValueError(f"cannot resize a {array.ndim}-D array to {len(shape)}-D shape {tuple(shape)}")
    out = array if nearest else array.astype(np.float32, copy=False)
    for axis, size in enumerate(shape):
        n_in = out.shape[axis]
        if n_in == size:
            continue
        if nearest:
            out = np.take(out, _nearest(n_in, int(size)), axis=axis)
        else:
            out = np.moveaxis(np.tensordot(_weights(n_in, int(size)), np.moveaxis(out, axis, 0), axes=1), 0, axis)
    return np.ascontiguousarray(out)


def crop_or_pad(array: np.ndarray, shape: Sequence[int], fill: float) -> np.ndarray:
    """Centre-crop axes longer than ``shape`` and pad shorter ones with ``fill``."""
    out = array
    for axis, size in enumerate(shape):
        n = out.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
        elif n < size:
            before = (size - n) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, size - n - before)
            out = np.pad(out, pad, constant_values=fill)
    return np.ascontiguousarray(out)


def fit(
    array: np.ndarray,
    shape: Sequence[int],
    *,
    spacing: Sequence[float] | None = None,
    target_spacing: Sequence[float] | None = None,
    nearest: bool = False,
) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """``array`` on a grid of ``shape``, and the voxel spacing it ends with (``None`` when unknown).

    With ``target_spacing`` (and a known ``spacing``) the array is resampled to that spacing and then centre-cropped
    or padded (with its minimum, the background) to ``shape``, keeping physical sizes; otherwise it is resized to
    ``shape``, stretching each axis as needed.
    """
    if target_spacing is not None and spacing is not None:
        scaled = tuple(max(1, round(n * s / t)) for n, s, t in zip(array.shape, spacing, target_spacing, strict=True))
        resampled = resize(array, scaled, nearest=nearest)
        fill = 0 if nearest else float(array.min()) if array.size else 0.0
        return crop_or_pad(resampled, shape, fill), tuple(float(t) for t in target_spacing)
    resized = resize(array, shape, nearest=nearest)
    if spacing is None:
        return resized, None
    return resized, tuple(float(s) * n / m for s, n, m in zip(spacing, array.shape, shape, strict=True))
