"""The assignment algorithm's promises, checked over many seeded random inputs (property style, seeded loops)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from jobs.core.errors import DataError
from jobs.split.assign import (
    TEST,
    TRAIN,
    VAL,
    PatientGroup,
    assign_official,
    assign_stratified,
    official_by_patient,
    patient_groups,
)

RATIOS = [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.25, 0.25), (0.9, 0.05, 0.05), (0.5, 0.5, 0.0)]


def random_groups(seed: int) -> list[PatientGroup]:
    """3-300 patients over 1-5 classes (each with >= 3 patients), 1-8 rows each."""
    rng = np.random.default_rng(seed)
    classes = int(rng.integers(1, 6))
    patients = int(rng.integers(3 * classes, 300))
    return [
        PatientGroup(
            patient=f"p{i:04d}",
            stratum=f"c{i % classes}" if i < 3 * classes else f"c{int(rng.integers(classes))}",
            rows=int(rng.integers(1, 9)),
        )
        for i in range(patients)
    ]


def rows_per(groups, split_of):
    totals, per_class = Counter(), Counter()
    for g in groups:
        totals[split_of[g.patient]] += g.rows
        per_class[g.stratum, split_of[g.patient]] += g.rows
    return totals, per_class


@pytest.mark.parametrize("ratios", RATIOS)
def test_every_patient_gets_one_split_and_row_counts_stay_within_one_patient(ratios):
    for seed in range(150):
        # GIVEN a random set of patients
        groups = random_groups(seed)
        # WHEN they are assigned
        split_of = assign_stratified(groups, ratios, seed).split_of
        # THEN each patient is in exactly one split, and each split's rows are within one patient of the target
        assert set(split_of) == {g.patient for g in groups}
        assert set(split_of.values()) <= {TRAIN, VAL, TEST}
        totals, _ = rows_per(groups, split_of)
        total, largest = sum(g.rows for g in groups), max(g.rows for g in groups)
        for split, ratio in enumerate(ratios):
            assert abs(totals[split] - ratio * total) <= largest, (seed, split, totals, total)


@pytest.mark.parametrize("ratios", RATIOS[:4])
def test_each_class_is_split_in_the_same_proportions(ratios):
    for seed in range(150):
        groups = random_groups(seed)
        split_of = assign_stratified(groups, ratios, seed).split_of
        _, per_class = rows_per(groups, split_of)
        class_rows = Counter()
        for g in groups:
            class_rows[g.stratum] += g.rows
        largest = max(g.rows for g in groups)
        # THEN within every class, each split's rows are within one patient of the class's target too
        for stratum, rows in class_rows.items():
            for split, ratio in enumerate(ratios):
                assert abs(per_class[stratum, split] - ratio * rows) <= largest, (seed, stratum, split)
            # and every class is present in train
            assert per_class[stratum, TRAIN] > 0


def test_same_seed_same_assignment_other_seed_other_assignment():
    for seed in range(50):
        groups = random_groups(seed + 1000)
        first = assign_stratified(groups, (0.7, 0.15, 0.15), seed).split_of
        # the input order does not matter, only its content
        again = assign_stratified(list(reversed(groups)), (0.7, 0.15, 0.15), seed).split_of
        assert first == again
        if len(groups) >= 30:
            assert assign_stratified(groups, (0.7, 0.15, 0.15), seed + 1).split_of != first


def test_classes_with_too_few_patients_stay_in_train():
    # GIVEN a common class and one with two patients
    groups = [PatientGroup(f"a{i}", "common", 1) for i in range(40)]
    groups += [PatientGroup("r1", "rare", 3), PatientGroup("r2", "rare", 1)]
    # WHEN assigned with min_per_class 3
    result = assign_stratified(groups, (0.7, 0.15, 0.15), 7, min_per_class=3)
    # THEN both rare patients are in train, and the rare class is reported
    assert result.split_of["r1"] == result.split_of["r2"] == TRAIN
    assert result.rare_strata == ("rare",)
    # and with min_per_class 1 the class is split like any other (first patient still in train)
    result = assign_stratified(groups, (0.7, 0.15, 0.15), 7, min_per_class=1)
    assert result.split_of["r1"] == TRAIN and result.rare_strata == ()


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([("p", "A"), ("p", "B"), ("p", "B")], "B"),  # majority
        ([("p", "B"), ("p", "A")], "A"),  # tie: alphabetically first
        ([("p", "A|B"), ("p", "A|B"), ("p", "A")], "A|B"),  # multi-label string is its own stratum
    ],
)
def test_a_patients_stratum_is_its_majority_label(rows, expected):
    (group,) = patient_groups(rows)
    assert group == PatientGroup(patient="p", stratum=expected, rows=len(rows))


def test_official_split_keeps_test_and_carves_val_from_train():
    # GIVEN an official train/test split without val (NIH's train_val_list / test_list)
    groups = [PatientGroup(f"p{i:03d}", f"c{i % 2}", 1 + i % 3) for i in range(100)]
    official = {g.patient: ("test" if i % 5 == 0 else "train") for i, g in enumerate(groups)}
    # WHEN assigned
    split_of = assign_official(groups, official, (0.7, 0.15, 0.15), 42).split_of
    # THEN official test patients are exactly the test split; val comes from official train in ratio 0.7:0.15
    assert {p for p, s in split_of.items() if s == TEST} == {p for p, s in official.items() if s == "test"}
    pool = [g for g in groups if official[g.patient] == "train"]
    val_rows = sum(g.rows for g in pool if split_of[g.patient] == VAL)
    pool_rows = sum(g.rows for g in pool)
    assert abs(val_rows - pool_rows * 0.15 / 0.85) <= 3


def test_official_split_with_val_is_used_verbatim():
    groups = [PatientGroup(f"p{i}", "c", 1) for i in range(6)]
    official = dict(zip([g.patient for g in groups], ["train", "train", "val", "val", "test", "test"], strict=True))
    split_of = assign_official(groups, official, (0.7, 0.15, 0.15), 1).split_of
    assert [split_of[g.patient] for g in groups] == [TRAIN, TRAIN, VAL, VAL, TEST, TEST]


@pytest.mark.parametrize(
    "rows, match",
    [
        ([("p1", "train"), ("p1", "test")], "patient 'p1' is in official splits 'train' and 'test'"),
        ([("p1", "holdout")], "official_split 'holdout'.*expected one of train, val, test"),
        ([("p1", "train"), ("p2", None)], "1 rows have no official_split; use --split-from stratified"),
    ],
)
def test_bad_official_values_are_data_errors(rows, match):
    with pytest.raises(DataError, match=match):
        official_by_patient(rows, "index/x/index.parquet")
