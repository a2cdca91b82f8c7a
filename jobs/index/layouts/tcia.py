"""TCIA collections: DICOM series labelled by a user CSV keyed by ``PatientID`` or ``SeriesInstanceUID``.

TCIA downloads carry no class labels; the user supplies them per patient or per series (``--labels``).
The identifiers come from each file's DICOM header, so the files' paths do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobs.index.label_table import LabelTable
from jobs.index.layouts.base import Assignment, FileFacts, Layout, labelled_by_table


class TciaLayout(Layout):
    """Label by the file's SeriesInstanceUID, else its PatientID, from the labels CSV."""

    name = "tcia"
    about = "DICOM labelled by a --labels CSV keyed by PatientID or SeriesInstanceUID"
    needs_labels = True

    @classmethod
    def detect(cls, rels: Sequence[str], labels: LabelTable | None) -> bool:
        return labels is not None and not labels.has_file_column

    def assign(self, facts: FileFacts) -> Assignment:
        assert self.labels is not None
        return labelled_by_table(self.labels, facts, header_only=True)
