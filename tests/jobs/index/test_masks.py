"""Segmentation masks are paired with their images by the dataset conventions, inspected, and never indexed."""

from __future__ import annotations

import csv
import hashlib
import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.collect.sources.image_files import png_bytes, tiff_bytes
from jobs.core.store import open_store
from jobs.index.masks import pair_masks
from jobs.index.settings import IndexSettings
from jobs.index.stage import run
from tests.jobs.index.conftest import put_raw
from tests.support.volumes import nifti_volume


@pytest.mark.parametrize(
    ("rels", "expected"),
    [
        (["c/TCGA_1_12.tif", "c/TCGA_1_12_mask.tif", "c/TCGA_1_1.tif"], {"c/TCGA_1_12.tif": "c/TCGA_1_12_mask.tif"}),
        (["A/images/x.png", "A/masks/x.png", "A/images/y.png"], {"A/images/x.png": "A/masks/x.png"}),
        (["T/imagesTr/b_1.nii.gz", "T/labelsTr/b_1.nii.gz"], {"T/imagesTr/b_1.nii.gz": "T/labelsTr/b_1.nii.gz"}),
        (["d/images/p1.dcm", "d/labels/p1.png"], {"d/images/p1.dcm": "d/labels/p1.png"}),
        (["b/c1_flair.nii.gz", "b/c1_t1.nii.gz", "b/c1_seg.nii.gz"],
         {"b/c1_flair.nii.gz": "b/c1_seg.nii.gz", "b/c1_t1.nii.gz": "b/c1_seg.nii.gz"}),
        (["x/orphan_mask.png", "x/other.png", "labels/z.png"], {}),
        (["NORMAL/1.png", "PNEUMONIA/2.png"], {}),
    ],
)  # fmt: skip
def test_masks_are_paired_by_suffix_or_parallel_folders(rels, expected):
    pairs = pair_masks(rels)
    assert pairs.mask_of == expected
    assert pairs.masks == set(expected.values())


def _index(tmp_path, files: dict[str, bytes], *extra: str) -> tuple[dict[str, dict], dict[str, str], dict]:
    uri = str(tmp_path / "store")
    store = open_store(uri)
    put_raw(store, "seg", files)
    manifest, _ = run(IndexSettings.parse(["--dataset", "seg", "--store", uri, "--workers", "1", *extra], {}))
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/seg/index.parquet"))).to_pylist()
    quarantine = list(csv.DictReader(io.StringIO(store.get_bytes("index/seg/quarantine.csv").decode())))
    return (
        {r["key"].removeprefix("raw/seg/"): r for r in rows},
        {q["key"]: q["reason"] for q in quarantine},
        manifest.summary,
    )


def test_an_unusable_mask_is_quarantined_and_its_image_kept_without_one(tmp_path):
    # GIVEN lgg-style slices with masks (one mask truncated), and NIfTI images with label maps (Decathlon folders)
    rng = np.random.default_rng(0)
    case = "kaggle_3m/TCGA_AB_1234_20000101"
    files = {
        f"{case}/TCGA_AB_1234_20000101_1.tif": tiff_bytes(rng.integers(0, 255, (8, 8, 3))),
        f"{case}/TCGA_AB_1234_20000101_1_mask.tif": tiff_bytes(np.zeros((8, 8))),
        f"{case}/TCGA_AB_1234_20000101_2.tif": tiff_bytes(rng.integers(0, 255, (8, 8, 3))),
        f"{case}/TCGA_AB_1234_20000101_2_mask.tif": tiff_bytes(np.zeros((8, 8)))[:-10],
        "Task/imagesTr/b_1.nii": nifti_volume(rng.integers(0, 99, (3, 4, 4)).astype(np.int16)),
        "Task/labelsTr/b_1.nii": nifti_volume(np.zeros((3, 4, 4), np.uint8)),
        "Task/imagesTr/b_2.png": png_bytes(np.zeros((4, 4))),
    }
    # WHEN indexed
    rows, quarantine, summary = _index(tmp_path, files)
    # THEN the images are rows, each usable mask is recorded with its hash, and no mask is a row
    assert set(rows) == {f"{case}/TCGA_AB_1234_20000101_1.tif", f"{case}/TCGA_AB_1234_20000101_2.tif",
                         "Task/imagesTr/b_1.nii", "Task/imagesTr/b_2.png"}  # fmt: skip
    good = rows[f"{case}/TCGA_AB_1234_20000101_1.tif"]
    assert good["mask_key"] == f"raw/seg/{case}/TCGA_AB_1234_20000101_1_mask.tif"
    assert good["mask_sha256"] == hashlib.sha256(files[f"{case}/TCGA_AB_1234_20000101_1_mask.tif"]).hexdigest()
    assert rows["Task/imagesTr/b_1.nii"]["mask_key"] == "raw/seg/Task/labelsTr/b_1.nii"
    assert rows["Task/imagesTr/b_2.png"]["mask_key"] is None
    # AND the cut mask is quarantined with its reason, while its image stays, without a mask
    assert rows[f"{case}/TCGA_AB_1234_20000101_2.tif"]["mask_key"] is None
    reason = quarantine[f"raw/seg/{case}/TCGA_AB_1234_20000101_2_mask.tif"]
    assert reason.startswith("unusable segmentation mask: truncated")
    assert list(quarantine) == sorted(quarantine)
    assert summary["masks"] == 2 and summary["quarantine_reasons"] == {"unusable segmentation mask": 1}
