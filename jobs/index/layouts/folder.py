"""The default layout: the folder a file sits in is its label (``…/<label>/file``); top-level files have none."""

from __future__ import annotations

from jobs.index.layouts.base import Assignment, FileFacts, Layout, labelled_by_table, parent_folder


class FolderLayout(Layout):
    """Label = immediate parent folder; a labels CSV, when given, overrides it for the files it names."""

    name = "folder"
    about = "label from the immediate parent folder (…/<label>/file)"

    def assign(self, facts: FileFacts) -> Assignment:
        if self.labels is not None:
            return labelled_by_table(self.labels, facts)
        return Assignment(parent_folder(facts.rel))
