"""The train stage: a sealed split in, a trained classifier with honest metrics out under ``runs/<run-id>/``.

``run(settings)`` reads ``splits/<dataset>/`` through its manifest, decodes every image once into the local cache,
trains with per-epoch checkpoints in the store, scores the best model on val and test, and seals the run with
``_SUCCESS.json``: ``best_model.pt``, ``last_model.pt``, ``checkpoints/last.pt``, ``metrics.json``,
``history.json``, ``config.json``, ``predictions.json``, ``report.html``, ``training_curves.png``,
``confusion_matrix.png``; the metrics carry patient-bootstrap intervals, calibration, operating points and
subgroups (``jobs.train.assessment``), and ``report.html`` shows them (``jobs.train.report``).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from jobs.core.cpus import usable_cpus
from jobs.core.errors import DataError
from jobs.core.hashing import pretty_json
from jobs.core.logs import set_context
from jobs.core.manifest import Manifest, StageWriter, code_version, compute_cache_key, read_manifest, read_output
from jobs.core.paths import run_prefix, splits_prefix
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Store
from jobs.ml.predictions import PREDICTIONS, Scored, predictions_bytes
from jobs.ml.preprocess import Preprocessing
from jobs.train.assessment import EvaluationOptions, assess, join_items
from jobs.train.data import ImageSet, Split, check_split, class_counts, load_images, read_split
from jobs.train.report import REPORT
from jobs.train.scores import HEADLINE, flat_metrics
from jobs.train.settings import TrainSettings
from jobs.train.telemetry import record_epoch, record_final

log = logging.getLogger("irmsia.train")
STAGE_NAME = "train"


def derive_run_id(dataset: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """A run id that is the same whenever the result would be: ``<dataset>-<10 hex of the cache key>``."""
    key = compute_cache_key(STAGE_NAME, params, inputs, code_version())
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


@dataclass(frozen=True, kw_only=True)
class TrainPlan(StagePlan):
    """The sealed split a run trains on, and the run it becomes."""

    split: Split
    run_id: str


@dataclass(frozen=True)
class _Fit:
    """What training left behind for the outputs: the trainer, its final state, the scores, the preprocessing."""

    trainer: Any
    state: Any
    prep: Preprocessing
    in_channels: int
    results: dict[str, dict[str, Any]]
    best_state: dict[str, Any]
    last_state: dict[str, Any]
    predictions: dict[str, tuple[tuple[str, ...], np.ndarray, np.ndarray]]
    """Per scored split: image keys, labels and class probabilities of the best model."""


class TrainStage(PlannedStage[TrainSettings, TrainPlan]):
    """``splits/<dataset>/`` -> ``runs/<run-id>/``: a trained classifier with its checkpoint, metrics and plots."""

    name = STAGE_NAME
    settings_type = TrainSettings
    artifacts = (REPORT,)

    def plan(self, settings: TrainSettings, store: Store) -> TrainPlan:
        split_prefix = splits_prefix(settings.dataset)
        split = read_split(store, settings.dataset, settings.fold)
        check_split(split, split_prefix)
        params = {**settings.result_params(), "classes": list(split.classes)}
        run_id = settings.run_id or derive_run_id(
            settings.dataset, params, {split_prefix: split.manifest.content_sha256}
        )
        set_context(run_id=run_id)
        return TrainPlan(
            prefix=run_prefix(run_id), params=params, inputs={split_prefix: split.manifest}, split=split, run_id=run_id
        )

    def produce(self, settings: TrainSettings, job: StageJob[TrainPlan]) -> dict[str, Any]:
        fit = _fit(settings, job)
        return _write_outputs(settings, job, fit)

    def describe(self, manifest: Manifest) -> str:
        s = manifest.summary
        return (
            f"run sealed at {manifest.prefix}: best epoch {s['best_epoch']}, val accuracy {s.get('val_accuracy')}, "
            f"test accuracy {s.get('test_accuracy')}"
        )


def _fit(settings: TrainSettings, job: StageJob[TrainPlan]) -> _Fit:
    """Decode the split once, then train (resuming a checkpoint when asked) and score the best model."""
    from jobs.train.checkpoint import TrainState, restore, save_checkpoint
    from jobs.train.loop import Trainer, pick_hardware

    store, writer, split = job.store, job.writer, job.plan.split
    hardware = pick_hardware(settings.device, settings.amp)
    # Fail on a missing or foreign checkpoint before spending minutes decoding images.
    payload = _checkpoint_to_resume(settings, store, writer)
    prep = Preprocessing(image_size=settings.image_size, percentiles=settings.percentiles)
    sets, in_channels = load_images(
        store,
        split,
        prep,
        settings.cache_dir,
        workers=settings.workers if settings.workers > 0 else usable_cpus(),
        max_unreadable=settings.max_unreadable,
    )
    _check_usable(sets, split, splits_prefix(settings.dataset))
    prep = replace(prep, channels=in_channels)
    log.info(
        "training %s on %s (%s, amp %s): %d train / %d val / %d test images, %d classes, %d channel(s)",
        settings.model, hardware.device.type, hardware.name, hardware.describe()["amp"],
        len(sets["train"]), len(sets["val"]), len(sets["test"]), len(split.classes), in_channels,
    )  # fmt: skip
    writer.begin()  # checkpoints are written under the prefix from the first epoch on
    trainer = Trainer(settings, sets, split.classes, in_channels, hardware)
    state = restore(payload, **trainer.components()) if payload is not None else TrainState()
    if payload is not None:
        log.info("resuming %s after epoch %d", writer.prefix, state.epoch)

    def checkpoint(current: TrainState) -> None:
        save_checkpoint(store, writer.prefix, cache_key=writer.cache_key, state=current, **trainer.components())
        record_epoch({**current.history[-1], **current.timings[-1]}, images=len(trainer.sets["train"]))

    state = trainer.fit(state, checkpoint)
    last_state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    best_state = state.best_state if state.best_state is not None else last_state
    trainer.model.load_state_dict(best_state)
    results = {name: trainer.evaluate(name) for name in ("val", "test") if len(sets[name])}
    if "test" not in results:
        log.warning("the test split is empty: test metrics are not reported")
    predictions = {name: (sets[name].keys, *trainer.predict(name)[:2]) for name in results}
    return _Fit(trainer, state, prep, in_channels, results, best_state, last_state, predictions)


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


def _flat_scores(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``val_accuracy``, ``test_auc``… and each split's loss; ``None`` for a split that was not scored."""
    flat: dict[str, Any] = {}
    for name in ("val", "test"):
        if name in results:
            flat.update(flat_metrics(name, results[name]))
            flat[f"{name}_loss"] = round(results[name]["loss"], 6)
        else:
            flat.update({f"{name}_{m}": None for m in (*HEADLINE, "loss")})
    return flat


def _performance(fit: _Fit) -> dict[str, Any]:
    """Throughput of this process: it varies between runs, so it goes into the summary, never a sealed output."""
    epochs = fit.state.timings

    def mean(key: str, digits: int) -> float:
        return round(float(np.mean([h[key] for h in epochs])), digits) if epochs else 0

    return {
        **fit.trainer.hardware.describe(),
        "images_per_s": mean("images_per_s", 1),
        "data_wait_fraction": mean("data_wait_fraction", 4),
        "loader_workers": fit.trainer.workers,
    }


def _run_config(settings: TrainSettings, job: StageJob[TrainPlan], fit: _Fit) -> dict[str, Any]:
    """``config.json``: what the run was trained with and on, enough to rebuild the network and its inputs."""
    split = job.plan.split
    return {
        **settings.result_params(),
        "dataset": settings.dataset,
        "run_id": job.plan.run_id,
        "in_channels": fit.in_channels,
        "num_classes": len(split.classes),
        "classes": list(split.classes),
        "preprocessing": fit.prep.to_dict(),
        "train_images": len(fit.trainer.sets["train"]),
        "class_counts": class_counts(fit.trainer.sets["train"].labels, len(split.classes)),
        "split_manifest_sha256": split.manifest.content_sha256,
        "code_version": code_version(),
    }


def _evaluation(
    settings: TrainSettings, job: StageJob[TrainPlan], fit: _Fit
) -> tuple[dict[str, Any], dict[str, Scored]]:
    """Intervals, calibration, operating points and subgroups for ``metrics.json`` (``jobs.train.assessment``),
    and the scored splits they were computed from."""
    split = job.plan.split
    scored = join_items(job.store, split.manifest, fit.predictions)
    options = EvaluationOptions(
        resamples=settings.bootstrap_resamples,
        seed=settings.seed,
        calibrate=settings.calibrate,
        specificity=settings.specificity,
        min_subgroup=settings.min_subgroup,
    )
    return assess(scored, split.classes, options), scored


def _split_stats(job: StageJob[TrainPlan]) -> dict[str, Any] | None:
    """The split's ``stats.json`` (verified) for the report, if the split has one."""
    manifest = job.plan.split.manifest
    if not any(o.key == manifest.prefix + "stats.json" for o in manifest.outputs):
        return None
    return json.loads(read_output(job.store, manifest, "stats.json"))


def _write_outputs(settings: TrainSettings, job: StageJob[TrainPlan], fit: _Fit) -> dict[str, Any]:
    """Write the run's sealed outputs; returns the manifest's summary."""
    from jobs.train.checkpoint import CHECKPOINT_NAME
    from jobs.train.plots import confusion_matrices, training_curves
    from jobs.train.report import render_report

    writer, state = job.writer, fit.state
    flat = _flat_scores(fit.results)
    sections, scored = _evaluation(settings, job, fit)
    metrics = {
        **flat,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped,
        "monitor": settings.monitor,
        "details": {name: r["details"] for name, r in fit.results.items()},
        **sections,
    }
    writer.put_bytes("best_model.pt", _state_bytes(fit.best_state))
    writer.put_bytes("last_model.pt", _state_bytes(fit.last_state))
    writer.record(writer.store.head(writer.prefix + CHECKPOINT_NAME))
    config = _run_config(settings, job, fit)
    writer.put_bytes("config.json", pretty_json(config))
    writer.put_bytes("history.json", pretty_json(state.history))
    writer.put_bytes("metrics.json", pretty_json(metrics))
    writer.put_bytes(PREDICTIONS, predictions_bytes(scored, job.plan.split.classes))
    report = render_report(
        run_id=job.plan.run_id,
        config=config,
        metrics=metrics,
        history=state.history,
        scored=scored,
        split_stats=_split_stats(job),
    )
    writer.put_bytes(REPORT, report)
    writer.put_bytes("training_curves.png", training_curves(state.history, settings.monitor))
    writer.put_bytes("confusion_matrix.png", confusion_matrices(metrics["details"]))
    record_final(flat)
    return {
        "run_id": job.plan.run_id,
        "model": settings.model,
        "device": f"{fit.trainer.hardware.device.type} ({fit.trainer.hardware.name})",
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        **{k: v for k, v in flat.items() if k.startswith(("val_", "test_")) and not k.endswith("_loss")},
        "performance": _performance(fit),
    }


STAGE = TrainStage()


def run(settings: TrainSettings) -> StageResult:
    """Train (or find the cached run): the run's manifest, and whether it was a cache hit."""
    return STAGE.execute(settings)
