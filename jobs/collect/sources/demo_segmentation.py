"""``--source demo --task segmentation`` and ``segmentation-3d``: seeded image + mask pairs.

``segmentation`` mirrors Kaggle's lgg-mri-segmentation: ``kaggle_3m/<case>/<case>_<slice>.tif`` 64x64 RGB slices
(three MR-like channels) with ``<case>_<slice>_mask.tif`` (0/255) beside each; a case's tumour is an irregular
bright ellipse that grows and shrinks over a run of consecutive slices, and the other slices have an empty mask.
``segmentation-3d`` mirrors the Medical Segmentation Decathlon: ``Task00_Demo/imagesTr/case_<n>.nii.gz``
32x32x32 volumes with a label map of the same name under ``labelsTr/`` (0 background, 1 lesion: a blob of two
overlapping spheres). Both use the index's mask conventions (``jobs.index.masks``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from jobs.collect.sources.image_files import nifti_bytes, tiff_bytes

SIZE = 64
VOLUME = 32


def _brain(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A smooth head-like background and its normalised coordinates (last axes y, x)."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius2 = sum(g**2 for g in grids)
    head = 0.35 * (radius2 < 0.85) + 0.1 * np.cos(3 * grids[-1] + rng.uniform(0, 6)) * (radius2 < 0.85)
    return head, np.stack(grids)


def _slice_case(rng: np.random.Generator, case: str, out: Path) -> list[Path]:
    files = []
    slices = int(rng.integers(6, 11))
    first, last = sorted(rng.integers(0, slices, 2))
    cy, cx = rng.uniform(-0.35, 0.35, 2)
    ry, rx = rng.uniform(0.15, 0.3, 2)
    tilt = rng.uniform(0, np.pi)
    for n in range(1, slices + 1):
        head, (yy, xx) = _brain(rng, (SIZE, SIZE))
        mask = np.zeros((SIZE, SIZE), bool)
        if first <= n - 1 <= last:
            grow = 1 - abs((n - 1) - (first + last) / 2) / max(1.0, (last - first) / 2 + 1)  # largest mid-run
            y, x = yy - cy, xx - cx
            u, v = y * np.cos(tilt) + x * np.sin(tilt), -y * np.sin(tilt) + x * np.cos(tilt)
            wobble = 1 + 0.15 * np.sin(5 * np.arctan2(v, u) + rng.uniform(0, 6))
            mask = (u / (ry * (0.5 + 0.5 * grow))) ** 2 + (v / (rx * (0.5 + 0.5 * grow))) ** 2 < wobble
        channels = [head + 0.35 * mask * rng.uniform(0.8, 1.2) + rng.normal(0, 0.05, head.shape) for _ in range(3)]
        image = np.clip(np.stack(channels, axis=-1) * 255, 0, 255).astype(np.uint8)
        path = out / case / f"{case}_{n}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tiff_bytes(image))
        path.with_name(f"{case}_{n}_mask.tif").write_bytes(tiff_bytes(mask.astype(np.uint8) * 255))
        files += [path, path.with_name(f"{case}_{n}_mask.tif")]
    return files


def generate_slices(seed: int, patients: int, out: Path) -> list[Path]:
    """The lgg-style dataset under ``out/kaggle_3m``; returns the files, sorted."""
    files: list[Path] = []
    for p in range(patients):
        rng = np.random.default_rng([seed, p, 3])
        month, day = 1 + p % 12, 1 + p % 28
        files += _slice_case(rng, f"TCGA_DM_A{p + 1:03d}_2015{month:02d}{day:02d}", out / "kaggle_3m")
    return sorted(files)


def lesion_case(seed: int, p: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Case ``p`` of the 3-D set at ``side``³ voxels: the stored int16 head with its two-sphere lesion, and the
    lesion mask (the bench draws the same cases at larger sizes)."""
    rng = np.random.default_rng([seed, p, 4])
    head, grid = _brain(rng, (side, side, side))
    lesion = np.zeros(head.shape, bool)
    centre = rng.uniform(-0.4, 0.4, 3)
    for offset in (np.zeros(3), rng.uniform(-0.15, 0.15, 3)):
        radius = rng.uniform(0.15, 0.25)
        lesion |= sum((grid[i] - centre[i] - offset[i]) ** 2 for i in range(3)) < radius**2
    image = head + 0.4 * lesion + rng.normal(0, 0.05, head.shape)
    return np.clip(image * 1000, 0, 32767).astype(np.int16), lesion


def generate_volumes(seed: int, patients: int, out: Path) -> list[Path]:
    """The Decathlon-style dataset under ``out/Task00_Demo``; returns the files, sorted."""
    files: list[Path] = []
    root = out / "Task00_Demo"
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for p in range(patients):
        stored, lesion = lesion_case(seed, p, VOLUME)
        name = f"case_{p + 1:03d}.nii.gz"
        (root / "imagesTr" / name).write_bytes(gzip.compress(nifti_bytes(stored, (1.5, 1.0, 1.0)), mtime=0))
        (root / "labelsTr" / name).write_bytes(gzip.compress(nifti_bytes(lesion.astype(np.uint8), (1.5, 1.0, 1.0)),
                                                             mtime=0))  # fmt: skip
        files += [root / "imagesTr" / name, root / "labelsTr" / name]
    return sorted(files)
