"""pydicom's test files with synthetic PHI written into every attribute PS3.15 Annex E names, for the
de-identification tests.

Each attribute of the Basic Profile's table (the same table the de-identifier applies, so no attribute can be
forgotten by both) gets a value of its VR that is easy to find again: text and names hold ``PHIX7Q`` and the tag,
dates ``19710203``, UIDs a new UID under ``PHI_UID_ROOT``, sequences one item with a name and a UID in it. The
identifying attributes keep one value per original patient, study and series, so grouping can be checked after.
Every file also gets a private block holding PHI.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from jobs.collect.deid.deidentify import is_descriptor, is_identifying
from jobs.collect.deid.profile import basic_profile

MARK = "PHIX7Q"
"""Six letters no pixel data or header of the corpus holds: every synthetic text value contains them."""
PHI_DATE = "19710203"
DESCRIPTION = "CHESTPA"
"""The words of every injected description that are not identifying: Clean Descriptors keeps them."""
PATIENT_FAMILY = f"{MARK}FAMILY"
"""Every file's patient name is ``PATIENT_FAMILY^<given>``: descriptions name it."""
PHI_UID_ROOT = "1.2.826.0.1.3680043.10.543"
KEPT_UIDS = (0x0020000D, 0x0020000E, 0x00080018)
"""Study, series and SOP instance UID: kept as the file has them, so grouping survives to be checked."""
_SKIPPED_GROUPS = (0x0000, 0x0002, 0x0004)
_SKIPPED = (0x00100020,)  # PatientID: set per original patient below


@dataclass(frozen=True)
class PhiFile:
    """One corpus file with PHI written in: its bytes, and the identities it was given."""

    name: str
    data: bytes
    patient: str
    study: str
    series: str
    sop: str


def _value(tag: int, vr: str, n: int) -> object | None:
    token = f"{MARK}{tag:08X}"
    if vr == "PN":
        return f"{token}^GIVEN{MARK}"
    if vr in ("LO", "LT", "ST", "UT", "UC", "SH"):
        return token if vr == "SH" else f"{token} lives at 1 {MARK} Street"
    if vr == "CS":
        return token
    if vr == "AE":
        return token[:16]
    if vr == "DA":
        return PHI_DATE
    if vr == "DT":
        return PHI_DATE + "101112"
    if vr == "TM":
        return "101112"
    if vr == "UI":
        return f"{PHI_UID_ROOT}.{tag}.{n}"
    if vr == "UR":
        return f"https://{MARK.lower()}.example/{tag:08X}"
    if vr == "SQ":
        item = Dataset()
        item.PersonName = f"{MARK}SQ{tag:08X}^NESTED"
        item.ReferencedSOPInstanceUID = f"{PHI_UID_ROOT}.{tag}.{n}.1"
        item.ContentDate = PHI_DATE
        return [item]
    return None  # numbers, binary, ages: no findable token (the PHI scan checks their values changed)


def _inject(ds: Dataset, n: int, patient: str) -> None:
    for tag in sorted(basic_profile().actions):
        if tag >> 16 in _SKIPPED_GROUPS or tag in _SKIPPED or tag in KEPT_UIDS:
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        value = _value(tag, vr, n)
        if vr in ("LO", "LT", "ST", "UT", "UC", "SH") and is_descriptor(tag, vr) and not is_identifying(tag):
            # a description that names the patient: Clean Descriptors keeps the words, cuts out name and ID
            value = f"{DESCRIPTION} for {PATIENT_FAMILY} {patient}"[: 16 if vr == "SH" else 64]
        if value is not None:
            ds.add_new(tag, vr, value)
    block = ds.private_block(0x0011, f"{MARK} VENDOR", create=True)
    block.add_new(0x10, "LO", f"{MARK} private patient name")


def _identity(ds: Dataset, name: str) -> str:
    return str(ds.get("PatientID") or "").strip() or name


def phi_corpus() -> list[PhiFile]:
    """Every pydicom (and pydicom-data) test file that holds pixel data, with PHI written in."""
    files = []
    paths = sorted(p for p in get_testdata_files() if os.path.isfile(p))
    for n, path in enumerate(paths):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                if "PixelData" not in ds or "DirectoryRecordSequence" in ds or "SOPInstanceUID" not in ds:
                    continue
                digest = hashlib.sha256(_identity(ds, Path(path).name).encode()).hexdigest()[:8].upper()
                patient = f"{MARK}PAT{digest}"
                ds.PatientID = patient
                _inject(ds, n, patient)
                ds.PatientName = f"{PATIENT_FAMILY}^GIVEN{MARK}"
                out = io.BytesIO()
                ds.save_as(out, enforce_file_format=False)
        except Exception:  # files pydicom reads but cannot write back changed (odd VRs): not part of the corpus
            continue
        files.append(
            PhiFile(
                f"{n:04d}.dcm",
                out.getvalue(),
                patient,
                str(ds.get("StudyInstanceUID", "")),
                str(ds.get("SeriesInstanceUID", "")),
                str(ds.SOPInstanceUID),
            )
        )
    return files
