"""The PHI scan: read back what is about to be stored and look for anything identifying that is left.

It trusts nothing the de-identifier did: the stored bytes are parsed again and compared, element by element at
every level of nesting, with the original. A finding names the check and where (a tag path, or the file's path in
the dataset), never the value. Checks:

- ``identifier``: a free-text value (names, long and short strings, texts; or the file's path) holds one of the
  original's identifying values (a part of a person's name, an ID, the birth date...), as a whole word, in any case;
- ``person name``: a person name is left that is not empty or the profile's dummy;
- ``kept value``: an attribute the profile changes (removes, empties, replaces) still holds its original value,
  a date included;
- ``removed attribute``: an attribute the profile removes is still there (unless an option keeps it);
- ``original UID``: an instance UID of the original survives anywhere;
- ``private``: a private attribute that is not on the safe-private allow list;
- ``marking``: PatientIdentityRemoved is not ``YES``, or the method code sequence does not name the profile.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from jobs.collect.deid.deidentify import (
    DATE_VRS,
    DUMMY_DATES,
    FREE_TEXT_VRS,
    Deidentifier,
    identifier_pattern,
    identifiers,
    is_descriptor,
    is_instance_uid,
    values_of,
    walk,
)
from jobs.collect.deid.profile import BASIC

_SEARCHED_VRS = FREE_TEXT_VRS | {"UN"}
_PIXELS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


@dataclass(frozen=True, order=True)
class Finding:
    """One thing the scan found: which check, and where (a tag path or ``path``); never the value."""

    check: str
    where: str

    def __str__(self) -> str:
        return f"{self.check} at {self.where}"


def _elements(ds: Dataset) -> dict[str, DataElement]:
    found = {path: elem for path, _, elem in walk(ds)}
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        found.update({f"meta{path}": elem for path, _, elem in walk(meta)})
    return found


def _instance_uids(elements: dict[str, DataElement]) -> set[str]:
    """The original's instance UIDs, from public attributes (a private one's meaning is unknown)."""
    return {
        v.strip()
        for e in elements.values()
        if e.VR == "UI" and not e.tag.is_private and e.keyword
        for v in values_of(e)
        if is_instance_uid(int(e.tag), v)
    }


_DUMMY_VALUES = frozenset(("ANONYMIZED", "ANONYMOUS", "0", "000Y", *DUMMY_DATES.values()))


def _dummies(values: list[str]) -> bool:
    """Whether the values are the profile's own dummies (an already de-identified original holds them too)."""
    return all(v.strip() in _DUMMY_VALUES for v in values)


class PhiScan:
    """The scan for one de-identifier (its profile and options)."""

    def __init__(self, deid: Deidentifier) -> None:
        self.deid = deid
        self.table = deid.table
        self._safe = {(p.group, p.creator, p.element) for p in deid.options.safe_private}

    def scan(self, original: Dataset, stored: bytes, path: str) -> list[Finding]:
        """Everything identifying left in ``stored`` (the bytes to store for ``original``), sorted."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = pydicom.dcmread(io.BytesIO(stored), force=True)
        except Exception:  # what cannot be read back cannot be checked: never stored
            return [Finding("unreadable", "file")]
        pattern = identifier_pattern(identifiers(original, self.table))
        before = _elements(original)
        after = _elements(out)
        uids = _instance_uids(before)
        findings = {f for where, elem in after.items() for f in self._element(where, elem, before, uids, pattern)}
        findings.update(self._private(out))
        findings.update(self._marks(out))
        if pattern is not None and pattern.search(path):
            findings.add(Finding("identifier", "path"))
        return sorted(findings)

    def _element(
        self,
        where: str,
        elem: DataElement,
        before: dict[str, DataElement],
        uids: set[str],
        pattern: re.Pattern[str] | None,
    ) -> list[Finding]:
        tag = int(elem.tag)
        if tag in _PIXELS or elem.tag.is_private:
            return []
        values = values_of(elem) if elem.VR != "SQ" else []
        found = []
        if pattern is not None and elem.VR in _SEARCHED_VRS and any(pattern.search(v) for v in values):
            found.append(Finding("identifier", where))
        if elem.VR == "PN" and any(v.strip() not in ("", "ANONYMOUS") for v in values):
            found.append(Finding("person name", where))
        if elem.VR == "UI" and any(v.strip() in uids and is_instance_uid(tag, v) for v in values):
            found.append(Finding("original UID", where))
        action = self.table.action(tag)
        options = self.deid.options
        cleaned = options.clean_descriptors and is_descriptor(tag, elem.VR)
        moved = options.retain_dates and elem.VR in DATE_VRS
        original = before.get(where)
        changes = action is not None or elem.VR in DATE_VRS
        same = original is not None and values and values == values_of(original)
        if changes and same and not cleaned and not (moved and elem.VR == "TM") and not _dummies(values):
            found.append(Finding("kept value", where))  # (a time of day stays when dates move by whole days)
        if action is not None and action.startswith("X") and elem.VR != "UI" and not (cleaned or moved) and values:
            found.append(Finding("removed attribute", where))
        return found

    def _private(self, out: Dataset) -> list[Finding]:
        found = []
        for where, ds, elem in walk(out):
            tag = elem.tag
            if not tag.is_private or tag.element < 0x1000:
                continue
            creator = ds.get(tag.group << 16 | tag.element >> 8)
            name = str(creator.value).strip() if creator is not None and creator.value else ""
            if (tag.group, name, tag.element & 0xFF) not in self._safe:
                found.append(Finding("private", where))
        return found

    def _marks(self, out: Dataset) -> list[Finding]:
        found = []
        if str(out.get("PatientIdentityRemoved", "")).strip() != "YES":
            found.append(Finding("marking", "(0012,0062)"))
        codes = {str(item.get("CodeValue", "")) for item in out.get("DeidentificationMethodCodeSequence") or []}
        if BASIC.value not in codes:
            found.append(Finding("marking", "(0012,0064)"))
        return found
