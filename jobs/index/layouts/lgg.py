"""Kaggle lgg-mri-segmentation: ``kaggle_3m/<TCGA_xx_nnnn_yyyymmdd>/<same>_<slice>.tif`` with ``…_mask.tif`` pairs.

The patient is the folder (TCGA case id, without the acquisition date suffix). ``_mask.tif`` files are the
segmentations paired with each slice: skipped, not indexed. The dataset is for segmentation and has no class
names; rows are unlabelled unless a labels CSV (``--labels``, by file or PatientID) gives labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jobs.index.label_table import LabelTable
from jobs.index.layouts.base import Assignment, FileFacts, Layout, labelled_by_table, mostly_match, parent_folder

_MASK = re.compile(r"_mask\.tiff?$", re.IGNORECASE)
_SLICE = re.compile(r"(^|/)(TCGA_[A-Z0-9]{2}_[A-Z0-9]{4})[^/]*/[^/]+_\d+\.tiff?$", re.IGNORECASE)
_DATE = re.compile(r"_\d{8}$")


class LggLayout(Layout):
    """Patient from the case folder; masks skipped; labels only from a labels CSV."""

    name = "lgg-mri-segmentation"
    about = "kaggle_3m/<case>/<case>_<n>.tif + _mask.tif pairs (Kaggle mateuszbuda); patient from folder"

    @classmethod
    def detect(cls, rels: Sequence[str], labels: LabelTable | None) -> bool:
        return any(_MASK.search(r) for r in rels) and mostly_match([r for r in rels if not _MASK.search(r)], _SLICE)

    def skip(self, rel: str) -> bool:
        return bool(_MASK.search(rel))

    def assign(self, facts: FileFacts) -> Assignment:
        folder = parent_folder(facts.rel)
        patient = _DATE.sub("", folder) if folder else None
        if self.labels is not None:
            found = labelled_by_table(self.labels, FileFacts(facts.key, facts.rel, patient, facts.series_uid))
            return Assignment(found.label, found.patient_id or patient)
        return Assignment(None, patient)
