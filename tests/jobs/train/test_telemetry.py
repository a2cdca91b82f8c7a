"""The train stage's metrics follow its history entries and final metrics."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.core.metrics import begin_stage_metrics
from jobs.train.telemetry import record_epoch, record_final


def samples(metrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    drop = {"stage", "dataset", "run_id", "workflow_id"}
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in drop))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def entry(epoch: int, **overrides) -> dict:
    base = {
        "epoch": epoch,
        "lr": 1e-3 / epoch,
        "train_loss": 1.0 / epoch,
        "val_loss": 1.2 / epoch,
        "val_accuracy": 0.5 + epoch / 10,
        "val_auc": None,
        "images_per_s": 100.0,
        "data_wait_fraction": 0.25,
        "epoch_s": 2.0,
        "best": True,
    }
    return {**base, **overrides}


def test_each_epoch_adds_its_points_to_the_curves():
    # GIVEN a train stage registry
    metrics = begin_stage_metrics("train", dataset="demo", run_id="r1")
    # WHEN two epochs are recorded
    record_epoch(entry(1))
    record_epoch(entry(2, images_per_s=50.0), images=120)
    got = samples(metrics)
    # THEN the loss and validation curves have a point per epoch, and the live gauges show the last epoch
    assert got[("irmsia_train_loss", (("epoch", "1"), ("split", "train")))] == 1.0
    assert got[("irmsia_train_loss", (("epoch", "2"), ("split", "val")))] == 0.6
    assert got[("irmsia_train_val_metric", (("epoch", "2"), ("metric", "accuracy")))] == 0.7
    assert got[("irmsia_train_epoch", ())] == 2
    assert got[("irmsia_train_images_per_second", ())] == 50.0
    assert got[("irmsia_train_data_wait_fraction", ())] == 0.25
    assert got[("irmsia_train_learning_rate", ())] == 5e-4
    assert got[("irmsia_stage_items_total", ())] == 320  # 100 img/s * 2 s estimated, then 120 images counted
    # AND values that are not numbers (an AUC undefined for one class, the "best" flag) are left out
    assert not any(name == "irmsia_train_val_metric" and ("metric", "auc") in labels for name, labels in got)
    assert not any(("metric", "best") in labels for _, labels in got)


def test_final_metrics_are_exported_by_name():
    metrics = begin_stage_metrics("train", dataset="demo", run_id="r1")
    record_final({"val_auc": 0.91, "test_accuracy": 0.8, "test_auc": None, "details": {}})
    got = samples(metrics)
    assert got[("irmsia_train_final_metric", (("metric", "val_auc"),))] == 0.91
    assert got[("irmsia_train_final_metric", (("metric", "test_accuracy"),))] == 0.8
    assert ("irmsia_train_final_metric", (("metric", "test_auc"),)) not in got
