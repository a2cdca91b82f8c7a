"""The paired test behind ``--promote auto``: challenger and champion scored on the same patients.

Both runs' ``predictions.json`` (the challenger's from its train run, the champion's from its bundle, each read
through the manifest that sealed it) are joined on the image key, and ``jobs.ml.evaluation.paired_bootstrap``
resamples patients to give the difference of the promotion metric, its 95 % interval and a one-sided p-value. A
challenger is promoted only when that interval lies wholly on its side of zero. When a paired test is impossible
(the champion was registered before predictions were kept, the two runs scored different images, or they are
not both classification runs) the reason says so and promotion falls back to the bare comparison. No torch here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from jobs.core.manifest import read_manifest, read_output
from jobs.core.store import Store
from jobs.ml.evaluation import PairedResult, paired_bootstrap
from jobs.ml.predictions import predictions_task, read_predictions
from jobs.register.keys import PREDICTIONS, version_prefix

log = logging.getLogger("irmsia.register.comparison")
METRIC_NAMES = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "loss")


@dataclass(frozen=True)
class Comparison:
    """The paired test's result, or why there is none (``result`` is ``None``)."""

    result: PairedResult | None
    why_not: str = ""


def champion_predictions(store: Store, name: str, version: int) -> bytes | None:
    """The champion bundle's ``predictions.json``, verified against its manifest; ``None`` if it has none."""
    manifest = read_manifest(store, version_prefix(name, version))
    if manifest is None or not any(o.key == manifest.prefix + PREDICTIONS for o in manifest.outputs):
        return None
    return read_output(store, manifest, PREDICTIONS)


def compare(
    challenger: bytes | None, champion: bytes | None, metric: str, *, resamples: int, seed: int = 0
) -> Comparison:
    """Paired patient bootstrap of ``metric`` (``val_auc``, ``test_loss``…) challenger minus champion."""
    split, _, name = metric.partition("_")
    if name not in METRIC_NAMES:
        return Comparison(None, f"{metric} is not a metric the paired test computes ({', '.join(METRIC_NAMES)})")
    if challenger is None:
        return Comparison(None, "this run has no predictions.json")
    if champion is None:
        return Comparison(None, "the champion has no predictions.json")
    tasks = predictions_task(challenger), predictions_task(champion)
    if tasks != ("classification", "classification"):
        same = tasks[0] == tasks[1]
        return Comparison(None, f"the paired test compares classification predictions, not {tasks[0]}" if same
                          else f"the two runs are of different tasks ({tasks[0]} vs {tasks[1]})")  # fmt: skip
    classes_a, ours = read_predictions(challenger, "the run's predictions.json")
    classes_b, theirs = read_predictions(champion, "the champion's predictions.json")
    if classes_a != classes_b:
        return Comparison(None, f"the classes differ ({classes_a} vs {classes_b})")
    if split not in ours or split not in theirs:
        return Comparison(None, f"the {split} split was not scored by both")
    a, b = ours[split], theirs[split]
    position = {k: i for i, k in enumerate(b.keys)}
    shared = [i for i, k in enumerate(a.keys) if k in position]
    if not shared:
        return Comparison(None, f"no {split} image was scored by both")
    other = np.asarray([position[a.keys[i]] for i in shared])
    labels = a.labels[shared]
    if not np.array_equal(labels, b.labels[other]):
        return Comparison(None, f"the {split} labels differ between the two runs")
    if len(shared) < len(a.keys) or len(shared) < len(b.keys):
        log.warning("paired test on the %d %s images both runs scored (of %d and %d)", len(shared), split,
                    len(a.keys), len(b.keys))  # fmt: skip
    result = paired_bootstrap(
        labels,
        a.probs[shared],
        b.probs[other],
        [a.patients[i] for i in shared],
        name,
        classes_a,
        resamples=resamples,
        seed=seed,
    )
    return Comparison(result, "" if result is not None else f"{metric} is undefined on the shared images")
