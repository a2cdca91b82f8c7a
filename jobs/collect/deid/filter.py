"""What the collect stage's ``RawSink`` asks before it stores a file with ``--deidentify``: store these bytes instead,
store it as it is, or leave it out.

A DICOM file (recognised by content, with or without preamble) is read whole, checked for burned-in annotation,
de-identified, written back in its own encoding and scanned; only bytes that pass the scan are stored. Files that
are not DICOM (licences, label CSVs, PNGs) are stored as they are and counted. The filter is shared by the sink's
upload threads: its tallies are guarded by a lock, and the report it gives the manifest holds counts, check names
and tag paths, never a value.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from jobs.collect.deid.deidentify import Deidentifier, DeidOptions, identifiers, instance_uids
from jobs.collect.deid.phi_scan import Finding, PhiScan
from jobs.collect.deid.profile import PROFILE, STANDARD
from jobs.collect.deid.pseudonyms import Pseudonyms

log = logging.getLogger("irmsia.collect")

BURNED_IN_MODALITIES = ("US", "SC", "OT")
"""Modalities whose images often carry text in their pixels: left out when BurnedInAnnotation does not say NO."""
QUARANTINE_FILE = "_deid/quarantine.csv"
"""Under ``raw/<dataset>/``: the files left out, by pseudonymous SOP Instance UID and reason (a sidecar)."""
_REPORTED = 20
"""Findings named in the manifest's report and the error (the rest are counted)."""
SIDECAR_SCAN_BYTES = 64 << 20
SIDECAR_MIN_CHARS = 6
"""Identifying values shorter than this are not searched for in sidecars, where short numbers abound."""
_SIDECAR_NAMES = ("license", "readme")
_SIDECAR_SUFFIXES = (".csv", ".txt", ".json", ".md", ".tcia", ".tsv")
_TOKENS = re.compile(r"[^a-z0-9._\-^]+")
_PARTS = re.compile(r"[._\-^]+")


def is_text_sidecar(name: str) -> bool:
    """A text file beside the images (labels, lists, licences) that may repeat what headers hold."""
    base = name.rsplit("/", 1)[-1].lower()
    return base.startswith(_SIDECAR_NAMES) or base.endswith(_SIDECAR_SUFFIXES)


def looks_like_dicom(head: bytes) -> bool:
    """DICOM with the 128-byte preamble, or a bare data set starting with a file meta or identifying element."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08") and head[2:4] < b"\x20"


@dataclass(frozen=True)
class Verdict:
    """What to do with one file: ``data`` to store instead (``None``: store the original), or why it is left out."""

    data: bytes | None = None
    left_out: str | None = None
    findings: tuple[Finding, ...] = ()


class DeidFilter:
    """De-identifies every DICOM file on its way into the store and keeps the stage's report."""

    def __init__(self, secret: str, options: DeidOptions) -> None:
        self.pseudonyms = Pseudonyms(secret)
        self.deid = Deidentifier(self.pseudonyms, options)
        self.scanner = PhiScan(self.deid)
        self.options = options
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._left_out: list[tuple[str, str]] = []
        self._findings: list[tuple[str, Finding]] = []
        self._known: set[str] = set()
        """Every DICOM original's identifying values and instance UIDs (lower case), for the sidecar scan."""
        self._sidecars: list[tuple[str, bytes]] = []

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What makes the de-identified result what it is, for the cache key and the units' validators."""
        return {"profile": f"{PROFILE} (DICOM {STANDARD})", **self.deid.options.describe(),
                "secret_scrypt": self.pseudonyms.fingerprint()}  # fmt: skip

    def admit(self, name: str, data: bytes) -> Verdict:
        """The verdict on the file ``name`` (its path under the dataset) whose bytes are ``data``."""
        if not looks_like_dicom(data[:132]):
            self._count("stored as they are (not DICOM)")
            if is_text_sidecar(name) and len(data) <= SIDECAR_SCAN_BYTES:
                with self._lock:
                    self._sidecars.append((name, data))
            return Verdict()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                original = pydicom.dcmread(io.BytesIO(data), force=True)
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except Exception:  # a file that cannot be read cannot be de-identified: it must not be stored
            return self._leave_out(None, "unreadable DICOM: cannot be de-identified")
        known = {v.lower() for v in identifiers(original, self.deid.table) | instance_uids(original)}
        with self._lock:
            self._known.update(v for v in known if len(v) >= SIDECAR_MIN_CHARS)
        if _is_dicomdir(ds):
            return self._leave_out(None, "DICOMDIR: the export's directory, whose records name patients and files")
        if (burned := self._burned_in(ds)) is not None:
            return self._leave_out(ds, burned)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.deid.apply(ds)
                out = _written(ds)
        except Exception as exc:
            return self._leave_out(None, f"cannot be de-identified: {type(exc).__name__}")
        findings = self.scanner.scan(original, out, name)
        with self._lock:
            self._counts["headers scanned"] += 1
            if findings:
                self._findings.extend((self._label(ds), f) for f in findings)
                return Verdict(findings=tuple(findings))
            self._counts["de-identified"] += 1
        return Verdict(data=out)

    def _burned_in(self, ds: Dataset) -> str | None:
        if self.options.allow_burned_in:
            return None
        said = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        if said == "YES":
            return "burned-in annotation: BurnedInAnnotation is YES"
        modality = str(ds.get("Modality", "") or "").strip().upper()
        sop = UID(str(ds.get("SOPClassUID", "") or "").strip())
        secondary = "Secondary Capture" in sop.name
        if not said and (modality in BURNED_IN_MODALITIES or secondary):
            what = f"modality {modality}" if modality in BURNED_IN_MODALITIES else sop.name
            return f"possible burned-in annotation: {what} without BurnedInAnnotation NO"
        return None

    def _label(self, ds: Dataset | None) -> str:
        """How reports name a file: its pseudonymous SOP Instance UID (the original may identify)."""
        sop = str(ds.get("SOPInstanceUID", "") or "") if ds is not None else ""
        return sop if sop.startswith("2.25.") else (self.pseudonyms.uid(sop) if sop else "(no SOP Instance UID)")

    def _leave_out(self, ds: Dataset | None, reason: str) -> Verdict:
        with self._lock:
            self._counts["left out"] += 1
            self._left_out.append((self._label(ds), reason))
        return Verdict(left_out=reason)

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def scan_sidecars(self) -> None:
        """Search the stored text sidecars (label CSVs, series lists) for any DICOM original's identifying values
        and instance UIDs: a finding fails the stage like one in a header."""
        with self._lock:
            sidecars, known = list(self._sidecars), set(self._known)
        for name, data in sidecars:
            tokens = set(_TOKENS.split(data.decode("utf-8", "replace").lower()))
            tokens |= {part for token in tokens for part in _PARTS.split(token)}
            if tokens & known:
                with self._lock:
                    self._findings.append((name, Finding("identifier", "sidecar")))

    # -- the report ----------------------------------------------------------------------------------------------
    @property
    def findings(self) -> list[tuple[str, Finding]]:
        with self._lock:
            return sorted(self._findings)

    def quarantine_csv(self) -> bytes | None:
        """``sop_instance_uid,reason`` for the files left out (pseudonymous UIDs), or ``None`` when there are none."""
        with self._lock:
            rows = sorted(self._left_out)
        if not rows:
            return None
        lines = ["sop_instance_uid,reason", *(f"{sop},{reason.replace(',', ';')}" for sop, reason in rows)]
        return ("\n".join(lines) + "\n").encode()

    def report(self) -> dict[str, Any]:
        """The manifest's ``deidentification`` summary: profile, options, counts, and the PHI scan's result."""
        with self._lock:
            counts = dict(sorted(self._counts.items()))
            reasons = Counter(reason.split(":", 1)[0] for _, reason in self._left_out)
            findings = sorted(self._findings)
        return {
            "profile": PROFILE,
            "standard": self.deid.table.source,
            "options": self.deid.options.describe(),
            "uids": "2.25 + HMAC-SHA256 under IRMSIA_DEID_SECRET",
            "files": counts,
            "left_out": dict(sorted(reasons.items())),
            "phi_scan": {
                "headers": counts.get("headers scanned", 0),
                "findings": len(findings),
                "first": [f"{sop}: {finding}" for sop, finding in findings[:_REPORTED]],
            },
        }


def _is_dicomdir(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else ""
    return sop.strip() == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in ds


def _written(ds: Dataset) -> bytes:
    """``ds`` written back in the encoding it was read in (a file without meta stays without)."""
    out = io.BytesIO()
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") or "").strip() if meta is not None else ""
    if syntax:
        ds.save_as(out, enforce_file_format=False)  # as it was read: preamble and meta only if it had them
    else:
        implicit, little = ds.original_encoding
        ds.save_as(out, implicit_vr=bool(implicit), little_endian=little is not False)
    return out.getvalue()
