"""The PS3.15 Annex E Basic Application Level Confidentiality Profile: what to do with each attribute.

The attribute table is the standard's Table E.1-1 (Basic Profile column) as ``dicom-anonymizer`` ships it, one
module per DICOM release, so the list follows the standard rather than a list kept here. Each attribute gets one of
the standard's action codes: ``X`` remove, ``Z`` empty, ``D`` dummy value, ``U`` consistent new UID, and the
combined ``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*`` (which depend on the IOD's type of the attribute). The
options' codes (PS3.16 CID 7050) come from pydicom's code dictionary.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from functools import cache

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

STANDARD = "2026c"
"""The DICOM release whose Table E.1-1 is applied."""
_TABLE_MODULE = f"dicomanonymizer.dicom_anonymization_databases.dicomfields_{STANDARD}"
_CATEGORIES = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}  # fmt: skip
"""dicom-anonymizer's lists -> the standard's action codes."""

PROFILE = "PS3.15 Annex E Basic Application Level Confidentiality Profile"
BASIC = codes.DCM.BasicApplicationConfidentialityProfile
MODIFIED_DATES = codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption
CLEAN_DESCRIPTORS = codes.DCM.CleanDescriptorsOption
SAFE_PRIVATE = codes.DCM.RetainSafePrivateOption


@dataclass(frozen=True)
class Table:
    """Tag -> action for single attributes, and ``(group, element, group mask, element mask, action)`` for the
    repeating groups (curves ``50xx``, overlays ``60xx``)."""

    actions: dict[int, str]
    masks: tuple[tuple[int, int, int, int, str], ...]
    source: str
    """Which library and release the table came from, for the manifest."""

    def action(self, tag: int) -> str | None:
        """The Basic Profile's action for ``tag``, or ``None`` when the profile keeps the attribute."""
        if (found := self.actions.get(tag)) is not None:
            return found
        group, element = tag >> 16, tag & 0xFFFF
        for g, e, gmask, emask, act in self.masks:
            if group & gmask == g & gmask and element & emask == e & emask:
                return act
        return None


@cache
def basic_profile() -> Table:
    """The Basic Profile table of ``STANDARD`` (loaded once)."""
    module = importlib.import_module(_TABLE_MODULE)
    actions: dict[int, str] = {}
    masks: list[tuple[int, int, int, int, str]] = []
    for name, act in _CATEGORIES.items():
        for entry in getattr(module, name):
            if len(entry) == 2:
                actions[entry[0] << 16 | entry[1]] = act
            else:
                masks.append((*entry, act))
    version = importlib.metadata.version("dicom-anonymizer")
    return Table(actions, tuple(masks), f"DICOM {STANDARD} Table E.1-1 via dicom-anonymizer {version}")


def method_codes(retain_dates: bool, clean_descriptors: bool, safe_private: bool) -> list[Code]:
    """The De-identification Method Code Sequence items for the profile and the options applied."""
    chosen = [BASIC]
    if retain_dates:
        chosen.append(MODIFIED_DATES)
    if clean_descriptors:
        chosen.append(CLEAN_DESCRIPTORS)
    if safe_private:
        chosen.append(SAFE_PRIVATE)
    return chosen
