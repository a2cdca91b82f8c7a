"""Kaggle chest-xray-pneumonia: ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/<file>.jpeg``.

The label is the class folder. Patients are encoded in file names: ``person1_bacteria_1.jpeg`` (patient
``person1``), ``IM-0115-0001.jpeg`` and ``NORMAL2-IM-1427-0001.jpeg`` (the name without its image number).
The archive's ``__MACOSX`` litter is skipped. The train/val/test folder is recorded as ``official_split`` (its
val folder holds only 16 images, so ``irmsia-split`` re-splits by patient unless told ``--split-from official``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jobs.index.label_table import LabelTable
from jobs.index.layouts.base import Assignment, FileFacts, Layout, labelled_by_table, mostly_match

_PATH = re.compile(r"(^|/)(train|val|test)/(NORMAL|PNEUMONIA)/[^/]+$")
_PERSON = re.compile(r"^(person\d+)_")
_NUMBERED = re.compile(r"^(.+)-\d+$")


class ChestXrayLayout(Layout):
    """Label NORMAL or PNEUMONIA from the class folder; patient from the file name."""

    name = "chest-xray-pneumonia"
    about = "chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/ (Kaggle paultimothymooney)"

    @classmethod
    def detect(cls, rels: Sequence[str], labels: LabelTable | None) -> bool:
        return mostly_match(rels, _PATH)

    def skip(self, rel: str) -> bool:
        return "__MACOSX/" in rel or rel.rsplit("/", 1)[-1].startswith("._")

    def assign(self, facts: FileFacts) -> Assignment:
        if self.labels is not None:
            found = labelled_by_table(self.labels, facts)
            match = _PATH.search(facts.rel)
            return Assignment(found.label, found.patient_id, official_split=match.group(2) if match else None)
        match = _PATH.search(facts.rel)
        if match is None:
            return Assignment(None, patient_from_name(facts.rel))
        return Assignment(match.group(3), patient_from_name(facts.rel), official_split=match.group(2))


def patient_from_name(rel: str) -> str | None:
    """``person12_virus_3.jpeg`` -> ``person12``; ``IM-0115-0001.jpeg`` -> ``IM-0115``."""
    stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if match := _PERSON.match(stem):
        return match.group(1)
    if match := _NUMBERED.match(stem):
        return match.group(1)
    return None
