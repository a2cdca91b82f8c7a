"""Apply the Basic Profile to one DICOM data set, in place, at every level of nesting.

Per attribute (``profile.basic_profile()``): ``X`` removes it; ``Z`` empties it; ``D`` gives it a dummy or, for
identifiers, a keyed pseudonym (``pseudonyms``); ``U`` maps each UID to its pseudonym, so references between
files stay consistent; the combined codes keep the least (``Z/D`` empties unless the value is an identifier or UID
that grouping needs; ``X/Z``, ``X/D``, ``X/Z/D`` and ``X/Z/U*`` remove). Attributes the table does not name are
still covered by their VR: every person name is emptied, every date and time follows the date rule, every UID
that is not a registered DICOM UID (a class, a transfer syntax) is mapped. Private attributes are removed unless
named in the safe-private allow list. Options:

- *Retain Longitudinal Temporal Information with Modified Dates*: every date moves back by the patient's own
  number of days (times stay), so intervals survive; the birth date is emptied all the same. Without it dates are
  removed, emptied or set to a dummy as the table says.
- *Clean Descriptors*: descriptions, comments, notes and protocol names are kept with every identifying value of
  the file (names, IDs, birth date...) cut out of them, instead of being removed.

Then PatientIdentityRemoved is ``YES``, DeidentificationMethod and its code sequence name the profile and options,
and LongitudinalTemporalInformationModified says what happened to dates.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.coding import Code
from pydicom.tag import BaseTag
from pydicom.uid import UID

from jobs.collect.deid.options import DeidOptions
from jobs.collect.deid.profile import STANDARD, Table, basic_profile, method_codes
from jobs.collect.deid.pseudonyms import Pseudonyms

TEXT_VRS = frozenset(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR", "AS", "DS", "IS", "DA", "DT", "TM"))
DATE_VRS = frozenset(("DA", "DT", "TM"))
_DESCRIPTOR_WORDS = ("Description", "Comment", "Notes", "Narrative", "History", "ProtocolName")
"""Keyword parts of the free-text attributes the Clean Descriptors option keeps (cleaned) instead of removing."""
_IDENTIFYING_WORDS = ("ID", "Address", "Telephone", "AccessionNumber", "OrderNumber", "MedicalRecord", "Insurance")
"""Keyword parts of the attributes (besides person names and the birth date) whose values identify a person: cut out
of kept text, searched for by the PHI scan. Site and device names (institution, station, serial number) are
removed by the profile but not searched for: they are often the manufacturer's name, which stays."""
FREE_TEXT_VRS = frozenset(("PN", "LO", "LT", "SH", "ST", "UC", "UT"))
"""VRs that can hold a person's name or ID in free text (codes, numbers and dates cannot)."""
LONG_TEXT_VRS = frozenset(("LT", "ST", "UT"))
"""Texts (an SR's text items, explanations): removed wherever they are, or cleaned with Clean Descriptors."""
BIRTH_DATE = 0x00100030
DUMMY_DATES = {"DA": "19000101", "DT": "19000101000000", "TM": "000000"}
PATIENT_IDENTITY = (0x00100020, 0x00101000, 0x0020000D, 0x0020000E, 0x00080018)
"""PatientID, Other Patient IDs, Study, Series and SOP Instance UID: whose dates move together (the first present)."""


def keyword_of(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or ""


def is_descriptor(tag: int, vr: str = "") -> bool:
    """A free-text attribute the Clean Descriptors option keeps, cleaned: descriptions, comments, notes, texts."""
    return vr in LONG_TEXT_VRS or any(word in keyword_of(tag) for word in _DESCRIPTOR_WORDS)


_AN_ID = re.compile(r"(?<![A-Z])IDs?(?![a-z])")
"""``ID`` as a word of a keyword (PatientID, OtherPatientIDs), not inside one (ROIDescription)."""


def is_identifying(tag: int) -> bool:
    """Whether the attribute holds a value that identifies a person (an ID, an address, a phone number...)."""
    keyword = keyword_of(tag)
    if keyword.endswith("UID"):
        return False
    return bool(_AN_ID.search(keyword)) or any(word in keyword for word in _IDENTIFYING_WORDS[1:])


def is_instance_uid(tag: int, value: str) -> bool:
    """A UID that names an instance (not a registered class, transfer syntax or coding scheme): to be mapped."""
    keyword = keyword_of(tag)
    if keyword.endswith("ClassUID") or keyword in ("TransferSyntaxUID", "CodingSchemeUID") or not value:
        return False
    uid = UID(value.strip())
    return uid.name == str(uid)  # registered UIDs have a name in pydicom's dictionary


def values_of(elem: DataElement) -> list[str]:
    """An element's values as text (``[]`` when empty)."""
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return [str(value)]


def walk(ds: Dataset, path: str = "") -> Iterator[tuple[str, Dataset, DataElement]]:
    """Every element of ``ds`` and of its sequence items: ``(path, the data set holding it, element)``."""
    for tag in list(ds.keys()):
        elem = ds[tag]
        where = f"{path}({tag.group:04X},{tag.element:04X})"
        yield where, ds, elem
        if elem.VR == "SQ" and elem.value is not None:
            for n, item in enumerate(elem.value):
                yield from walk(item, f"{where}[{n}]")


def patient_key(ds: Dataset) -> str:
    """The identity one patient's dates shift by: the first of PatientID, Other Patient IDs, study, series, SOP."""
    for tag in PATIENT_IDENTITY:
        if tag in ds and (found := values_of(ds[tag])):
            return found[0].strip()
    return ""


def identifiers(ds: Dataset, table: Table) -> set[str]:
    """The file's identifying values (3 characters or more): person name parts, the originals of the profile's
    identifying attributes and the birth date. Cut out of kept text, and searched for by the PHI scan."""
    found: set[str] = set()
    for _, _, elem in walk(ds):
        tag = int(elem.tag)
        if elem.VR == "PN":
            for value in values_of(elem):
                found.update(re.split(r"[\^=]", value))
        elif tag == BIRTH_DATE or (elem.VR in FREE_TEXT_VRS and table.action(tag) is not None and is_identifying(tag)):
            found.update(values_of(elem))
    return {value.strip() for value in found if len(value.strip()) >= 3}


def instance_uids(ds: Dataset) -> set[str]:
    """The instance UIDs of the public attributes of ``ds`` (a private attribute's meaning is unknown)."""
    return {
        v.strip()
        for _, _, elem in walk(ds)
        if elem.VR == "UI" and not elem.tag.is_private and elem.keyword
        for v in values_of(elem)
        if is_instance_uid(int(elem.tag), v)
    }


def identifier_pattern(values: set[str]) -> re.Pattern[str] | None:
    """A pattern matching any of ``values`` as a whole word, case-insensitively (longest first)."""
    if not values:
        return None
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=lambda v: (-len(v), v)))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


class Deidentifier:
    """The profile, its options and the pseudonyms of one secret: ``apply(ds)`` de-identifies a data set in place."""

    def __init__(self, pseudonyms: Pseudonyms, options: DeidOptions, table: Table | None = None) -> None:
        self.pseudonyms = pseudonyms
        self.options = options
        self.table = table or basic_profile()
        self._safe = {(p.group, p.creator, p.element) for p in options.safe_private}

    def apply(self, ds: Dataset) -> None:
        """De-identify ``ds`` (and its file meta) in place."""
        shift = self.pseudonyms.day_shift(patient_key(ds)) if self.options.retain_dates else 0
        scrub = identifier_pattern(identifiers(ds, self.table)) if self.options.clean_descriptors else None
        self._clean(ds, shift, scrub)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and (elem := meta.get(0x00020003)) is not None and elem.value:
            elem.value = self.pseudonyms.uid(str(elem.value))
        self._mark(ds)

    # -- the walk ----------------------------------------------------------------------------------------------
    def _clean(self, ds: Dataset, shift: int, scrub: re.Pattern[str] | None) -> None:
        private_kept = self._private(ds)
        for tag in list(ds.keys()):
            if tag.is_private:
                if tag not in private_kept:
                    del ds[tag]
                    continue
            elif tag.element == 0 and tag.group != 0x0002:  # group lengths: stale once values change
                del ds[tag]
                continue
            elem = ds[tag]
            if not tag.is_private:
                self._act(ds, elem, shift, scrub)
            if tag in ds and elem.VR == "SQ" and elem.value is not None:
                for item in elem.value:
                    self._clean(item, shift, scrub)

    def _private(self, ds: Dataset) -> set[BaseTag]:
        """The private tags of ``ds`` on the allow list, with their private creator elements."""
        kept: set[BaseTag] = set()
        if not self._safe:
            return kept
        for elem in ds:  # iterating a Dataset yields its elements
            tag = elem.tag
            if not tag.is_private or tag.element < 0x1000:
                continue
            creator_tag = BaseTag(tag.group << 16 | tag.element >> 8)
            creator = ds.get(creator_tag)
            name = str(creator.value).strip() if creator is not None and creator.value else ""
            if (tag.group, name, tag.element & 0xFF) in self._safe:
                kept.update((tag, creator_tag))
        return kept

    def _act(self, ds: Dataset, elem: DataElement, shift: int, scrub: re.Pattern[str] | None) -> None:
        tag = int(elem.tag)
        action = self.table.action(tag) or self._by_vr(elem)
        if action is None:
            return
        if elem.VR in DATE_VRS:
            self._date(ds, elem, action, shift)
        elif scrub is not None and action != "U" and elem.VR in TEXT_VRS and is_descriptor(tag, elem.VR):
            elem.value = [scrub.sub("***", v) for v in values_of(elem)] or None
            if isinstance(elem.value, list) and len(elem.value) == 1:
                elem.value = elem.value[0]
        elif action == "U" or elem.VR == "UI":
            self._uids(elem, tag, every=action == "U")
        elif action.startswith("X"):
            del ds[elem.tag]
        elif action == "Z" or (action == "Z/D" and not is_identifying(tag)):
            elem.value = [] if elem.VR == "SQ" else None
        else:  # D, or Z/D of an identifier grouping needs (PatientID)
            self._dummy(elem, tag)

    def _by_vr(self, elem: DataElement) -> str | None:
        """The action for an attribute the table does not name: by what its VR can hold."""
        if elem.VR == "PN" or elem.VR in DATE_VRS:
            return "Z"
        if elem.VR in LONG_TEXT_VRS:
            return "X"
        if elem.VR == "UI" and any(is_instance_uid(int(elem.tag), v) for v in values_of(elem)):
            return "U"
        return None

    def _uids(self, elem: DataElement, tag: int, every: bool) -> None:
        """Map the element's instance UIDs (``every``: all of them, as the table's ``U`` says)."""
        mapped = [self.pseudonyms.uid(v) if every or is_instance_uid(tag, v) else v for v in values_of(elem)]
        elem.value = (mapped[0] if len(mapped) == 1 else mapped) if mapped else None

    def _dummy(self, elem: DataElement, tag: int) -> None:
        vr = elem.VR
        if vr == "SQ":
            return  # kept; its items are cleaned by the walk
        if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
            elem.value = b"\x00\x00"
        elif vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
            elem.value = 0
        elif vr in ("DS", "IS"):
            elem.value = "0"
        elif vr == "AS":
            elem.value = "000Y"
        elif vr == "PN":
            elem.value = "ANONYMOUS"
        elif is_identifying(tag) and vr in ("LO", "SH", "CS", "AE"):
            found = [self.pseudonyms.identifier(v) for v in values_of(elem)]
            elem.value = (found[0] if len(found) == 1 else found) if found else None
        else:
            elem.value = "ANONYMIZED"

    def _date(self, ds: Dataset, elem: DataElement, action: str, shift: int) -> None:
        if int(elem.tag) == BIRTH_DATE:
            elem.value = None
        elif self.options.retain_dates:
            if elem.VR != "TM":  # whole days move: a time of day stays what it was
                shifted = [_shift(v, elem.VR, shift) for v in values_of(elem)]
                elem.value = (shifted[0] if len(shifted) == 1 else shifted) if shifted else None
        elif action.startswith("X"):
            del ds[elem.tag]
        elif action in ("D", "X/D", "X/Z/D") and values_of(elem):
            elem.value = DUMMY_DATES[elem.VR]
        else:
            elem.value = None

    # -- the marks ---------------------------------------------------------------------------------------------
    def _mark(self, ds: Dataset) -> None:
        options = self.options
        ds.PatientIdentityRemoved = "YES"
        named = [f"PS3.15 Annex E Basic Profile (DICOM {STANDARD})"]
        named += ["Modified Dates"] if options.retain_dates else []
        named += ["Clean Descriptors"] if options.clean_descriptors else []
        named += ["Retain Safe Private"] if options.safe_private else []
        ds.DeidentificationMethod = named if len(named) > 1 else named[0]
        ds.DeidentificationMethodCodeSequence = [
            _coded(code)
            for code in method_codes(options.retain_dates, options.clean_descriptors, bool(options.safe_private))
        ]
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if options.retain_dates else "REMOVED"


def _coded(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


_DATE_FORMATS = {8: "%Y%m%d", 10: "%Y.%m.%d"}


def _shift(value: str, vr: str, days: int) -> str:
    """A DA or DT value moved back ``days`` days; what cannot be read as a date is removed (``""``)."""
    text = value.strip()
    head, tail = (text[:8], text[8:]) if vr == "DT" else (text, "")
    fmt = _DATE_FORMATS.get(len(head))
    if fmt is None:
        return ""  # a partial or malformed date cannot be moved reliably: dropped, never kept as it was
    try:
        moved = datetime.datetime.strptime(head, fmt).date() - datetime.timedelta(days=days)
    except ValueError:
        return ""
    return moved.strftime("%Y%m%d") + tail
