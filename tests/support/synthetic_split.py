"""A tiny, learnable imaging split written straight into a store, for train tests and the train benchmark.

Two classes: ``normal`` (smooth noisy background) and ``nodule`` (the same plus a bright Gaussian blob). Images
are 16-bit DICOM (some MONOCHROME1, some with rescale slope/intercept) or PNG, under ``raw/<dataset>/``, and
the split is sealed with a real split manifest (``datalist.json`` and CSVs) through ``StageWriter``, exactly the
contract the train stage reads.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

from jobs.core.hashing import sha256_bytes
from jobs.core.manifest import Manifest, StageWriter
from jobs.core.paths import raw_prefix, splits_prefix
from jobs.core.store import Store

CLASSES = ("nodule", "normal")


def synthetic_image(rng: np.random.Generator, size: int, nodule: bool) -> np.ndarray:
    """A float image in [0, 1]: low-frequency background, noise, and a blob for the ``nodule`` class."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    phase = rng.uniform(0, 2 * np.pi)
    image = 0.3 + 0.1 * np.sin(2 * np.pi * xx + phase) * np.cos(2 * np.pi * yy) + rng.normal(0, 0.03, (size, size))
    if nodule:
        cy, cx = rng.uniform(0.25, 0.75, 2)
        radius = rng.uniform(0.08, 0.14)
        image += 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    return np.clip(image, 0, 1).astype(np.float32)


def dicom_bytes(
    image: np.ndarray, patient: str, *, monochrome1: bool = False, slope: float = 1.0, intercept: float = 0.0
) -> bytes:
    """``image`` as a 16-bit DICOM file; MONOCHROME1 stores it inverted, rescale is undone so values survive."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    stored = image if not monochrome1 else 1.0 - image
    pixels = np.round((stored * 4000 - intercept) / slope).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    # deterministic: the same image and patient give the same bytes (and the same SHA-256 in the split)
    content = hashlib.sha256(pixels.tobytes()).hexdigest()
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["irmsia-synthetic", patient, content])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_split(
    store: Store,
    dataset: str = "tiny",
    *,
    counts: dict[str, int] | None = None,
    size: int = 32,
    seed: int = 0,
    fmt: str = "mixed",
    classes: tuple[str, ...] = CLASSES,
    extra_items: dict[str, list[tuple[str, int]]] | None = None,
    shuffle_labels: bool = False,
    columns: dict[str, tuple[str, ...]] | None = None,
    folds: int = 0,
) -> Manifest:
    """Write images and a sealed ``splits/<dataset>/``; ``counts`` is images per split (classes alternate).

    ``fmt``: ``dicom``, ``png`` or ``mixed`` (DICOM with some MONOCHROME1 and rescaled files, plus PNGs).
    ``extra_items`` adds ``(key, label)`` items (e.g. broken files written by the test) to splits.
    ``shuffle_labels`` records labels that are a seeded permutation of the images' true classes (a split nothing
    can be learned from: a deliberately broken model). ``columns`` adds index columns to the CSVs, image ``n``
    taking value ``n % len(values)`` of each. ``folds`` gives train and val image ``n`` fold ``n % folds``.
    """
    columns = columns or {}
    counts = counts or {"train": 24, "val": 12, "test": 12}
    rng = np.random.default_rng(seed)
    raw = raw_prefix(dataset)
    datalist: dict[str, list[dict]] = {"training": [], "validation": [], "test": []}
    sections = {"train": "training", "val": "validation", "test": "test"}
    csv_rows: dict[str, list[str]] = {}
    n = 0
    for split, count in counts.items():
        csv_rows[split] = []
        recorded = [i % len(classes) for i in range(count)]
        if shuffle_labels:
            recorded = [int(v) for v in np.random.default_rng(seed + 1000 + n).permutation(recorded)]
        for i in range(count):
            label = recorded[i]
            image = synthetic_image(rng, size, nodule=classes[i % len(classes)] == "nodule")
            patient = f"p{n:04d}"
            kind = fmt if fmt != "mixed" else ("png" if n % 4 == 3 else "dicom")
            if kind == "png":
                key, data = f"{raw}{classes[label]}/{patient}.png", png_bytes(image)
            else:
                data = dicom_bytes(image, patient, monochrome1=n % 4 == 1, slope=2.0 if n % 4 == 2 else 1.0,
                                   intercept=-1000.0 if n % 4 == 2 else 0.0)  # fmt: skip
                key = f"{raw}{classes[label]}/{patient}.dcm"
            store.put_bytes(key, data)
            datalist[sections[split]].append(
                {"image": key, "label": label, "label_name": classes[label], "patient_id": patient,
                 "sha256": sha256_bytes(data), **({"fold": n % folds} if folds and split != "test" else {})}
            )  # fmt: skip
            extra = "".join(f",{values[n % len(values)]}" for values in columns.values())
            csv_rows[split].append(f"{key},{classes[label]},{patient},{split}{extra}")
            n += 1
    for split, items in (extra_items or {}).items():
        for key, label in items:
            # the bytes the test wrote there (as the index would have recorded them), or none for a missing file
            sha = store.head(key).sha256 if store.exists(key) else "0" * 64
            datalist[sections[split]].append(
                {"image": key, "label": label, "label_name": classes[label], "patient_id": key, "sha256": sha}
            )
    datalist = {"labels": list(classes), **{k: sorted(v, key=lambda r: r["image"]) for k, v in datalist.items()}}
    prefix = splits_prefix(dataset)
    writer = StageWriter(store, "split", prefix, {"seed": seed, "size": size, "fmt": fmt}, {})
    writer.begin()
    writer.put_bytes("datalist.json", json.dumps(datalist, indent=1, sort_keys=True).encode())
    for split, rows in csv_rows.items():
        header = ",".join(("key", "label", "patient_id", "split", *columns))
        writer.put_bytes(f"{split}.csv", (header + "\n" + "\n".join(sorted(rows)) + "\n").encode())
    return writer.commit(summary={"classes": list(classes), **{s: len(r) for s, r in csv_rows.items()}})
