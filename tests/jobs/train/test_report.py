"""``report.html``: self-contained, with curves that agree with the metrics."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

from jobs.ml.scores import binary_auc
from jobs.train.report import pr_points, roc_points


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_area_under_the_roc_points_is_the_auc(seed):
    # GIVEN scores with ties and both classes
    rng = np.random.default_rng(seed)
    positive = rng.uniform(size=80) < 0.4
    scores = np.round(rng.uniform(size=80) + 0.3 * positive, 1)
    # WHEN the ROC points are integrated by trapezoids
    x, y = np.array(roc_points(positive, scores)).T
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    # THEN the area is the Mann-Whitney AUC, and the curve runs from (0, 0) to (1, 1)
    assert area == pytest.approx(binary_auc(positive, scores))
    assert (x[0], y[0], x[-1], y[-1]) == (0, 0, 1, 1)


def test_precision_recall_ends_at_full_recall_with_the_prevalence():
    positive = np.array([True, False, True, False, False])
    points = pr_points(positive, np.array([0.9, 0.8, 0.7, 0.2, 0.1]))
    assert points[0] == (0.5, 1.0)
    assert points[-1] == (1.0, 0.4)


def test_the_run_report_is_self_contained(tmp_path, fast_settings):
    # GIVEN a trained run on a split with a modality column
    from jobs.core.store import open_store
    from jobs.train.stage import run
    from tests.support.synthetic_split import write_split

    store = open_store(str(tmp_path / "store"))
    write_split(store, "tiny", columns={"modality": ("CT", "CT", "CT", "MR")})
    run(fast_settings(store.uri, run_id="r"))
    # WHEN its report is read
    page = store.get_bytes("runs/r/report.html").decode()
    # THEN it loads nothing from elsewhere and shows intervals, curves, calibration and subgroups
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|<img|src=|href=", page)
    assert "95 % interval" in page and "patient-level bootstrap" in page
    assert page.count("<svg") >= 6  # ROC + PR for val and test, reliability for both, training curves
    assert "<td>modality</td><td>MR</td><td>3</td><td>3</td><td>too small</td>" in page


def test_irmsia_train_leaves_the_report_beside_its_result_file_for_argo(tmp_path, monkeypatch):
    # GIVEN a sealed split and a result file path, as the Argo pod sets it
    from jobs.core.store import open_store
    from jobs.train.__main__ import main
    from tests.support.synthetic_split import write_split

    store = open_store(str(tmp_path / "store"))
    write_split(store, "tiny")
    result = tmp_path / "result" / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result))
    # WHEN irmsia-train runs
    code = main(["--dataset", "tiny", "--run-id", "r", "--model", "small-cnn", "--epochs", "1", "--image-size", "32",
                 "--batch-size", "8", "--device", "cpu", "--workers", "0", "--cache-dir", str(tmp_path / "cache"),
                 "--store", store.uri, "--log-format", "text"])  # fmt: skip
    # THEN the report beside the result file is the sealed one, byte for byte
    assert code == 0
    assert (result.parent / "report.html").read_bytes() == store.get_bytes("runs/r/report.html")


@pytest.mark.parametrize(
    ("task", "metrics", "shown"),
    [
        ("multilabel", {"val_auc": 0.91, "intervals": {"val_auc": {"low": 0.85, "high": 0.95, "resamples": 9}},
                        "details": {"val": {"per_class": {"a": {"auc": 0.9, "threshold": 0.4}}}}}, "0.8500 - 0.9500"),
        ("segmentation", {"val_dice": 0.82, "val_hd95": 3.5, "intervals": {"val_dice": None},
                          "details": {"val": {"per_class": {"tumour": {"dice": 0.82, "hd95": 3.5}}}}}, "val_hd95"),
    ],
)  # fmt: skip
def test_a_task_run_report_shows_its_metrics_and_what_does_not_apply(task, metrics, shown):
    from jobs.train.assessment import NOT_APPLICABLE
    from jobs.train.report import render_report

    # GIVEN a multilabel or segmentation run's metrics (no class probabilities to draw curves from)
    metrics = {**metrics, "not_applicable": NOT_APPLICABLE[task], "best_epoch": 1, "epochs_run": 2}
    # WHEN its report is rendered
    page = render_report(run_id="r", config={"task": task, "classes": ["a"]}, metrics=metrics,
                         history=[{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9}], scored={},
                         split_stats=None).decode()  # fmt: skip
    # THEN it has the task's headline metrics with their intervals and names every part left out, and why
    assert shown in page and f"({task})" in page
    for part, why in NOT_APPLICABLE[task].items():
        assert part in page and html.escape(why) in page
