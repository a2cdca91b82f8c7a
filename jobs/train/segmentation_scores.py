"""Segmentation scores per case: Dice and the 95th-percentile Hausdorff distance (HD95) of each foreground class.

Dice is ``2|P ∩ T| / (|P| + |T|)``; a class absent from both the prediction and the truth of a case has nothing
to score and is left out of that class's mean (counted in ``empty``), while a class predicted where there is
none scores 0. HD95 is MONAI's undirected form: the larger of the two directed 95th percentiles of the distances
from each surface voxel of one mask to the nearest surface voxel of the other, in mm when the voxel spacing is
known (voxels otherwise); it is undefined (``None``) when only one of the two is empty and 0 when both are.
Surfaces are the mask voxels with a face neighbour outside it; nearest distances are computed exactly, in
chunks. Plain numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

HEADLINE = ("dice", "hd95")
_CHUNK = 512


def dice(pred: np.ndarray, true: np.ndarray) -> float | None:
    """Dice of two boolean masks; ``None`` when both are empty."""
    total = int(pred.sum()) + int(true.sum())
    return None if total == 0 else 2.0 * float((pred & true).sum()) / total


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` with at least one face neighbour outside it (the border counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded.copy()
    for axis in range(mask.ndim):
        inner &= np.roll(padded, 1, axis) & np.roll(padded, -1, axis)
    return (padded & ~inner)[tuple(slice(1, -1) for _ in range(mask.ndim))]


def _nearest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distance from each of ``points`` to the nearest of ``targets`` (exact, in chunks of rows)."""
    t = targets.astype(np.float64)
    t2 = (t**2).sum(axis=1)
    out = np.empty(len(points))
    for start in range(0, len(points), _CHUNK):
        p = points[start : start + _CHUNK].astype(np.float64)
        d2 = (p**2).sum(axis=1)[:, None] + t2[None, :] - 2.0 * p @ t.T
        out[start : start + _CHUNK] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def hd95(pred: np.ndarray, true: np.ndarray, spacing: Sequence[float] | None = None) -> float | None:
    """HD95 of two boolean masks (see the module docstring)."""
    if not pred.any() and not true.any():
        return 0.0
    if not pred.any() or not true.any():
        return None
    scale = np.asarray(spacing if spacing is not None else [1.0] * pred.ndim, np.float64)
    a = np.argwhere(surface(pred)) * scale
    b = np.argwhere(surface(true)) * scale
    return float(max(np.percentile(_nearest(a, b), 95), np.percentile(_nearest(b, a), 95)))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def segmentation_metrics(
    preds: Sequence[np.ndarray],
    trues: Sequence[np.ndarray],
    keys: Sequence[str],
    spacing: Sequence[Sequence[float] | None],
    classes: Sequence[str],
) -> dict[str, Any]:
    """Headline Dice and HD95 (means over cases and foreground classes) with per-class and per-case details.

    ``preds`` and ``trues`` are class-index maps; class 0 is background and not scored.
    """
    per_case = []
    by_class: dict[str, dict[str, list[float]]] = {c: {"dice": [], "hd95": []} for c in classes[1:]}
    empty = dict.fromkeys(classes[1:], 0)
    for pred, true, key, step in zip(preds, trues, keys, spacing, strict=True):
        case: dict[str, Any] = {"key": key, "dice": {}, "hd95": {}}
        for index, name in enumerate(classes[1:], start=1):
            p, t = pred == index, true == index
            d, h = dice(p, t), hd95(p, t, step)
            case["dice"][name], case["hd95"][name] = d, h
            if d is None:
                empty[name] += 1
                continue
            by_class[name]["dice"].append(d)
            if h is not None:
                by_class[name]["hd95"].append(h)
        per_case.append(case)
    means = {name: {k: _mean(v) for k, v in scores.items()} for name, scores in by_class.items()}
    unit = "mm" if spacing and all(s is not None for s in spacing) else "voxels"
    return {
        "dice": _mean([d for s in by_class.values() for d in s["dice"]]),
        "hd95": _mean([h for s in by_class.values() for h in s["hd95"]]),
        "details": {
            "n": len(per_case),
            "classes": list(classes),
            "hd95_unit": unit,
            "per_class": {name: {**means[name], "empty": empty[name]} for name in by_class},
            "per_case": per_case,
        },
    }
