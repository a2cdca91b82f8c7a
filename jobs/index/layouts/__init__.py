"""Layout adapters: how each dataset family's tree gives labels and patients, chosen by ``--layout`` or detected.

Add an adapter by writing a ``Layout`` subclass in its own module and listing it in ``LAYOUTS``; detection
tries them in ``LAYOUTS`` order and falls back to ``folder``.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobs.core.errors import UsageError
from jobs.index.label_table import LabelTable
from jobs.index.layouts.base import Assignment, FileFacts, Layout, Unlabelled
from jobs.index.layouts.chest_xray import ChestXrayLayout
from jobs.index.layouts.covid19 import Covid19Layout
from jobs.index.layouts.csv import CsvLayout
from jobs.index.layouts.folder import FolderLayout
from jobs.index.layouts.lgg import LggLayout
from jobs.index.layouts.nih import NihLayout
from jobs.index.layouts.tcia import TciaLayout

LAYOUTS: dict[str, type[Layout]] = {
    cls.name: cls for cls in (NihLayout, TciaLayout, CsvLayout, ChestXrayLayout, Covid19Layout, LggLayout, FolderLayout)
}
"""Every adapter by name, in detection order (label-CSV layouts first, the folder fallback last)."""
AUTO = "auto"

__all__ = [
    "AUTO",
    "LAYOUTS",
    "Assignment",
    "FileFacts",
    "Layout",
    "Unlabelled",
    "labels_sidecar",
    "layout_class",
]


def labels_sidecar(layout: str, sidecars: Sequence[str]) -> str | None:
    """The dataset's own labels CSV (a sidecar path under the dataset prefix) for ``layout`` or, on auto, any."""
    candidates = LAYOUTS.values() if layout == AUTO else [LAYOUTS[layout]]
    for cls in candidates:
        if found := cls.labels_sidecar(sidecars):
            return found
    return None


def layout_class(layout: str, rels: Sequence[str], labels: LabelTable | None) -> type[Layout]:
    """The adapter ``layout`` names, or on ``auto`` the first whose ``detect`` accepts the tree."""
    if layout != AUTO:
        if layout not in LAYOUTS:
            raise UsageError(f"--layout {layout!r}: use auto or one of {', '.join(LAYOUTS)}")
        return LAYOUTS[layout]
    for cls in LAYOUTS.values():
        if cls.detect(rels, labels):
            return cls
    return FolderLayout
