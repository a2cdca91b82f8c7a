"""The train stage: a sealed split in, a trained classifier with honest metrics out under ``runs/<run-id>/``.

``run(settings)`` reads ``splits/<dataset>/`` through its manifest, decodes every image once into the local cache,
trains with per-epoch checkpoints in the store, scores the best model on val and test, and seals the run with
``_SUCCESS.json``: ``best_model.pt``, ``last_model.pt``, ``checkpoints/last.pt``, ``metrics.json``,
``history.json``, ``config.json``, ``training_curves.png``, ``confusion_matrix.png``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from typing import Any

import numpy as np

from jobs.core.errors import DataError
from jobs.core.hashing import pretty_json
from jobs.core.layout import run_prefix, splits_prefix
from jobs.core.logs import set_context
from jobs.core.manifest import Manifest, StageWriter, code_version, compute_cache_key, read_manifest
from jobs.core.preprocess import Preprocessing
from jobs.core.store import Store, open_store
from jobs.train.data import ImageSet, Split, check_split, class_counts, load_images, read_split
from jobs.train.metrics import HEADLINE, flat_metrics
from jobs.train.settings import TrainSettings
from jobs.train.telemetry import record_epoch, record_final

log = logging.getLogger("irmsia.train")
STAGE = "train"


def derive_run_id(dataset: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """A run id that is the same whenever the result would be: ``<dataset>-<10 hex of the cache key>``."""
    key = compute_cache_key(STAGE, params, inputs, code_version())
    return f"{dataset[:40].rstrip('-._')}-{key[:10]}"


def _state_bytes(state: dict[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, buffer)
    return buffer.getvalue()


def _check_usable(sets: dict[str, ImageSet], split: Split, where: str) -> None:
    """After unreadable images were skipped the split must still be trainable."""
    for name in ("train", "val"):
        if not len(sets[name]):
            raise DataError(f"{where}: no readable images left in the {name} split")
    counts = class_counts(sets["train"].labels, len(split.classes))
    missing = [c for c, n in zip(split.classes, counts, strict=True) if n == 0]
    if missing:
        raise DataError(f"{where}: class(es) {missing} have no readable training images; fix the images")


def run(settings: TrainSettings) -> tuple[Manifest, bool]:
    """Train (or find the cached run) and return ``(manifest, cached)``."""
    store = open_store(settings.common.store)
    split_prefix = splits_prefix(settings.dataset)
    split = read_split(store, settings.dataset)
    check_split(split, split_prefix)
    params = {**settings.result_params(), "classes": list(split.classes)}
    inputs = {split_prefix: split.manifest.content_sha256}
    run_id = settings.run_id or derive_run_id(settings.dataset, params, inputs)
    set_context(run_id=run_id)
    prefix = run_prefix(run_id)
    writer = StageWriter(store, STAGE, prefix, params, inputs)
    if (hit := writer.cached(settings.common.force)) is not None:
        log.info("cache hit: %s already holds this run (use --force to retrain)", prefix)
        return hit, True
    return _train(settings, store, split, writer), False


def _train(settings: TrainSettings, store: Store, split: Split, writer: StageWriter) -> Manifest:
    from jobs.train.checkpoint import TrainState, restore, save_checkpoint
    from jobs.train.loop import Trainer, pick_hardware

    prefix = writer.prefix
    hardware = pick_hardware(settings.device, settings.amp)
    # Fail on a missing or foreign checkpoint before spending minutes decoding images.
    payload = _checkpoint_to_resume(settings, store, writer)
    prep = Preprocessing(image_size=settings.image_size, percentiles=settings.percentiles)
    sets, in_channels = load_images(
        store,
        split,
        prep,
        settings.cache_dir,
        workers=settings.workers if settings.workers > 0 else _cpu_count(),
        max_unreadable=settings.max_unreadable,
    )
    _check_usable(sets, split, splits_prefix(settings.dataset))
    prep = replace(prep, channels=in_channels)
    log.info(
        "training %s on %s (%s, amp %s): %d train / %d val / %d test images, %d classes, %d channel(s)",
        settings.model, hardware.device.type, hardware.name, hardware.describe()["amp"],
        len(sets["train"]), len(sets["val"]), len(sets["test"]), len(split.classes), in_channels,
    )  # fmt: skip
    writer.begin()
    trainer = Trainer(settings, sets, split.classes, in_channels, hardware)
    state = restore(payload, **trainer.components()) if payload is not None else TrainState()
    if payload is not None:
        log.info("resuming %s after epoch %d", prefix, state.epoch)

    def checkpoint(current: TrainState) -> None:
        save_checkpoint(store, prefix, cache_key=writer.cache_key, state=current, **trainer.components())
        record_epoch({**current.history[-1], **current.timings[-1]}, images=len(trainer.sets["train"]))

    state = trainer.fit(state, checkpoint)
    last_state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    best_state = state.best_state if state.best_state is not None else last_state
    trainer.model.load_state_dict(best_state)
    results = {name: trainer.evaluate(name) for name in ("val", "test") if len(sets[name])}
    if "test" not in results:
        log.warning("the test split is empty: test metrics are not reported")
    return _write_outputs(settings, split, writer, trainer, state, prep, in_channels, results, best_state, last_state)


def _checkpoint_to_resume(settings: TrainSettings, store: Store, writer: StageWriter) -> dict[str, Any] | None:
    """The checkpoint to continue from, per ``--resume``: ``required`` insists on one, ``auto`` takes a usable one."""
    from jobs.train.checkpoint import find_checkpoint, load_checkpoint

    if settings.resume == "required":
        return load_checkpoint(store, writer.prefix, writer.cache_key)
    if settings.resume != "auto":
        return None
    if read_manifest(store, writer.prefix) is not None:
        # Sealed and still not a cache hit: --force, or other settings under this --run-id. Both mean retrain.
        log.info("--resume auto: %s is a finished run; retraining from scratch", writer.prefix)
        return None
    payload, why = find_checkpoint(store, writer.prefix, writer.cache_key)
    log.info("--resume auto: %s; %s", why, "resuming from it" if payload is not None else "starting fresh")
    return payload


def _write_outputs(
    settings: TrainSettings,
    split: Split,
    writer: StageWriter,
    trainer: Any,
    state: Any,
    prep: Preprocessing,
    in_channels: int,
    results: dict[str, dict[str, Any]],
    best_state: dict[str, Any],
    last_state: dict[str, Any],
) -> Manifest:
    from jobs.train.checkpoint import CHECKPOINT_NAME
    from jobs.train.plots import confusion_matrices, training_curves

    history = state.history
    flat: dict[str, Any] = {}
    for name in ("val", "test"):
        if name in results:
            flat.update(flat_metrics(name, results[name]))
            flat[f"{name}_loss"] = round(results[name]["loss"], 6)
        else:
            flat.update({f"{name}_{m}": None for m in (*HEADLINE, "loss")})
    perf_epochs = state.timings
    metrics = {
        **flat,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped,
        "monitor": settings.monitor,
        "details": {name: r["details"] for name, r in results.items()},
    }
    # Timings vary between runs, so they go into the manifest's summary, never into a sealed output: the outputs
    # stay a function of data, settings and device, and a reproduced run keeps its identity (content hash).
    performance = {
        **trainer.hardware.describe(),
        "images_per_s": round(float(np.mean([h["images_per_s"] for h in perf_epochs])), 1) if perf_epochs else 0,
        "data_wait_fraction": (
            round(float(np.mean([h["data_wait_fraction"] for h in perf_epochs])), 4) if perf_epochs else 0
        ),
        "loader_workers": trainer.workers,
    }
    config = {
        **settings.result_params(),
        "dataset": settings.dataset,
        "run_id": writer.prefix.split("/")[1],
        "in_channels": in_channels,
        "num_classes": len(split.classes),
        "classes": list(split.classes),
        "preprocessing": prep.to_dict(),
        "train_images": len(trainer.sets["train"]),
        "class_counts": class_counts(trainer.sets["train"].labels, len(split.classes)),
        "split_manifest_sha256": split.manifest.content_sha256,
        "code_version": code_version(),
    }
    writer.put_bytes("best_model.pt", _state_bytes(best_state))
    writer.put_bytes("last_model.pt", _state_bytes(last_state))
    writer.record(writer.store.head(writer.prefix + CHECKPOINT_NAME))
    writer.put_bytes("config.json", pretty_json(config))
    writer.put_bytes("history.json", pretty_json(history))
    writer.put_bytes("metrics.json", pretty_json(metrics))
    writer.put_bytes("training_curves.png", training_curves(history, settings.monitor))
    writer.put_bytes("confusion_matrix.png", confusion_matrices(metrics["details"]))
    summary = {
        "run_id": config["run_id"],
        "model": settings.model,
        "device": f"{trainer.hardware.device.type} ({trainer.hardware.name})",
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        **{k: v for k, v in flat.items() if k.startswith(("val_", "test_")) and not k.endswith("_loss")},
        "performance": performance,
    }
    manifest = writer.commit(summary=summary)
    record_final(flat)
    log.info(
        "run sealed at %s: best epoch %d, val accuracy %s, test accuracy %s",
        writer.prefix, state.best_epoch, flat["val_accuracy"], flat["test_accuracy"],
    )  # fmt: skip
    return manifest


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
