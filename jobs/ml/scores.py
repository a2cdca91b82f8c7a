"""Classification scores from labels and predicted probabilities, in plain numpy so they can be checked by hand;
shared by train (its metrics) and register (the paired promotion test).

Accuracy, balanced accuracy (mean sensitivity), macro F1, one-vs-rest ROC AUC per class (Mann-Whitney with ties
counted half) and its macro mean, sensitivity and specificity per class, and the confusion matrix (rows = true
class, columns = predicted). A metric that is undefined for the data (AUC of a class absent from the labels) is
``None``, never NaN, so it survives JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[t, p]`` = how many items of true class ``t`` were predicted as ``p``."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for boolean ``positive``: P(score of a positive > score of a negative), ties half."""
    positive = np.asarray(positive, bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Headline scalars plus per-class details for one split; ``probs`` is ``(N, num_classes)``."""
    y_true = np.asarray(y_true, np.int64)
    probs = np.asarray(probs, np.float64)
    k = len(classes)
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    cm = confusion_matrix(y_true, y_pred, k)
    n = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = n - tp - fn - fp
    sensitivity = [_ratio(tp[i], tp[i] + fn[i]) for i in range(k)]
    specificity = [_ratio(tn[i], tn[i] + fp[i]) for i in range(k)]
    precision = [_ratio(tp[i], tp[i] + fp[i]) for i in range(k)]
    f1 = [_ratio(2 * tp[i], 2 * tp[i] + fp[i] + fn[i]) for i in range(k)]
    auc = [binary_auc(y_true == i, probs[:, i]) if n else None for i in range(k)]
    present = [i for i in range(k) if tp[i] + fn[i] > 0]
    return {
        "accuracy": _ratio(tp.sum(), n),
        # Balanced accuracy and macro F1 average over the classes present in the labels.
        "balanced_accuracy": _mean([sensitivity[i] for i in present]),
        "macro_f1": _mean([f1[i] if f1[i] is not None else 0.0 for i in present]),
        "auc": _mean(auc),
        "details": {
            "n": n,
            "classes": list(classes),
            "confusion_matrix": cm.tolist(),
            "per_class": {
                c: {
                    "support": int(tp[i] + fn[i]),
                    "auc": auc[i],
                    "sensitivity": sensitivity[i],
                    "specificity": specificity[i],
                    "precision": precision[i],
                    "f1": f1[i],
                }
                for i, c in enumerate(classes)
            },
        },
    }


HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "auc")


def flat_metrics(split: str, metrics: dict[str, Any]) -> dict[str, float | None]:
    """``{"val_accuracy": …, "val_auc": …}`` for one split's metrics."""
    return {f"{split}_{name}": _round(metrics[name]) for name in HEADLINE}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
