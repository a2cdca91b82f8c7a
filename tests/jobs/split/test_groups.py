"""Groups split assigns: identities read with their ``group_by``, joined when two rows hold the same image, one row
per image kept; and merged datasets that share images (the same TCIA series via NBIA and IDC) never leak."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import pytest

from jobs.core.errors import DataError
from jobs.core.store import open_store
from jobs.split.__main__ import main
from jobs.split.groups import check_images_disjoint, group_rows, identity
from tests.jobs.split.conftest import index_row, write_index

SPLITS = ("train", "val", "test")


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [(None, "P1"), ("patient_id", "P1"), ("labels", "P1"), ("study_uid", "study_uid:P1"), ("file", "file:P1")],
)
def test_an_identity_is_the_patient_id_read_with_what_it_is(group_by, expected):
    assert identity({"patient_id": "P1", "group_by": group_by}) == expected


def test_rows_sharing_an_image_join_their_patients_and_keep_one_row():
    # GIVEN patient a:P1 and b:Q9 holding one image (same SOPInstanceUID, different encodings), b:Q9 a second image,
    # and c:R2 holding b:Q9's second image byte for byte
    rows = [
        index_row("a", "a:P1", 1, "X", sop_uid="1.2.1", sha256="s1", lossy_compression=True),
        index_row("b", "b:Q9", 1, "X", sop_uid="1.2.1", sha256="s2", lossy_compression=False),
        index_row("b", "b:Q9", 2, "X", sop_uid="1.2.2", sha256="s3"),
        index_row("c", "c:R2", 7, "X", sop_uid=None, sha256="s3"),
        index_row("c", "c:Z0", 1, "X", sop_uid="1.2.9", sha256="s9"),
    ]
    # WHEN grouped
    grouped = group_rows(rows)
    # THEN one row per image is kept (the lossless copy of the first; the first key of the second)...
    assert [r["key"] for r in grouped.rows] == [rows[1]["key"], rows[2]["key"], rows[4]["key"]]
    assert [(d.key, d.duplicate_of, d.by) for d in grouped.duplicates] == [
        (rows[0]["key"], rows[1]["key"], "sop_uid"),
        (rows[3]["key"], rows[2]["key"], "sha256"),
    ]
    # ...and the three patients who share images are one group, named by its smallest identity
    assert [r["group"] for r in grouped.rows] == ["a:P1", "a:P1", "c:Z0"]


def test_two_splits_holding_one_image_is_a_data_error():
    rows = {"train": [index_row("a", "P1", 1, "X", sop_uid="1.2.3")], "val": [], "test": []}
    rows["test"] = [index_row("b", "Q1", 1, "X", sop_uid="1.2.3")]
    with pytest.raises(DataError, match=r"sop_uid 1\.2\.3 is in splits 'train' and 'test'"):
        check_images_disjoint(rows)


def _read(store, dataset):
    return {
        split: list(csv.DictReader(io.StringIO(store.get_bytes(f"splits/{dataset}/{split}.csv").decode())))
        for split in SPLITS
    }


def test_merged_datasets_sharing_images_never_put_a_patient_or_an_image_in_two_splits(store_uri):
    # GIVEN the same 30 patients in two collections under different patient ids (one copy through NBIA, one
    # through IDC): each image once in each, same SOPInstanceUID, different bytes; IDC also has a third image
    store = open_store(store_uri)
    nbia, idc = [], []
    for p in range(30):
        label = ("NORMAL", "NODULE")[p % 2]
        for n in range(2):
            sop = f"1.2.826.0.1.{p}.{n}"
            nbia.append(index_row("nbia", f"LIDC-{p:04d}", n, label, sop_uid=sop, study_uid=f"1.2.9.{p}"))
            idc.append(index_row("idc", f"idc-{p:04d}", n, label, sop_uid=sop, study_uid=f"1.2.9.{p}"))
        idc.append(index_row("idc", f"idc-{p:04d}", 9, label, sop_uid=f"1.2.826.0.1.{p}.9", study_uid=f"1.2.9.{p}"))
    write_index(store, "nbia", nbia)
    write_index(store, "idc", idc)
    # WHEN they are split as one dataset
    assert main(["--store", store_uri, "--dataset", "lidc", "--merge", "nbia,idc"]) == 0
    splits = _read(store, "lidc")
    # THEN each image is in the split once, and a patient's rows (from either collection) are in one split
    all_rows = [r for rows in splits.values() for r in rows]
    assert len(all_rows) == 90 and len({r["sop_uid"] for r in all_rows}) == 90
    split_of_person = defaultdict(set)
    for r in all_rows:
        split_of_person[r["patient_id"].split("-")[-1]].add(r["split"])
    assert all(len(s) == 1 for s in split_of_person.values()), split_of_person
    # AND the copies left out are listed with the row kept and what they share
    duplicates = list(csv.DictReader(io.StringIO(store.get_bytes("splits/lidc/duplicates.csv").decode())))
    assert len(duplicates) == 60 and {d["by"] for d in duplicates} == {"sop_uid"}
    assert all(d["key"].startswith("raw/nbia/") and d["duplicate_of"].startswith("raw/idc/") for d in duplicates)
    stats_patients = sum(len({r["patient_id"] for r in rows}) for rows in splits.values())
    assert stats_patients == 30


def test_rows_grouped_by_a_study_uid_stay_together_across_merged_datasets(store_uri):
    # GIVEN two datasets holding different images of the same studies, without PatientIDs (grouped by study)
    store = open_store(store_uri)
    first, second = [], []
    for s in range(24):
        label = ("A", "B")[s % 2]
        study = f"1.2.840.99.{s}"
        first.append(index_row("one", study, 0, label, group_by="study_uid", sop_uid=f"{study}.1"))
        second.append(index_row("two", study, 0, label, group_by="study_uid", sop_uid=f"{study}.2"))
    write_index(store, "one", first)
    write_index(store, "two", second)
    # WHEN merged
    assert main(["--store", store_uri, "--dataset", "both", "--merge", "one,two"]) == 0
    # THEN a study's images are in one split, and its UID is not namespaced by dataset
    split_of = defaultdict(set)
    for split, rows in _read(store, "both").items():
        for r in rows:
            split_of[r["patient_id"]].add(split)
    assert len(split_of) == 24 and all(len(s) == 1 for s in split_of.values())
