"""The split's files render deterministically and in the formats the train stage (and MONAI) read."""

from __future__ import annotations

import json

from jobs.split.exports import csv_bytes, datalist_bytes, txt_bytes


def test_csv_writes_empty_for_null_and_round_trip_floats_and_quotes_commas():
    # GIVEN rows with nulls, floats and a label containing a comma
    rows = [{"key": "raw/a,b.png", "label": None, "spacing": 0.1 + 0.2, "n": 3}]
    # WHEN rendered
    data = csv_bytes(["key", "label", "spacing", "n"], rows)
    # THEN the text is exact, with \n line ends
    assert data == b'key,label,spacing,n\n"raw/a,b.png",,0.30000000000000004,3\n'


def test_txt_lists_one_key_per_line():
    assert txt_bytes([{"key": "raw/a"}, {"key": "raw/b"}]) == b"raw/a\nraw/b\n"
    assert txt_bytes([]) == b""


def test_datalist_is_monai_style_with_label_indices():
    rows = {
        "train": [{"key": "k1", "label": "B", "patient_id": "p1", "sha256": "1" * 64}],
        "val": [{"key": "k2", "label": "A", "patient_id": "p2", "sha256": "2" * 64}],
        "test": [],
    }
    data = json.loads(datalist_bytes(["A", "B"], rows))
    # the index's SHA-256 travels with each image, so train verifies the raw bytes it reads
    assert data == {
        "labels": ["A", "B"],
        "task": "classification",
        "training": [{"image": "k1", "label": 1, "label_name": "B", "patient_id": "p1", "sha256": "1" * 64}],
        "validation": [{"image": "k2", "label": 0, "label_name": "A", "patient_id": "p2", "sha256": "2" * 64}],
        "test": [],
    }


def test_datalist_items_of_a_volume_name_it_and_their_slice():
    rows = {
        "train": [{"key": "s2", "label": "A", "patient_id": "p1", "volume": "1.2.3", "slice_index": 0, "sha256": "s"},
                  {"key": "v.nii", "label": "A", "patient_id": "p2", "volume": "v.nii", "slice_index": None,
                   "sha256": "v", "mask_key": "m.nii", "mask_sha256": "m"}],
        "val": [],
        "test": [],
    }  # fmt: skip
    data = json.loads(datalist_bytes(["A"], rows))
    assert data["training"] == [
        {"image": "s2", "label": 0, "label_name": "A", "patient_id": "p1", "sha256": "s", "volume": "1.2.3",
         "slice": 0},
        {"image": "v.nii", "label": 0, "label_name": "A", "patient_id": "p2", "sha256": "v", "label_sha256": "m",
         "volume": "v.nii"},
    ]  # fmt: skip
