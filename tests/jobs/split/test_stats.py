"""Split statistics and the leakage check the stage runs on its own output."""

from __future__ import annotations

import pytest

from jobs.core.errors import DataError
from jobs.split.stats import check_patients_disjoint, split_stats


def rows(*pairs):
    return [{"patient_id": p, "label": label} for p, label in pairs]


def test_a_patient_in_two_splits_is_a_data_error():
    # GIVEN rows where patient b is in train and test
    by_split = {"train": rows(("a", "X"), ("b", "X")), "val": rows(("c", "Y")), "test": rows(("b", "X"))}
    # THEN the check names the patient and the splits
    with pytest.raises(DataError, match=r"patient 'b' is in splits \['test', 'train'\] \(1 patients leak\)"):
        check_patients_disjoint(by_split)


def test_disjoint_splits_pass():
    check_patients_disjoint({"train": rows(("a", "X"), ("a", "Y")), "val": rows(("b", "X")), "test": []})


def test_stats_count_rows_patients_and_classes_per_split():
    by_split = {"train": rows(("a", "X"), ("a", "Y"), ("b", "X")), "val": rows(("c", "Y")), "test": []}
    stats = split_stats(by_split, ["X", "Y"], seed=3)
    assert stats["seed"] == 3 and stats["rows"] == 4 and stats["patients"] == 3
    assert stats["rows_per_class"] == {"X": 2, "Y": 2}
    assert stats["splits"]["train"] == {
        "rows": 3, "patients": 2, "studies": 0, "series": 0, "fraction": 0.75, "classes": {"X": 2, "Y": 1}
    }  # fmt: skip
    assert stats["splits"]["test"] == {
        "rows": 0, "patients": 0, "studies": 0, "series": 0, "fraction": 0.0, "classes": {"X": 0, "Y": 0}
    }  # fmt: skip
