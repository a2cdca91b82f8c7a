"""Labels from a CSV (``--labels``): rows keyed by file (key, path or name), SeriesInstanceUID or PatientID."""

from __future__ import annotations

from collections.abc import Sequence

from jobs.index.label_table import LabelTable
from jobs.index.layouts.base import Assignment, FileFacts, Layout, labelled_by_table


class CsvLayout(Layout):
    """Every file's label comes from the labels CSV; files it does not label are quarantined."""

    name = "csv"
    about = "labels from --labels CSV (key/filename/path, PatientID or SeriesInstanceUID, label)"
    needs_labels = True

    @classmethod
    def detect(cls, rels: Sequence[str], labels: LabelTable | None) -> bool:
        return labels is not None

    def assign(self, facts: FileFacts) -> Assignment:
        assert self.labels is not None
        return labelled_by_table(self.labels, facts)
