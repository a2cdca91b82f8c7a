"""Kaggle COVID-19 Radiography Database: ``<root>/{COVID,Lung_Opacity,Normal,Viral Pneumonia}/images/<file>``.

The label is the class folder, spelled as the dataset does (``Viral Pneumonia`` with its space). The
``masks/`` folders beside ``images/`` are lung segmentations, not images to classify: they are skipped.
The dataset has no patient identifiers, so each image is its own patient (the file's stem).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jobs.index.label_table import LabelTable
from jobs.index.layouts.base import Assignment, FileFacts, Layout, labelled_by_table, mostly_match

CLASSES = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
_CLASS = "|".join(re.escape(c) for c in CLASSES)
_IMAGE = re.compile(rf"(^|/)({_CLASS})/images/[^/]+$")
_MASK = re.compile(rf"(^|/)({_CLASS})/masks/[^/]+$")


class Covid19Layout(Layout):
    """Label from ``<class>/images/``; masks skipped."""

    name = "covid19-radiography"
    about = "{COVID,Lung_Opacity,Normal,Viral Pneumonia}/images/ (Kaggle tawsifurrahman), masks ignored"

    @classmethod
    def detect(cls, rels: Sequence[str], labels: LabelTable | None) -> bool:
        return mostly_match([r for r in rels if not _MASK.search(r)], _IMAGE)

    def skip(self, rel: str) -> bool:
        return bool(_MASK.search(rel))

    def assign(self, facts: FileFacts) -> Assignment:
        if self.labels is not None:
            return labelled_by_table(self.labels, facts)
        match = _IMAGE.search(facts.rel)
        return Assignment(match.group(2) if match else None)
