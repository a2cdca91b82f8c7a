"""Each task's demo, end to end through the real stages, to the issue's quality bars; then served from the registry.

One ``irmsia run --profile demo-<task>`` per task on a folder store (collect -> index -> split -> train -> register),
then ``load_predictor`` (the serving API) answers for the test split's own raw files, a DICOM series folder
included, and its answers are scored against the truth the datalist holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.core.manifest import read_manifest
from jobs.core.paths import run_prefix
from jobs.core.store import open_store
from jobs.register.keys import REPORT, version_prefix

pytestmark = [pytest.mark.slow]


def _irmsia_run(store: str, profile: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--store", store, "--profile", profile, *extra],
        env={**os.environ, "IRMSIA_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def _auc(scores: list[float], truth: list[int]) -> float:
    """Rank AUC: the chance a positive scores above a negative (ties count half)."""
    pos = [s for s, t in zip(scores, truth, strict=True) if t]
    neg = [s for s, t in zip(scores, truth, strict=True) if not t]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    both = (pred > 0).sum() + (truth > 0).sum()
    return 1.0 if both == 0 else float(2 * ((pred > 0) & (truth > 0)).sum() / both)


def _series_folder(store_root: Path, items: list[dict[str, Any]], into: Path) -> Path:
    """The raw files of one volume's slices in a folder of their own, as a PACS export would hand them."""
    into.mkdir(parents=True)
    for item in items:
        (into / Path(item["image"]).name).write_bytes((store_root / item["image"]).read_bytes())
    return into


# profile, registry name, metric, bar
CASES = [
    ("demo-segmentation", "demo-segmenter", "val_dice", 0.8),
    ("demo-segmentation-3d", "demo-segmenter-3d", "val_dice", 0.8),
    ("demo-multilabel", "demo-multilabel", "val_auc", 0.9),
    ("demo-volume", "demo-volume-classifier", "val_accuracy", 0.9),
]


@pytest.mark.parametrize(("profile", "model_name", "metric", "bar"), CASES, ids=[c[0] for c in CASES])
def test_each_task_demo_reaches_its_bar_and_is_served_from_the_registry(profile, model_name, metric, bar, tmp_path):
    from jobs.register.api import load_metadata, load_predictor

    # GIVEN an empty folder store
    root = tmp_path / "store"
    # WHEN the whole DAG runs on the task's demo profile
    done = _irmsia_run(str(root), profile)
    # THEN every stage succeeded and the run reaches the task's quality bar on val
    assert done.returncode == 0, done.stderr[-4000:]
    store = open_store(str(root))
    dataset = profile
    (run_id,) = {o.key.split("/")[1] for o in store.list("runs/")}
    metrics = json.loads(store.get_bytes(run_prefix(run_id) + "metrics.json"))
    assert metrics[metric] >= bar, {k: v for k, v in metrics.items() if k.startswith(("val_", "test_"))}
    # AND the split, the run and the registered version all know the task
    datalist = json.loads(store.get_bytes(f"splits/{dataset}/datalist.json"))
    task = datalist["task"]
    assert task == {"demo-volume": "classification", "demo-multilabel": "multilabel"}.get(profile, "segmentation")
    assert read_manifest(store, run_prefix(run_id)).params["task"] == task
    meta = load_metadata(store, model_name, "champion")
    assert meta["irmsia"]["task"] == task
    # AND the run carries the task's evaluation: a patient-bootstrap interval for the metric, what does not apply
    # named (only classification has calibration, operating points and subgroups), the report in the bundle
    ci = metrics["intervals"][metric]
    assert ci is not None and ci["low"] <= ci["high"], ci
    assert ("not_applicable" in metrics) is (task != "classification"), metrics.get("not_applicable")
    assert ("calibration" in metrics) is (task == "classification")
    assert meta["irmsia"]["evaluation"]["intervals"][metric] == ci
    bundle = read_manifest(store, version_prefix(model_name, meta["irmsia"]["registry_version"]))
    assert any(o.key == bundle.prefix + REPORT for o in bundle.outputs)
    # WHEN the champion is served the test split's raw files (a series folder for a DICOM volume)
    predictor = load_predictor(store, model_name)
    test = datalist["test"]
    assert test, "the demo must leave a test split"
    if task == "segmentation":
        # THEN its label maps overlap the true masks, brought to the model's grid as train brings them (mean Dice
        # over the test cases' non-empty masks)
        scores = []
        for item in test:
            truth = predictor.preprocessing.label_map([(root / item["label"]).read_bytes()], item["label"])
            answer = predictor(root / item["image"])["label_map"]
            assert answer.shape == truth.shape, (answer.shape, truth.shape)
            if truth.any():
                scores.append(_dice(answer, truth))
        assert scores and float(np.mean(scores)) >= bar, scores
    elif task == "multilabel":
        # THEN the finding probabilities rank the true findings first (mean AUC over findings)
        answers = [predictor(root / item["image"]) for item in test]
        findings = datalist["labels"]
        aucs = [
            _auc([a["probabilities"][f] for a in answers], [item["label"][i] for item in test])
            for i, f in enumerate(findings)
        ]
        assert float(np.mean(aucs)) >= bar, dict(zip(findings, aucs, strict=True))
        assert all(set(a["findings"]) <= set(findings) for a in answers)
    else:
        # THEN each test volume (a DICOM series folder or a NIfTI file) gets its class
        volumes: dict[str, list[dict[str, Any]]] = {}
        for item in test:
            volumes.setdefault(item["volume"], []).append(item)
        right = 0
        for n, (volume, items) in enumerate(sorted(volumes.items())):
            source = root / volume if volume.startswith("raw/") else _series_folder(root, items, tmp_path / f"s{n}")
            right += predictor(source)["class"] == items[0]["label_name"]
        assert any(not v.startswith("raw/") for v in volumes) and any(v.startswith("raw/") for v in volumes)
        assert right / len(volumes) >= bar, (right, len(volumes))

        # AND the demo cannot be passed without its third dimension: a nodule is mostly off the middle slice, so
        # a 2-D model of each volume's middle slice, trained on the same split, stays far below the 3-D bar
        flat = subprocess.run(
            [sys.executable, "-m", "jobs.train", "--store", str(root), "--dataset", dataset, "--run-id", "flat",
             "--dims", "2", "--slices", "middle", "--model", "small-cnn", "--epochs", "15", "--image-size", "32",
             "--batch-size", "8", "--lr", "0.003", "--device", "cpu", "--log-format", "text"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert flat.returncode == 0, flat.stderr[-4000:]
        flat_metrics = json.loads(store.get_bytes(run_prefix("flat") + "metrics.json"))
        assert flat_metrics["val_accuracy"] < 0.8, flat_metrics["val_accuracy"]
