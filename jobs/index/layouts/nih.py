"""NIH ChestX-ray14: ``images_NNN/images/<n>.png`` labelled by ``Data_Entry_2017*.csv``.

The CSV's ``Image Index`` names each file, ``Finding Labels`` holds the findings already joined by ``|``
(``Cardiomegaly|Effusion``, ``No Finding``), and ``Patient ID`` the patient. The CSV is found among the
dataset's sidecars, or given with ``--labels``. Images the CSV does not list are quarantined. The official
``train_val_list.txt`` / ``test_list.txt`` sidecars, when present, set ``official_split`` to train / test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jobs.index.label_table import LabelTable
from jobs.index.layouts.base import Assignment, FileFacts, Layout, labelled_by_table

_SIDECAR = re.compile(r"(^|/)Data_Entry_2017[^/]*\.csv$", re.IGNORECASE)
_SPLIT_LISTS = {
    "train": re.compile(r"(^|/)train_val_list[^/]*\.txt$"),
    "test": re.compile(r"(^|/)test_list[^/]*\.txt$"),
}


class NihLayout(Layout):
    """Multi-label findings and patient from the NIH data-entry CSV."""

    name = "nih"
    about = "NIH ChestX-ray14 images labelled by Data_Entry_2017.csv (Finding Labels, Patient ID)"
    needs_labels = True

    @classmethod
    def labels_sidecar(cls, sidecars: Sequence[str]) -> str | None:
        found = sorted(s for s in sidecars if _SIDECAR.search(s))
        return found[0] if found else None

    @classmethod
    def split_sidecars(cls, sidecars: Sequence[str]) -> dict[str, str]:
        return {s: split for s in sidecars for split, pattern in _SPLIT_LISTS.items() if pattern.search(s)}

    @classmethod
    def detect(cls, rels: Sequence[str], labels: LabelTable | None) -> bool:
        return (
            labels is not None
            and labels.has_file_column
            and labels.label_column.replace(" ", "").lower() == "findinglabels"
        )

    def assign(self, facts: FileFacts) -> Assignment:
        assert self.labels is not None
        found = labelled_by_table(self.labels, facts)
        official = self.official.get(facts.rel.rsplit("/", 1)[-1]) or found.official_split
        return Assignment(found.label, found.patient_id, official)
