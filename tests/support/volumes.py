"""Volumes for tests: a CT series as DICOM slices (shuffled instance numbers, positions along z) and NIfTI files."""

from __future__ import annotations

import io

import numpy as np

from jobs.collect.sources.image_files import ct_slice, nifti_bytes


def ct_series(
    volume: np.ndarray,
    patient: str = "P1",
    *,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8),
    z0: float = -40.0,
    seed: int = 0,
    preamble_less: tuple[int, ...] = (),
) -> dict[str, bytes]:
    """``volume`` ``(D, H, W)`` of stored values as slice files ``<patient>/<n>.dcm``: slice ``d`` lies at
    ``z0 + d * spacing[0]``, the instance numbers (and file names) are shuffled, so only positions give the order."""
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    numbers = rng.permutation(len(volume)) + 1
    series = str(generate_uid(entropy_srcs=[patient, str(seed), "series"]))
    study = str(generate_uid(entropy_srcs=[patient, str(seed), "study"]))
    files = {}
    for d, plane in enumerate(volume):
        uids = {"sop": str(generate_uid(entropy_srcs=[patient, str(seed), str(d)])), "series": series, "study": study}
        ds = ct_slice(plane, uids=uids, patient={"id": patient, "date": "20200101"},
                      position=(-100.0, -100.0, z0 + d * spacing[0]), spacing=spacing, instance=int(numbers[d]),
                      preamble=d not in preamble_less)  # fmt: skip
        out = io.BytesIO()
        dcmwrite(out, ds, enforce_file_format=False)
        files[f"{patient}/{int(numbers[d]):03d}.dcm"] = out.getvalue()
    return files


def nifti_volume(volume: np.ndarray, spacing: tuple[float, float, float] = (2.0, 1.0, 1.0)) -> bytes:
    """``volume`` ``(D, H, W)`` as a ``.nii`` that ``jobs.ml.nifti.decode`` gives back unchanged."""
    return nifti_bytes(volume, spacing)
