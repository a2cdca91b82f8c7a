"""Splits for multi-label findings and for segmentation: patients whole, findings balanced, the right labels."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.store import open_store
from jobs.split.assign import SPLIT_NAMES
from jobs.split.multilabel import assign_multilabel, findings, patient_findings
from jobs.split.settings import SplitSettings
from jobs.split.stage import run
from tests.jobs.split.conftest import index_row, write_index

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Hernia", "Mass", "Nodule")
PREVALENCE = (0.25, 0.12, 0.3, 0.03, 0.1, 0.15)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Effusion|Mass", ("Effusion", "Mass")),
        ("Mass|Effusion| Mass ", ("Effusion", "Mass")),
        ("No Finding", ()),
        ("no finding", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_findings_of_a_joined_label(label, expected):
    assert findings(label) == expected


def _nih_rows(seed: int, patients: int = 240) -> list[dict]:
    """An NIH-like index: 1-6 follow-up images per patient, findings drawn per image with their prevalence."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        for n in range(int(rng.integers(1, 7))):
            present = [f for f, prevalence in zip(FINDINGS, PREVALENCE, strict=True) if rng.random() < prevalence]
            rows.append(index_row("nih", f"P{p:05d}", n, "|".join(present) or "No Finding"))
    return rows


def test_multilabel_assignment_balances_every_finding_and_keeps_patients_whole():
    # GIVEN an NIH-like index whose label combinations are mostly too rare to be strata of their own
    rows = _nih_rows(0)
    groups = patient_findings((r["patient_id"], r["label"]) for r in rows)
    # WHEN patients are assigned with 70/15/15
    split_of = assign_multilabel(groups, (0.7, 0.15, 0.15), seed=42, min_per_class=3).split_of
    # THEN every patient has one split, and each finding's rows follow the ratios within a few percent
    assert set(split_of) == {g.patient for g in groups}
    per_split: list[Counter[str]] = [Counter(), Counter(), Counter()]
    rows_per_split = [0, 0, 0]
    for row in rows:
        split = split_of[row["patient_id"]]
        per_split[split].update(findings(row["label"]))
        rows_per_split[split] += 1
    for finding in FINDINGS:
        total = sum(c[finding] for c in per_split)
        shares = [c[finding] / total for c in per_split]
        tolerance = 0.05 if total >= 100 else 0.12
        assert shares == pytest.approx([0.7, 0.15, 0.15], abs=tolerance), (finding, total, shares)
        assert per_split[0][finding] > 0
    assert [n / len(rows) for n in rows_per_split] == pytest.approx([0.7, 0.15, 0.15], abs=0.03)
    # AND the same seed gives the same assignment
    assert assign_multilabel(groups, (0.7, 0.15, 0.15), seed=42, min_per_class=3).split_of == split_of


def _split(tmp_path, rows: list[dict], *flags: str, extra: pa.Schema | None = None) -> tuple[dict, dict, object]:
    uri = str(tmp_path / "store")
    store = open_store(uri)
    write_index(store, "ds", rows, extra)
    manifest, _ = run(SplitSettings.parse(["--dataset", "ds", "--store", uri, *flags], {}))
    datalist = json.loads(store.get_bytes("splits/ds/datalist.json"))
    stats = json.loads(store.get_bytes("splits/ds/stats.json"))
    return datalist, stats, manifest


def test_multilabel_split_writes_findings_as_classes_and_label_vectors(tmp_path):
    # GIVEN the NIH-like index
    rows = [{**r, "dataset": "ds"} for r in _nih_rows(1, patients=120)]
    # WHEN split for --task multilabel
    datalist, stats, manifest = _split(tmp_path, rows, "--task", "multilabel")
    # THEN the classes are the findings (not their combinations) and each item's label is its finding vector
    assert datalist["labels"] == list(FINDINGS) and datalist["task"] == "multilabel"
    by_key = {r["key"]: r for r in rows}
    for section in ("training", "validation", "test"):
        for item in datalist[section]:
            expected = findings(by_key[item["image"]]["label"])
            assert item["label"] == [int(f in expected) for f in FINDINGS]
            assert item["label_name"] == by_key[item["image"]]["label"]
    # AND patients never share splits, and stats count rows per finding
    patients = [{i["patient_id"] for i in datalist[s]} for s in ("training", "validation", "test")]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert set(stats["splits"]["train"]["classes"]) == set(FINDINGS) and stats["task"] == "multilabel"
    assert manifest.summary["classes"] == list(FINDINGS)


def test_multilabel_official_split_keeps_test_and_carves_val_out_of_train(tmp_path):
    rows = [{**r, "dataset": "ds", "official_split": "test" if int(r["patient_id"][1:]) % 5 == 0 else "train"}
            for r in _nih_rows(2, patients=100)]  # fmt: skip
    datalist, _, _ = _split(tmp_path, rows, "--task", "multilabel", "--split-from", "official",
                            extra=pa.schema([("official_split", pa.string())]))  # fmt: skip
    test_patients = {i["patient_id"] for i in datalist["test"]}
    assert test_patients == {r["patient_id"] for r in rows if r["official_split"] == "test"}
    assert datalist["validation"] and not test_patients & {i["patient_id"] for i in datalist["validation"]}


def test_segmentation_split_keeps_the_images_with_masks_labelled_or_not(tmp_path):
    # GIVEN 12 patients' images, most with a mask, some unlabelled, one image without a mask
    rows = []
    for p in range(12):
        for n in range(3):
            row = index_row("ds", f"P{p:03d}", n, None if p % 3 else "grade2")
            row["mask_key"] = row["key"].replace(".dcm", "_mask.png")
            row["mask_sha256"] = "0" * 64
            rows.append(row)
    rows[0] = {**rows[0], "mask_key": None, "mask_sha256": None}
    # WHEN split for --task segmentation
    datalist, stats, manifest = _split(tmp_path, rows, "--task", "segmentation")
    # THEN every image with a mask is an item whose label is the mask's key (MONAI's convention), and no classes
    items = [i for s in ("training", "validation", "test") for i in datalist[s]]
    assert len(items) == len(rows) - 1 and all(i["label"] == i["image"].replace(".dcm", "_mask.png") for i in items)
    assert datalist["labels"] == [] and stats["skipped_unlabeled"] == 1
    assert all(manifest.summary["rows"][s] for s in SPLIT_NAMES)


def test_segmentation_split_of_an_index_without_masks_says_what_to_do(tmp_path):
    from jobs.core.errors import DataError

    rows = [index_row("ds", f"P{p}", 0, "a") for p in range(4)]
    with pytest.raises(DataError, match="none of the 4 rows has a segmentation mask"):
        _split(tmp_path, rows, "--task", "segmentation")


def test_a_volume_counts_once_so_series_and_single_file_patients_balance_alike(tmp_path):
    # GIVEN 20 patients with a 30-slice CT series and 20 with one NIfTI volume, half of each class
    rows = []
    for p in range(40):
        label = "nodule" if p % 2 else "normal"
        if p < 20:
            rows += [index_row("ds", f"S{p:03d}", n, label, volume=f"1.2.{p}", slice_index=n) for n in range(30)]
        else:
            rows.append(index_row("ds", f"N{p:03d}", 0, label, volume=f"raw/ds/{p}.nii"))
    # WHEN split (classification, 70/15/15)
    datalist, _, _ = _split(tmp_path, rows)
    # THEN each split holds about its share of volumes of each class, not of slices
    for section, share in (("training", 0.7), ("validation", 0.15), ("test", 0.15)):
        volumes = {(i["volume"], i["label_name"]) for i in datalist[section]}
        for label in ("normal", "nodule"):
            assert abs(sum(1 for _, lab in volumes if lab == label) - 20 * share) <= 1.5, (section, label)
