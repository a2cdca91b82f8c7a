"""Metrics against confusion matrices and ROC AUCs worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.train.scores import binary_auc, classification_metrics, confusion_matrix, flat_metrics


def _probs(pred: list[int], k: int) -> np.ndarray:
    """Probabilities whose argmax is ``pred``."""
    p = np.full((len(pred), k), 0.1 / max(1, k - 1))
    p[np.arange(len(pred)), pred] = 0.9
    return p


def test_binary_metrics_match_a_hand_checked_confusion_matrix():
    # GIVEN 10 items: true [0]*6 + [1]*4, predicted so that TN=4 FP=2 FN=1 TP=3 (class 1 = positive)
    y_true = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    # WHEN the metrics are computed
    m = classification_metrics(np.array(y_true), _probs(y_pred, 2), ["neg", "pos"])
    # THEN they equal the textbook formulas on that matrix
    assert m["details"]["confusion_matrix"] == [[4, 2], [1, 3]]
    assert m["accuracy"] == pytest.approx(7 / 10)
    pos = m["details"]["per_class"]["pos"]
    assert pos["sensitivity"] == pytest.approx(3 / 4)
    assert pos["specificity"] == pytest.approx(4 / 6)
    assert pos["precision"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((4 / 6 + 3 / 4) / 2)
    f1_pos, f1_neg = 2 * 3 / (2 * 3 + 2 + 1), 2 * 4 / (2 * 4 + 1 + 2)
    assert m["macro_f1"] == pytest.approx((f1_pos + f1_neg) / 2)


def test_three_class_matrix_and_per_class_sensitivity_specificity():
    # GIVEN true/pred pairs: class a 3 right 1 as b; class b 2 right 1 as c; class c 2 right
    y_true = [0, 0, 0, 0, 1, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    m = classification_metrics(np.array(y_true), _probs(y_pred, 3), ["a", "b", "c"])
    assert m["details"]["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [0, 0, 2]]
    per = m["details"]["per_class"]
    # sensitivity = TP / (TP + FN); specificity = TN / (TN + FP)
    assert [per[c]["sensitivity"] for c in "abc"] == pytest.approx([3 / 4, 2 / 3, 1.0])
    assert [per[c]["specificity"] for c in "abc"] == pytest.approx([5 / 5, 5 / 6, 6 / 7])
    assert m["accuracy"] == pytest.approx(7 / 9)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 1) / 3)


@pytest.mark.parametrize(
    ("positive", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),  # perfect ranking
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),  # perfectly wrong
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # all tied: every pair counts half
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),  # pairs: (0.35>0.1) (0.35<0.4) (0.8>both) = 3 of 4
        ([0, 1, 1], [0.3, 0.3, 0.9], 0.75),  # one tie (half) and one win of 2 pairs
        ([1, 1, 1], [0.1, 0.2, 0.3], None),  # no negatives: undefined
    ],
)
def test_binary_auc_by_hand(positive, scores, expected):
    result = binary_auc(np.array(positive, bool), np.array(scores))
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_auc_of_a_class_absent_from_the_labels_is_none_not_nan():
    # GIVEN three classes of which "c" never occurs in the labels
    y_true = np.array([0, 1, 0, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    m = classification_metrics(y_true, probs, ["a", "b", "c"])
    # THEN its AUC is None, the macro AUC averages the defined ones, and nothing is NaN
    assert m["details"]["per_class"]["c"]["auc"] is None
    assert m["auc"] == pytest.approx(1.0)
    assert m["balanced_accuracy"] == pytest.approx(1.0)


def test_confusion_matrix_and_flat_names():
    assert confusion_matrix(np.array([1, 1, 0]), np.array([1, 0, 0]), 2).tolist() == [[1, 0], [1, 1]]
    flat = flat_metrics("val", {"accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 1 / 3, "auc": None})
    assert flat == {"val_accuracy": 0.5, "val_balanced_accuracy": 0.5, "val_macro_f1": 0.333333, "val_auc": None}
