"""The columnar split (``jobs.split.columnar``) against the row-by-row reference it replaced, on random indexes.

The dict functions (``group_rows``, ``csv_bytes``, ``txt_bytes``, ``datalist_bytes``, ``patient_groups``) are
the readable statement of what split writes; the columnar ones must give the same groups and the same bytes.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.errors import DataError
from jobs.split import columnar
from jobs.split.assign import patient_groups
from jobs.split.exports import csv_bytes, datalist_bytes, txt_bytes
from jobs.split.groups import GROUP, check_images_disjoint, group_rows
from jobs.split.stats import check_patients_disjoint
from tests.jobs.split.conftest import INDEX_SCHEMA

TRICKY = ["plain", "a,b", 'say "hi"', "line\nbreak", "cr\rhere", "tab\there", "back\\slash", "é ü 中", "", " lead"]


def _random_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        patient = f"P{rng.randrange(6)}"
        volume = rng.choice([None, None, f"vol{rng.randrange(3)}", ""])
        rows.append({
            "key": f"raw/ds/{rng.choice(TRICKY)}/{i:04d}.dcm",
            "dataset": "ds",
            "sha256": rng.choice([None, "", f"h{rng.randrange(n)}"]),
            "sop_uid": rng.choice([None, "", f"1.2.{rng.randrange(n)}"]),
            "label": rng.choice([None, "", "A", "B|C", rng.choice(TRICKY)]),
            "patient_id": patient,
            "group_by": rng.choice([None, "", "patient_id", "study_uid", "series_uid", "labels"]),
            "lossy_compression": rng.choice([None, True, False]),
            "rows": rng.choice([None, 64, -3]),
            "pixel_spacing_row": rng.choice([None, 0.1, 1e16, 2.947, 1.0]),
            "volume": volume,
            "slice_index": rng.choice([None, 0, 7]) if volume is not None else None,
            "mask_key": rng.choice([None, "", f"raw/ds/{i}_mask.png"]),
            "mask_sha256": rng.choice([None, "", "m" * 8]),
            "study_uid": f"1.3.{rng.randrange(4)}",
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["key"])


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([INDEX_SCHEMA.field(name) for name in rows[0]])
    return pa.Table.from_pylist(rows, schema=schema)


SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_grouping_keeps_the_rows_and_names_the_groups_the_reference_does(seed):
    # GIVEN a random index whose rows share images by UID or content, across patients
    rows = _random_rows(random.Random(seed), 30)
    # WHEN it is grouped by columns and by the reference
    grouped = columnar.group_table(_table(rows))
    reference = group_rows(rows)
    # THEN the same rows are kept, with the same groups, and the same duplicates are reported
    assert grouped.table["key"].to_pylist() == [r["key"] for r in reference.rows]
    assert grouped.group.to_pylist() == [r[GROUP] for r in reference.rows]
    assert grouped.duplicates == reference.duplicates


@pytest.mark.parametrize("rows_per_part", [2, columnar.ROWS_PER_PART], ids=["parts-of-2", "one-part"])
@pytest.mark.parametrize("with_folds", [True, False], ids=["folds", "no-folds"])
@pytest.mark.parametrize("seed", SEEDS)
def test_csv_txt_and_datalist_bytes_equal_the_reference(seed, with_folds, rows_per_part, monkeypatch):
    # GIVEN random rows (quotes, commas, line breaks, nulls, floats, volumes, masks) split three ways, with folds or
    # not, rendered in parts of 2 rows or in one part
    monkeypatch.setattr(columnar, "ROWS_PER_PART", rows_per_part)
    rng = random.Random(seed)
    rows = [r for r in _random_rows(rng, 25) if r["label"] not in (None, "")] or _random_rows(rng, 1)
    table = _table(rows)
    split = np.array([rng.randrange(3) for _ in rows])
    folds = [rng.randrange(4) if s < 2 and with_folds else None for s in split]
    classes = sorted({r["label"] for r in rows if r["label"]})
    index = {name: i for i, name in enumerate(classes)}
    columns = tuple(table.column_names)
    label_text = columnar.per_label(table["label"].combine_chunks(), lambda label: index.get(label, 0))
    fold = pa.array([None if f is None else str(f) for f in folds], pa.large_string()) if with_folds else None

    def items(take: pa.Array) -> pa.Array:
        fold_text = None if fold is None else fold.take(take)
        return columnar.datalist_items(table.take(take), label_text.take(take), fold_text)

    header_columns = (*columns, "split", "fold") if with_folds else (*columns, "split")
    header = columnar.csv_header(header_columns)
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for row, s, f in zip(rows, split, folds, strict=True):
        name = ("train", "val", "test")[s]
        by_split[name].append({**row, "split": name, **({"fold": f} if f is not None else {})})
    positions = {name: np.flatnonzero(split == i) for i, name in enumerate(("train", "val", "test"))}
    for name, at in positions.items():
        # THEN each split's CSV and TXT are the reference's bytes
        got = columnar.split_csv(header, table, columns, at, name, fold)
        assert b"".join(got) == csv_bytes(header_columns, by_split[name])
        assert b"".join(columnar.txt(table["key"].combine_chunks().take(pa.array(at)))) == txt_bytes(by_split[name])
    # AND the datalist is too
    reference = datalist_bytes(classes, by_split, lambda row: index.get(row["label"], 0), "classification")
    assert b"".join(columnar.datalist(classes, "classification", items, positions)) == reference


@pytest.mark.parametrize("seed", SEEDS)
def test_patient_groups_pick_the_majority_label_like_the_reference(seed):
    # GIVEN random (patient, label) units with ties between labels
    rng = random.Random(seed)
    pairs = [(f"P{rng.randrange(8)}", rng.choice(["A", "B", "", "é"])) for _ in range(rng.randrange(1, 40))]
    # WHEN grouped by columns and by the reference
    got = columnar.patient_groups(pa.array([p for p, _ in pairs]), pa.array([label for _, label in pairs]))
    # THEN both give the same patients, strata and row counts
    assert got == patient_groups(pairs)


def _reference_leak(rows_by_split: dict[str, list[dict[str, Any]]]) -> str | None:
    try:
        check_patients_disjoint(rows_by_split)
        check_images_disjoint(rows_by_split)
    except DataError as error:
        return str(error)
    return None


def _columnar_leak(table: pa.Table, group: pa.Array, split: np.ndarray, shared: np.ndarray | None) -> str | None:
    try:
        columnar.check_disjoint(table, group, split, shared)
    except DataError as error:
        return str(error)
    return None


@pytest.mark.parametrize("seed", range(80))
def test_leak_check_refuses_what_the_reference_refuses_with_its_message(seed):
    # GIVEN grouped random rows put in splits per group (no leak) or, in most seeds, with some rows moved
    rng = random.Random(seed)
    rows = group_rows(_random_rows(rng, 30)).rows
    grouped = columnar.group_table(_table(_random_rows(random.Random(seed), 30)))
    split_of = {g: rng.randrange(3) for g in sorted({r[GROUP] for r in rows})}
    split = np.array([split_of[r[GROUP]] for r in rows])
    if seed % 4:
        for at in rng.sample(range(len(rows)), rng.randrange(1, 4)):
            split[at] = rng.randrange(3)
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for row, s in zip(rows, split, strict=True):
        by_split[("train", "val", "test")[s]].append(row)
    expected = _reference_leak(by_split)
    # WHEN the columnar check runs on the same rows and splits, over every row and over the rows sharing an image
    got = [_columnar_leak(grouped.table, grouped.group, split, shared) for shared in (None, grouped.shared)]
    # THEN it refuses exactly when the reference does, naming the same patient or image
    assert got == [expected, expected]
    if seed % 4 == 0:
        assert got == [None, None]


@pytest.mark.parametrize("seed", range(40))
def test_leak_check_names_an_image_in_two_splits_like_the_reference(seed):
    # GIVEN rows of one patient each, left ungrouped (as a broken grouping would), sharing UIDs and content
    rng = random.Random(seed)
    rows = [{**r, "patient_id": f"P{i}", "group_by": None} for i, r in enumerate(_random_rows(rng, 30))]
    split = np.array([rng.randrange(3) for _ in rows])
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for row, s in zip(rows, split, strict=True):
        by_split[("train", "val", "test")[s]].append({**row, GROUP: row["patient_id"]})
    expected = _reference_leak(by_split)
    table = _table(rows)
    # WHEN the columnar check runs with each row its own group
    got = _columnar_leak(table, table["patient_id"].combine_chunks(), split, None)
    # THEN it reports the reference's first image in two splits (the field, value, both splits and the row)
    assert got == expected
