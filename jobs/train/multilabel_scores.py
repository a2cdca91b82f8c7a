"""Multi-label scores: per-finding ROC AUC and its mean (the ChestX-ray14 standard), and per-finding
sensitivity, specificity, precision and F1 at thresholds chosen on the validation split. Plain numpy.

``choose_thresholds`` picks, per finding, the probability cut that maximises F1 on the labels it is given (the
midpoint between the deciding score and the next lower one, so it generalises); a finding without positives
keeps 0.5. The run chooses them on val and applies the same thresholds to val and test, and records them in
``config.json`` for serving. ``exact_match`` is the share of items whose whole finding vector is right.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jobs.ml.scores import binary_auc

HEADLINE = ("auc", "macro_f1", "exact_match")
DEFAULT_THRESHOLD = 0.5


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def best_threshold(positive: np.ndarray, scores: np.ndarray) -> float:
    """The score cut maximising F1 for boolean ``positive`` (ties: the higher cut, fewer false positives)."""
    positive = np.asarray(positive, bool)
    if not positive.any() or positive.all():
        return DEFAULT_THRESHOLD
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores, np.float64)[order]
    hits = np.cumsum(positive[order])
    last = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]  # last index of each distinct score
    tp = hits[last]
    fp = last + 1 - tp
    fn = positive.sum() - tp
    f1 = 2 * tp / (2 * tp + fp + fn)
    best = int(np.argmax(f1))  # first maximum: the highest score cut
    below = sorted_scores[last[best] + 1] if last[best] + 1 < len(sorted_scores) else 0.0
    return float((sorted_scores[last[best]] + below) / 2)


def choose_thresholds(y_true: np.ndarray, probs: np.ndarray) -> list[float]:
    """One threshold per finding (column), chosen for the best F1 on these labels."""
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    return [round(best_threshold(y_true[:, k] > 0.5, probs[:, k]), 6) for k in range(probs.shape[1])]


def multilabel_metrics(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], thresholds: Sequence[float] | None = None
) -> dict[str, Any]:
    """Headline scalars plus per-finding details for one split; ``thresholds`` default to 0.5 each."""
    y = np.asarray(y_true, np.float64) > 0.5
    probs = np.asarray(probs, np.float64)
    cuts = list(thresholds) if thresholds is not None else [DEFAULT_THRESHOLD] * len(classes)
    predicted = probs >= np.asarray(cuts)[None, :] if len(probs) else np.zeros_like(y)
    per_class: dict[str, dict[str, Any]] = {}
    aucs, f1s = [], []
    for k, name in enumerate(classes):
        t, p = y[:, k], predicted[:, k]
        tp, fp = float((t & p).sum()), float((~t & p).sum())
        fn, tn = float((t & ~p).sum()), float((~t & ~p).sum())
        auc = binary_auc(t, probs[:, k]) if len(t) else None
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        per_class[name] = {
            "support": int(t.sum()),
            "auc": auc,
            "threshold": cuts[k],
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "precision": _ratio(tp, tp + fp),
            "f1": f1,
        }
        aucs.append(auc)
        if t.any():
            f1s.append(f1 or 0.0)
    defined = [a for a in aucs if a is not None]
    return {
        "auc": float(np.mean(defined)) if defined else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "exact_match": float((predicted == y).all(axis=1).mean()) if len(y) else None,
        "details": {"n": len(y), "classes": list(classes), "thresholds": cuts, "per_class": per_class},
    }
