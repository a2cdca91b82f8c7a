"""NIH ChestX-ray14: ``images_NNN/images/<n>.png`` labelled by ``Data_Entry_2017*.csv``.

The CSV's ``Image Index`` names each file, ``Finding Labels`` holds the findings already joined by ``|``
(``Cardiomegaly|Effusion``, ``No Finding``), and ``Patient ID`` the patient. The CSV is found among the
dataset's sidecars, or given with ``--labels``. Images the CSV does not list are quarantined.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jobs.index.label_table import LabelTable
from jobs.index.layouts.base import Assignment, FileFacts, Layout, labelled_by_table

_SIDECAR = re.compile(r"(^|/)Data_Entry_2017[^/]*\.csv$", re.IGNORECASE)


class NihLayout(Layout):
    """Multi-label findings and patient from the NIH data-entry CSV."""

    name = "nih"
    description = "NIH ChestX-ray14 images labelled by Data_Entry_2017.csv (Finding Labels, Patient ID)"
    needs_labels = True

    @classmethod
    def labels_sidecar(cls, sidecars: Sequence[str]) -> str | None:
        found = sorted(s for s in sidecars if _SIDECAR.search(s))
        return found[0] if found else None

    @classmethod
    def detect(cls, rels: Sequence[str], labels: LabelTable | None) -> bool:
        return (
            labels is not None
            and labels.has_file_column
            and labels.label_column.replace(" ", "").lower() == "findinglabels"
        )

    def assign(self, facts: FileFacts) -> Assignment:
        assert self.labels is not None
        return labelled_by_table(self.labels, facts)
