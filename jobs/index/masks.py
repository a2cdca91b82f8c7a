"""Segmentation masks: which raw files are the masks of which images, by the conventions datasets use.

Two conventions, checked for every file of the tree whatever the layout adapter:

- **a suffix**: ``<stem>_mask.<ext>``, ``<stem>_seg.<ext>``, ``<stem>_label.<ext>`` or ``<stem>_labels.<ext>`` is
  the mask of ``<stem>.<any image ext>`` in the same folder (Kaggle lgg-mri-segmentation's ``_mask.tif``), or,
  when there is no such file, of every ``<stem>_<anything>.<ext>`` there (BraTS: ``case_seg.nii.gz`` for
  ``case_flair.nii.gz``, ``case_t1.nii.gz``...);
- **parallel folders**: a file under a folder named ``masks``, ``labels``, ``segmentations`` (or ``labelsTr`` /
  ``labelsTs``, the Medical Segmentation Decathlon's) is the mask of the file at the same place under the sibling
  ``images`` (``imagesTr`` / ``imagesTs``) folder, with the same name or the same stem.

A file is a mask only when its image exists; a mask is never indexed as an image. The index inspects masks like
images (hash against the collect manifest, format, decodability) and records an image's usable mask in the
``mask_key`` and ``mask_sha256`` columns; an unusable mask is quarantined with its reason and its image stays,
without a mask. Pure functions of the paths, no IO.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

MASK_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (("mask_key", pa.string()), ("mask_sha256", pa.string()))
IMAGE_EXTENSIONS = (".nii.gz", ".dcm", ".dicom", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii")
_SUFFIX = re.compile(r"^(?P<base>.+)_(?:mask|seg|label|labels)$", re.IGNORECASE)
_FOLDERS = {"masks": "images", "labels": "images", "segmentations": "images", "labelstr": "imagestr",
            "labelsts": "imagests"}  # fmt: skip
"""Mask folder -> the image folder beside it (compared in lower case; the tree's own spelling is kept)."""


def split_name(rel: str) -> tuple[str, str, str]:
    """``(folder, stem, extension)`` of a path under the dataset prefix (``.nii.gz`` is one extension)."""
    folder, _, name = rel.rpartition("/")
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return folder, name[: -len(ext)], name[-len(ext) :]
    return folder, name, ""


@dataclass
class MaskPairs:
    """The pairing of one tree: each paired image's mask, and the set of files that are masks."""

    mask_of: dict[str, str] = field(default_factory=dict)
    """Image path -> its mask's path (paths under the dataset prefix)."""
    masks: set[str] = field(default_factory=set)

    def is_mask(self, rel: str) -> bool:
        return rel in self.masks


def _by_suffix(rels: Sequence[str], stems: dict[tuple[str, str], list[str]]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for rel in rels:
        folder, stem, ext = split_name(rel)
        match = _SUFFIX.match(stem)
        if not ext or match is None:
            continue
        base = match.group("base")
        images = [r for r in stems.get((folder, base), []) if r != rel]
        if not images:
            prefix = base + "_"
            images = [
                r for (f, s), found in stems.items() if f == folder and s.startswith(prefix) and not _SUFFIX.match(s)
                for r in found
            ]  # fmt: skip
        for image in images:
            pairs.setdefault(image, rel)
    return pairs


def _by_folder(rels: Sequence[str], names: set[str], stems: dict[tuple[str, str], list[str]]) -> dict[str, str]:
    folders = {rel.rpartition("/")[0].lower(): rel.rpartition("/")[0] for rel in rels}  # the tree's own spelling
    pairs: dict[str, str] = {}
    for rel in rels:
        parts = rel.split("/")
        for depth, part in enumerate(parts[:-1]):
            image_folder = _FOLDERS.get(part.lower())
            if image_folder is None:
                continue
            wanted = "/".join([*parts[:depth], image_folder, *parts[depth + 1 : -1]]).lower()
            folder = folders.get(wanted)
            if folder is None:
                continue
            same_name = f"{folder}/{parts[-1]}"
            if same_name in names:
                pairs.setdefault(same_name, rel)
                break
            if found := stems.get((folder, split_name(rel)[1])):
                pairs.setdefault(found[0], rel)
                break
    return pairs


def pair_masks(rels: Sequence[str]) -> MaskPairs:
    """The masks among ``rels`` (paths under the dataset prefix) and the image each belongs to."""
    names = set(rels)
    stems: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rel in sorted(rels):
        folder, stem, ext = split_name(rel)
        if ext:
            stems[(folder, stem)].append(rel)
    mask_of = _by_folder(rels, names, stems)
    for image, mask in _by_suffix(rels, stems).items():
        mask_of.setdefault(image, mask)
    masks = set(mask_of.values())
    # a file that is some image's mask is not itself an image with a mask
    return MaskPairs({image: mask for image, mask in sorted(mask_of.items()) if image not in masks}, masks)
