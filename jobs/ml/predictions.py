"""``predictions.json``: the per-image class probabilities a run's best model gave on val and test.

Train writes it; register copies it into the bundle and reads the champion's to compare the two models on the
same patients (a paired test). Probabilities are rounded to ``PROB_DIGITS`` so the file is the same bytes on every
rerun of a deterministic run. No torch here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jobs.core.errors import DataError
from jobs.core.hashing import pretty_json

PREDICTIONS = "predictions.json"
PROB_DIGITS = 7


@dataclass(frozen=True)
class Scored:
    """One split as a model scored it: image keys, labels, class probabilities, patients, index columns."""

    keys: tuple[str, ...]
    labels: np.ndarray
    probs: np.ndarray
    patients: tuple[str, ...]
    attributes: dict[str, list[Any]] = field(default_factory=dict)


def predictions_bytes(scored: Mapping[str, Scored], classes: Sequence[str], task: str = "classification") -> bytes:
    """Per split, each item's key, patient, label (class index, or finding vector for multilabel) and class
    probabilities; ``task`` says which, so a paired test never compares two tasks' numbers."""
    return pretty_json(
        {
            "task": task,
            "classes": list(classes),
            "splits": {
                split: [
                    {
                        "image": k,
                        "patient_id": p,
                        "label": _label(y),
                        "probs": [round(float(v), PROB_DIGITS) for v in row],
                    }
                    for k, p, y, row in zip(s.keys, s.patients, s.labels, s.probs, strict=True)
                ]
                for split, s in scored.items()
            },
        }
    )


def _label(y: Any) -> int | list[int]:
    return [int(v) for v in y] if np.ndim(y) else int(y)


def predictions_task(raw: bytes) -> str:
    """The task a ``predictions.json`` holds (files written before tasks existed are classification)."""
    try:
        return str(json.loads(raw).get("task") or "classification")
    except (ValueError, AttributeError):
        return "unknown"


def read_predictions(raw: bytes, where: str) -> tuple[list[str], dict[str, Scored]]:
    """The classes and per-split predictions of a ``predictions.json`` (``DataError`` naming ``where``)."""
    try:
        data = json.loads(raw)
        classes = [str(c) for c in data["classes"]]
        splits = {}
        for split, rows in data["splits"].items():
            splits[split] = Scored(
                keys=tuple(str(r["image"]) for r in rows),
                labels=np.asarray([int(r["label"]) for r in rows], np.int64),
                probs=np.asarray([r["probs"] for r in rows], np.float64).reshape(len(rows), len(classes)),
                patients=tuple(str(r["patient_id"]) for r in rows),
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{where}: not a predictions file ({exc}); rerun irmsia-train for this run") from exc
    return classes, splits
