"""What a layout adapter is: the rule that turns a file's place in a downloaded tree into a label and patient.

Each dataset family arranges its files differently (class folders, CSV sidecars, per-patient folders). An
adapter sees every file's path under ``raw/<dataset>/`` plus, for DICOM, its PatientID and SeriesInstanceUID,
and says which label and patient the file has, or that the file is not an image to index (a segmentation
mask), or that it has no label (quarantined). Adapters run in the main process on facts the workers return.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from jobs.core.errors import UsageError
from jobs.index.label_table import LabelTable


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What an adapter may look at: the store key, the path under the dataset prefix, DICOM identifiers."""

    key: str
    rel: str
    patient_id: str | None = None
    series_uid: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """An adapter's verdict on one file: its label (``None`` = unlabelled row) and patient, if it knows."""

    label: str | None
    patient_id: str | None = None
    official_split: str | None = None
    """The dataset's own split for this file (``train``, ``val``, ``test``), where the dataset defines one."""


class Unlabelled(Exception):
    """The layout needs a label for this file and has none: the file goes to quarantine with this reason."""


class Layout(ABC):
    """Base of every adapter. Subclasses set ``name`` and ``description`` and implement ``assign``."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_labels: ClassVar[bool] = False
    """Whether the adapter cannot work without a labels CSV (``--labels`` or a sidecar it finds)."""

    def __init__(self, labels: LabelTable | None = None, official: Mapping[str, str] | None = None) -> None:
        if self.needs_labels and labels is None:
            raise UsageError(f"--layout {self.name} needs a labels CSV: pass --labels KEY_OR_PATH")
        self.labels = labels
        self.official = dict(official or {})
        """File name -> the dataset's own split, read from the lists ``split_sidecars`` names."""

    @classmethod
    def detect(cls, rels: Sequence[str], labels: LabelTable | None) -> bool:
        """Whether this tree (image paths under the dataset prefix) looks like this layout."""
        return False

    @classmethod
    def labels_sidecar(cls, sidecars: Sequence[str]) -> str | None:
        """The dataset's own labels CSV among the sidecar paths, if this layout ships one (NIH)."""
        return None

    @classmethod
    def split_sidecars(cls, sidecars: Sequence[str]) -> dict[str, str]:
        """Sidecar lists of file names that give the dataset's own split: ``{sidecar path: split}`` (NIH)."""
        return {}

    def skip(self, rel: str) -> bool:
        """Whether ``rel`` belongs to the layout but is not an image to index (masks, OS litter)."""
        return False

    @abstractmethod
    def assign(self, facts: FileFacts) -> Assignment:
        """Label and patient of one file, or ``Unlabelled`` with the reason."""


def mostly_match(rels: Sequence[str], pattern: re.Pattern[str], share: float = 0.5) -> bool:
    """Whether at least ``share`` of the paths match ``pattern`` (and there is at least one path)."""
    if not rels:
        return False
    hits = sum(1 for rel in rels if pattern.search(rel))
    return hits > 0 and hits >= share * len(rels)


def parent_folder(rel: str) -> str | None:
    """The immediate folder of a path under the dataset prefix; ``None`` for a file at the top."""
    parts = rel.split("/")
    return parts[-2] if len(parts) >= 2 else None


def labelled_by_table(labels: LabelTable, facts: FileFacts, header_only: bool = False) -> Assignment:
    """The label the CSV gives a file (by file, series or patient) and the CSV's patient for it."""
    key, rel = (None, None) if header_only else (facts.key, facts.rel)
    label = labels.label_for(key, rel, facts.series_uid, facts.patient_id)
    if label is None:
        raise Unlabelled(f"no label in labels CSV {labels.source} for this file, its series or its patient")
    return Assignment(label, labels.patient_for(facts.key, facts.rel), labels.split_for(facts.key, facts.rel))
