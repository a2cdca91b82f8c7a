"""Who an image belongs to, and which copy of an image to keep: the facts split groups and deduplicates by.

**Grouping.** A row's ``patient_id`` is the best identity the file offers, and ``group_by`` says which one it is:
``patient_id`` (DICOM PatientID), ``labels`` (the labels CSV's or layout adapter's patient), ``other_patient_ids``
((0010,1000) Other Patient IDs or its sequence), ``study_uid``, ``series_uid``, else ``file`` (the file's stem).
Falling back on the study before the file keeps the encodings and slices of one examination together when the
PatientID was blanked, so they can never land in different splits.

**Same image.** One SOPInstanceUID is one image, whatever its encoding: of the files that share one, the index
keeps a lossless copy (native or losslessly compressed, and never marked ``LossyImageCompression=01``), the first
by key among equals, and lists the others in ``quarantine.csv`` as duplicates of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import UID

from jobs.index.dicom_header import DicomHeader

GROUP_BY = ("patient_id", "labels", "other_patient_ids", "study_uid", "series_uid", "file")
"""The identities a row can be grouped by, best first (the index's ``group_by`` column)."""


def patient_identity(header: DicomHeader | None, layout_patient: str | None, stem: str) -> tuple[str, str]:
    """``(patient_id, group_by)``: the first identity the file has, in ``GROUP_BY`` order."""
    candidates = (
        header.patient_id if header else None,
        layout_patient,
        header.other_patient_id if header else None,
        header.study_uid if header else None,
        header.series_uid if header else None,
        stem,
    )
    for value, kind in zip(candidates, GROUP_BY, strict=True):
        if value:
            return value, kind
    return stem, "file"


def is_lossy(header: DicomHeader | None) -> bool | None:
    """Whether a DICOM image's pixels went through lossy compression; ``None`` for other formats.

    Lossy when its transfer syntax is a compression pydicom does not name lossless (JPEG baseline, JPEG 2000
    that allows loss, MPEG...) or when (0028,2110) Lossy Image Compression says ``01``.
    """
    if header is None:
        return None
    if (header.lossy_compression or "").strip() == "01":
        return True
    syntax = UID(header.transfer_syntax or "")
    if not (syntax.is_transfer_syntax and syntax.is_compressed):
        return False
    name = syntax.name  # "JPEG-LS Lossy (Near-Lossless)" is lossy; "RLE Lossless", "... (Lossless Only)" are not
    return "Lossy" in name or not any(word in name for word in ("Lossless", "Uncompressed"))


@dataclass(frozen=True, slots=True)
class Copy:
    """One file holding an image: its key and whether its pixels are lossy."""

    key: str
    lossy: bool


class SameImage:
    """Picks, per SOPInstanceUID, the copy to keep: lossless before lossy, then the first key."""

    def __init__(self) -> None:
        self._kept: dict[str, Copy] = {}

    def offer(self, sop_uid: str | None, key: str, lossy: bool | None) -> None:
        """Note one file; files without a SOPInstanceUID are never duplicates by it."""
        if not sop_uid:
            return
        copy = Copy(key, bool(lossy))
        best = self._kept.get(sop_uid)
        if best is None or (best.lossy and not copy.lossy) or (best.lossy == copy.lossy and key < best.key):
            self._kept[sop_uid] = copy

    def kept(self, sop_uid: str | None, key: str) -> str | None:
        """The key kept for ``sop_uid`` when it is not ``key`` (so ``key`` is a duplicate); ``None`` otherwise."""
        best = self._kept.get(sop_uid) if sop_uid else None
        return best.key if best is not None and best.key != key else None
