"""``--source demo --task multilabel``: a seeded, NIH ChestX-ray14-shaped multi-label dataset.

``images/<patient 8 digits>_<follow-up 3 digits>.png`` (64x64 grey PNGs) and ``Data_Entry_2017.csv`` (``Image
Index``, ``Finding Labels`` joined by ``|`` or ``No Finding``, ``Follow-up #``, ``Patient ID``), so the index's
``nih`` layout labels it as it labels the real dataset. Each image has each of three findings independently
(about one image in three): ``Nodule`` (a small bright disc), ``Effusion`` (a bright band rising from the bottom)
and ``Cardiomegaly`` (the central shadow much wider than normal). Patients have one to four follow-ups whose
findings vary, so the split must keep a patient's images together while balancing each finding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jobs.collect.sources.image_files import png_bytes

FINDINGS = ("Cardiomegaly", "Effusion", "Nodule")
SIZE = 64
PREVALENCE = 0.35


def _image(rng: np.random.Generator, present: set[str]) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / SIZE
    image = 0.25 + 0.08 * np.sin(2 * np.pi * (xx + rng.uniform())) * np.cos(2 * np.pi * yy)
    width = rng.uniform(0.2, 0.26) if "Cardiomegaly" in present else rng.uniform(0.09, 0.13)
    image += 0.3 * np.exp(-(((xx - 0.5) / width) ** 2 + ((yy - 0.55) / 0.18) ** 2))  # the central (heart) shadow
    if "Effusion" in present:
        level = rng.uniform(0.68, 0.8)
        image += 0.35 / (1 + np.exp(-(yy - level) * 40))
    if "Nodule" in present:
        cy, cx = rng.uniform(0.15, 0.5), rng.choice([rng.uniform(0.12, 0.3), rng.uniform(0.7, 0.88)])
        radius = rng.uniform(0.04, 0.07)
        image += 0.45 * (((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2)
    image += rng.normal(0, 0.04, image.shape)
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def generate(seed: int, patients: int, out: Path) -> list[Path]:
    """Write the images and the labels CSV under ``out``; returns the files, sorted. Deterministic in ``seed``."""
    files: list[Path] = []
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID"]
    (out / "images").mkdir(parents=True, exist_ok=True)
    for p in range(patients):
        rng = np.random.default_rng([seed, p, 2])
        for follow_up in range(int(rng.integers(1, 5))):
            present = {f for f in FINDINGS if rng.random() < PREVALENCE}
            name = f"{p + 1:08d}_{follow_up:03d}.png"
            path = out / "images" / name
            path.write_bytes(png_bytes(_image(rng, present)))
            files.append(path)
            lines.append(f"{name},{'|'.join(sorted(present)) or 'No Finding'},{follow_up},{p + 1}")
    csv = out / "Data_Entry_2017.csv"
    csv.write_text("\n".join(lines) + "\n")
    files.append(csv)
    return sorted(files)
