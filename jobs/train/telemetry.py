"""The train stage's Prometheus metrics (see jobs.core.metrics): per-epoch loss and validation metrics, images
per second, data-wait fraction, learning rate, GPU memory and utilisation, and the run's final metrics.

``record_epoch`` takes one ``history.json`` entry; ``record_final`` the flat ``metrics.json`` scalars.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.core.metrics import stage_metrics
from jobs.ml.nvml import sample_gpus


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def record_epoch(entry: Mapping[str, Any], images: int | None = None) -> None:
    """One finished epoch: ``{"epoch", "lr", "train_loss", "val_loss", "val_<metric>"…, "images_per_s",
    "data_wait_fraction", "epoch_s"}``; ``images`` trained on in it (estimated from the rate when ``None``).
    Missing or ``None`` values are left out."""
    metrics = stage_metrics()
    epoch = int(entry["epoch"])
    metrics.gauge("irmsia_train_epoch").set(epoch)
    for split in ("train", "val"):
        if _number(loss := entry.get(f"{split}_loss")):
            metrics.gauge("irmsia_train_loss", split=split, epoch=epoch).set(loss)
    for key, value in entry.items():
        if key.startswith("val_") and key != "val_loss" and _number(value):
            metrics.gauge("irmsia_train_val_metric", metric=key.removeprefix("val_"), epoch=epoch).set(value)
    for key, name in (
        ("images_per_s", "irmsia_train_images_per_second"),
        ("data_wait_fraction", "irmsia_train_data_wait_fraction"),
        ("lr", "irmsia_train_learning_rate"),
    ):
        if _number(value := entry.get(key)):
            metrics.gauge(name).set(value)
    if images is not None:
        metrics.items.inc(images)
    elif _number(entry.get("images_per_s")) and _number(entry.get("epoch_s")):
        metrics.items.inc(round(entry["images_per_s"] * entry["epoch_s"]))
    sample_gpus(metrics)


def record_final(flat: Mapping[str, Any]) -> None:
    """The final ``<split>_<metric>`` scalars (``val_auc``, ``test_accuracy``…) as ``irmsia_train_final_metric``."""
    metrics = stage_metrics()
    for key, value in flat.items():
        if _number(value):
            metrics.gauge("irmsia_train_final_metric", metric=key).set(value)
