"""``--source demo --task volume``: seeded CT-like volumes for 3-D classification, as DICOM series and NIfTI.

Each patient has one chest CT volume of 24 axial slices of 48x48 (2.5 mm slices, 0.8 mm pixels) with soft
tissue, air-filled "lungs" and a few bright vessel segments; a ``nodule`` patient also has one round nodule of
4-7 mm radius in a lung at a random place and height, so its middle slice usually does not show it: a 3-D model
sees it, a 2-D one of the middle slice mostly cannot (val accuracy about 0.5). Three patients in four are DICOM
series,
``<label>/<PatientID>_<instance>.dcm`` whose instance numbers are shuffled against their positions (only
ImagePositionPatient orders them) with one slice written without preamble; the fourth is one
``<label>/<PatientID>.nii.gz``, stored so that it decodes to the same orientation.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

from jobs.collect.sources.image_files import ct_slice, nifti_bytes

CLASSES = ("normal", "nodule")
DEPTH, SIZE = 24, 48
SPACING = (2.5, 0.8, 0.8)


def _volume(rng: np.random.Generator, nodule: bool) -> np.ndarray:
    """Hounsfield-like values ``(D, H, W)``: air lungs in soft tissue, vessels, and the nodule if any."""
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in (DEPTH, SIZE, SIZE)], indexing="ij")
    mm = (z * SPACING[0], y * SPACING[1], x * SPACING[2])
    volume = np.full((DEPTH, SIZE, SIZE), 40.0)
    for side in (0.3, 0.7):
        lung = ((y / SIZE - 0.5) / 0.38) ** 2 + ((x / SIZE - side) / 0.17) ** 2 < 1
        volume[lung] = -800.0
    for _ in range(int(rng.integers(3, 6))):  # vessels: thin bright segments across slices
        start, direction = rng.uniform((0, 8, 8), (DEPTH, SIZE - 8, SIZE - 8)), rng.normal(0, 1, 3)
        direction /= np.linalg.norm(direction)
        along = (z - start[0]) * direction[0] + (y - start[1]) * direction[1] + (x - start[2]) * direction[2]
        near = (z - start[0] - along * direction[0]) ** 2 + (y - start[1] - along * direction[1]) ** 2 + (
            x - start[2] - along * direction[2]) ** 2  # fmt: skip
        volume[(near < 1.2) & (np.abs(along) < 10)] = 60.0
    if nodule:
        centre = rng.uniform(
            (3 * SPACING[0], 12 * SPACING[1], 10 * SPACING[2]),
            ((DEPTH - 3) * SPACING[0], (SIZE - 12) * SPACING[1], (SIZE - 10) * SPACING[2]),
        )
        radius = rng.uniform(4.0, 7.0)
        volume[sum((m - c) ** 2 for m, c in zip(mm, centre, strict=True)) < radius**2] = 50.0 + rng.uniform(0, 60)
    return volume + rng.normal(0, 20, volume.shape)


def _series(volume: np.ndarray, pid: str, label: str, seed: int, rng: np.random.Generator, out: Path) -> list[Path]:
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import generate_uid

    stored = np.clip(np.rint(volume + 1024), 0, 4095).astype(np.uint16)
    numbers = rng.permutation(DEPTH) + 1
    uids = {k: str(generate_uid(entropy_srcs=["irmsia-demo-volume", str(seed), pid, k])) for k in ("study", "series")}
    files = []
    for d, plane in enumerate(stored):
        slice_uids = {**uids, "sop": str(generate_uid(entropy_srcs=["irmsia-demo-volume", str(seed), pid, str(d)]))}
        ds = ct_slice(plane, uids=slice_uids, patient={"id": pid, "date": "20200101"},
                      position=(-19.2, -19.2, -30.0 + d * SPACING[0]), spacing=SPACING, instance=int(numbers[d]),
                      preamble=d != DEPTH // 3)  # fmt: skip
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=False)
        path = out / label / f"{pid}_{int(numbers[d]):03d}.dcm"
        path.write_bytes(buffer.getvalue())
        files.append(path)
    return files


def generate(seed: int, patients: int, out: Path) -> list[Path]:
    """Write the volumes under ``out``; returns the files, sorted. Deterministic in ``seed``."""
    labels = np.array([CLASSES[i % 2] for i in range(patients)])
    np.random.default_rng(seed).shuffle(labels)
    files: list[Path] = []
    for label in CLASSES:
        (out / label).mkdir(parents=True, exist_ok=True)
    for p in range(patients):
        rng = np.random.default_rng([seed, p, 5])
        pid, label = f"V{p + 1:04d}", str(labels[p])
        volume = _volume(rng, label == "nodule")
        if p % 4 == 3:
            path = out / label / f"{pid}.nii.gz"
            stored = np.clip(np.rint(volume), -1024, 3071).astype(np.int16)
            path.write_bytes(gzip.compress(nifti_bytes(stored, SPACING), mtime=0))
            files.append(path)
        else:
            files += _series(volume, pid, label, seed, rng, out)
    return sorted(files)
