"""Small, valid DICOM files built in memory with pydicom, for tests and benchmarks (no files checked in)."""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def dicom_bytes(
    patient_id: str = "P1",
    *,
    rows: int = 8,
    columns: int = 8,
    seed: int = 0,
    modality: str = "CR",
    photometric: str = "MONOCHROME2",
    body_part: str | None = "CHEST",
    spacing: tuple[float, float] | None = (0.5, 0.25),
    preamble: bool = True,
    study_uid: str | None = None,
    series_uid: str | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    """A 16-bit single-frame image whose pixels depend on ``seed`` (so distinct seeds give distinct files);
    ``extra`` sets further attributes by keyword (``{"PatientSex": "F"}``)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    sop_uid = generate_uid(entropy_srcs=[patient_id, str(seed), "sop"])
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128 if preamble else None)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid or generate_uid(entropy_srcs=[patient_id, "study"])
    ds.SeriesInstanceUID = series_uid or generate_uid(entropy_srcs=[patient_id, "series"])
    ds.Modality = modality
    if body_part:
        ds.BodyPartExamined = body_part
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if spacing:
        ds.PixelSpacing = list(spacing)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    pixels = np.random.default_rng(seed).integers(0, 4096, size=(rows, columns), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=preamble)
    return out.getvalue()
