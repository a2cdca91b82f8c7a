"""The train stage: a sealed split in, a trained model with honest metrics out under ``runs/<run-id>/``.

``run(settings)`` reads ``splits/<dataset>/`` through its manifest, decodes every item once into the local cache,
trains with per-epoch checkpoints in the store, scores the best model on val and test, and seals the run with
``_SUCCESS.json``: ``best_model.pt``, ``last_model.pt``, ``checkpoints/last.pt``, ``metrics.json``,
``history.json``, ``config.json``, ``training_curves.png`` and the task's picture: ``confusion_matrix.png``
(classification), ``finding_auc.png`` (multilabel, whose thresholds are chosen on val and applied to test) or
``overlays.png`` (segmentation: a few val cases with truth and prediction outlined); ``predictions.json`` and
``report.html``. The metrics carry patient-bootstrap intervals, calibration, operating points and subgroups for
classification, per-finding AUC intervals for multilabel and a Dice interval for segmentation, with what does not
apply recorded (``jobs.train.assessment``); ``report.html`` shows them (``jobs.train.report``).
With ``--init`` the run starts from those weights (``jobs.train.init_weights``): their source and SHA-256 are part of
the run's parameters (the cache key) and of ``config.json``'s ``init``, which register carries into the lineage.

On several processes (``--nproc-per-node``, torchrun) rank 0 runs all of the above and the others only train and
score their share, reading the store but never writing it (``jobs.train.distributed``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from jobs.core.cpus import openmp_wait, usable_cpus
from jobs.core.errors import DataError, IrmsiaError
from jobs.core.hashing import pretty_json
from jobs.core.logs import set_context
from jobs.core.manifest import Manifest, StageWriter, code_version, compute_cache_key, read_manifest, read_output
from jobs.core.paths import run_prefix, splits_prefix
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Store, open_store
from jobs.ml.predictions import PREDICTIONS, Scored, predictions_bytes
from jobs.ml.preprocess import Preprocessing
from jobs.train.assessment import (
    EvaluationOptions,
    assess,
    assess_multilabel,
    assess_segmentation,
    join_items,
    patients_of,
)
from jobs.train.cache import ImageSet, label_values, load_images
from jobs.train.data import Split, check_split, class_counts, missing_classes, read_split
from jobs.train.distributed import (
    CACHED,
    FAILED,
    TRAIN,
    PeerFailed,
    ProcessGroup,
    ReadOnlyStore,
    World,
    check_world,
    world_from_env,
)
from jobs.train.init_weights import InitSource, resolve_init
from jobs.train.report import REPORT
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


def _check_usable(sets: dict[str, ImageSet], split: Split, classes: tuple[str, ...], where: str) -> None:
    """After unreadable images were skipped the split must still be trainable."""
    for name in ("train", "val"):
        if not len(sets[name]):
            raise DataError(f"{where}: no readable images left in the {name} split")
    if split.task == "segmentation" and len(classes) < 2:
        raise DataError(f"{where}: every mask holds the one value {classes}; segmentation needs a foreground")
    missing = missing_classes(split.task, classes, sets["train"].labels)
    if missing:
        raise DataError(f"{where}: class(es) {missing} have no readable training images; fix the images")


def segmentation_classes(values: list[int]) -> tuple[str, ...]:
    """Names of the mask values in class order: 0 is background; one other value is the foreground."""
    if len(values) == 2 and values[0] == 0:
        return ("background", "foreground")
    return tuple("background" if v == 0 else f"label {v}" for v in values)


def preprocessing(settings: TrainSettings) -> Preprocessing:
    """What the run decodes its inputs with (before the channel count is known)."""
    return Preprocessing(
        image_size=settings.image_size,
        percentiles=settings.percentiles,
        dims=settings.dims,
        depth=settings.depth,
        slices=settings.slices,
        window=settings.window,
        spacing=settings.spacing,
    )


@dataclass(frozen=True, kw_only=True)
class TrainPlan(StagePlan):
    """The sealed split a run trains on, and the run it becomes."""

    split: Split
    run_id: str
    init: InitSource | None = None
    """The weights ``--init`` names, resolved (with their SHA-256) while planning."""


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
    classes: tuple[str, ...]
    extra: dict[str, Any]
    """Task facts for ``config.json``: multi-label thresholds, segmentation label values."""
    predictions: dict[str, tuple[tuple[str, ...], np.ndarray, np.ndarray]]
    """Per scored split: item names, labels and class (finding) probabilities of the best model; none for
    segmentation."""


class TrainStage(PlannedStage[TrainSettings, TrainPlan]):
    """``splits/<dataset>/`` -> ``runs/<run-id>/``: a trained classifier with its checkpoint, metrics and plots."""

    name = STAGE_NAME
    settings_type = TrainSettings
    artifacts = (REPORT,)

    def plan(self, settings: TrainSettings, store: Store) -> TrainPlan:
        split_prefix = splits_prefix(settings.dataset)
        split = read_split(store, settings.dataset, settings.task, settings.dims, settings.slices, settings.fold)
        check_split(split, split_prefix)
        params = {**settings.result_params(), "classes": list(split.classes)}
        init = resolve_init(settings.init, store, settings.model) if settings.init else None
        if init is not None:  # only then: runs without --init keep the cache keys they had
            params["init"] = init.record()
        run_id = settings.run_id or derive_run_id(
            settings.dataset, params, {split_prefix: split.manifest.content_sha256}
        )
        set_context(run_id=run_id)
        return TrainPlan(
            prefix=run_prefix(run_id),
            params=params,
            inputs={split_prefix: split.manifest},
            split=split,
            run_id=run_id,
            init=init,
        )

    def execute(self, settings: TrainSettings) -> StageResult:
        """One process: the stage as every stage runs. Rank 0 of several (the leader): the same, telling the
        followers whether it trains (``produce``), found the run sealed, or failed before training. With
        ``--aggregate-folds``: aggregate the fold runs instead (``jobs.train.crossval``)."""
        if settings.aggregate_folds:
            from jobs.train.crossval import CROSS_VALIDATION  # it plans each fold through this stage

            return CROSS_VALIDATION.execute(settings)
        if settings.sealed_only:
            return self._sealed(settings)
        world = world_from_env()
        if not world.distributed:
            return super().execute(settings)
        check_world(world, settings.batch_size)
        with ProcessGroup(world, _uses_cuda(settings)):
            self._world = world
            try:
                result = super().execute(settings)
            except BaseException:
                with contextlib.suppress(Exception):  # a follower already gone must not hide the error itself
                    world.announce(FAILED)
                raise
            finally:
                self._world = World()
            world.announce(CACHED)
            return result

    def _sealed(self, settings: TrainSettings) -> StageResult:
        """``--sealed-only``: the sealed run as a cache hit, or ``DataError`` when the training job left none."""
        store = open_store(settings.common.store, s3=settings.common.s3)
        plan = self.plan(settings, store)
        inputs = {prefix: m.content_sha256 for prefix, m in plan.inputs.items()}
        hit = StageWriter(store, self.name, plan.prefix, plan.params, inputs).cached()
        if hit is None:
            raise DataError(
                f"--sealed-only: {store.uri}/{plan.prefix} is not sealed with these settings; the training job did "
                "not finish: read its pods' logs, then rerun the workflow (it resumes from the last checkpoint)"
            )
        self.log.info("%s", self.describe(hit))
        return StageResult(hit, True)

    def follow(self, settings: TrainSettings) -> None:
        """Rank > 0: plan from the store (reading only), then train and score this rank's share when the leader
        trains; nothing is written (the store refuses writes)."""
        world = world_from_env()
        check_world(world, settings.batch_size)
        with ProcessGroup(world, _uses_cuda(settings)):
            store = ReadOnlyStore(open_store(settings.common.store, s3=settings.common.s3))
            plan, error = None, None
            try:
                plan = self.plan(settings, store)
            except IrmsiaError as exc:  # rank 0 most likely failed the same way: its word first, it reports
                error = exc
            decision = world.await_leader()
            if decision != TRAIN:
                log.info("process %d: rank 0 %s; nothing to train", world.rank,
                         "found the run sealed" if decision == CACHED else "failed")  # fmt: skip
                return
            if error is not None or plan is None:
                raise error or PeerFailed("no plan")
            inputs = {prefix: m.content_sha256 for prefix, m in plan.inputs.items()}
            writer = StageWriter(store, self.name, plan.prefix, plan.params, inputs)
            _fit(settings, StageJob(store, writer, plan), world)

    _world: World = World()
    """The leader's world while ``execute`` runs (``produce`` announces training to it); one process otherwise."""

    def produce(self, settings: TrainSettings, job: StageJob[TrainPlan]) -> dict[str, Any]:
        self._world.announce(TRAIN)
        fit = _fit(settings, job, self._world)
        return _write_outputs(settings, job, fit)

    def describe(self, manifest: Manifest) -> str:
        s = manifest.summary
        name = {"segmentation": "dice", "multilabel": "auc"}.get(s.get("task", "classification"), "accuracy")
        return (
            f"run sealed at {manifest.prefix}: best epoch {s['best_epoch']}, val {name} {s.get(f'val_{name}')}, "
            f"test {name} {s.get(f'test_{name}')}"
        )


def _uses_cuda(settings: TrainSettings) -> bool:
    from jobs.train.loop import pick_hardware

    return pick_hardware(settings.device, settings.amp).cuda


def _fit(settings: TrainSettings, job: StageJob[TrainPlan], world: World | None = None) -> _Fit:
    """Decode the split once, then train (resuming a checkpoint when asked) and score the best model. With several
    processes every rank runs this; only the leader writes (checkpoints) and the followers' store refuses writes."""
    from jobs.train.checkpoint import TrainState, restore, save_checkpoint
    from jobs.train.loop import Trainer, pick_hardware

    world = world or World()
    store, writer, split = job.store, job.writer, job.plan.split
    hardware = pick_hardware(settings.device, settings.amp)
    # Fail on a missing or foreign checkpoint before spending minutes decoding images. Every rank reads the same
    # checkpoint: the leader writes the next one only after the cache rendezvous below, which the others pass
    # after reading it.
    payload = _checkpoint_to_resume(settings, store, writer)
    init = None
    if job.plan.init is not None:  # read (and fail on a bad file) before decoding too
        from jobs.train.init_weights import read_state

        init = (job.plan.init, read_state(job.plan.init, store))
    prep = preprocessing(settings)
    sets, in_channels = world.local_first(
        lambda: load_images(
            store,
            split,
            prep,
            settings.cache_dir,
            workers=settings.workers if settings.workers > 0 else usable_cpus(),
            max_unreadable=settings.max_unreadable,
        ),
        "decoding the split into the local cache",
    )
    classes, extra = split.classes, dict[str, Any]()
    if split.task == "segmentation":
        values = label_values(settings.cache_dir, split, prep)
        classes, extra = segmentation_classes(values), {"label_values": values}
    _check_usable(sets, split, classes, splits_prefix(settings.dataset))
    prep = replace(prep, channels=in_channels)
    log.info(
        "training %s (%s, %d-D) on %s (%s, amp %s): %d train / %d val / %d test items, %d classes, %d channel(s)",
        settings.model, settings.task, settings.dims, hardware.device.type, hardware.name,
        hardware.describe()["amp"], len(sets["train"]), len(sets["val"]), len(sets["test"]), len(classes),
        in_channels,
    )  # fmt: skip
    if world.leader:
        writer.begin()  # checkpoints are written under the prefix from the first epoch on
    trainer = Trainer(settings, sets, classes, in_channels, hardware, world=world, init=init)
    state = restore(payload, **trainer.components()) if payload is not None else TrainState()
    if payload is not None:
        log.info("resuming %s after epoch %d", writer.prefix, state.epoch)

    def checkpoint(current: TrainState) -> None:
        if not world.leader:
            return
        save_checkpoint(store, writer.prefix, cache_key=writer.cache_key, state=current, **trainer.components())
        record_epoch({**current.history[-1], **current.timings[-1]}, images=len(trainer.sets["train"]))

    state = trainer.fit(state, checkpoint)
    last_state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    best_state = state.best_state if state.best_state is not None else last_state
    trainer.model.load_state_dict(best_state)
    results = {"val": trainer.evaluate("val")}
    if split.task == "multilabel":  # thresholds chosen on val, then applied unchanged to test
        extra["thresholds"] = results["val"]["details"]["thresholds"]
    if len(sets["test"]):
        results["test"] = trainer.evaluate("test", extra.get("thresholds"))
    else:
        log.warning("the test split is empty: test metrics are not reported")
    predictions = {}
    if split.task != "segmentation":
        predictions = {name: (sets[name].keys, sets[name].labels, trainer.task.predict(trainer, name)[0])
                       for name in results}  # fmt: skip
    return _Fit(trainer, state, prep, in_channels, results, best_state, last_state, classes, extra, predictions)


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


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)


def _flat_scores(results: dict[str, dict[str, Any]], headline: tuple[str, ...]) -> dict[str, Any]:
    """``val_accuracy``, ``test_auc``, ``val_dice``… and each split's loss; ``None`` for a split not scored."""
    flat: dict[str, Any] = {}
    for name in ("val", "test"):
        for metric in (*headline, "loss"):
            flat[f"{name}_{metric}"] = _round(results[name][metric]) if name in results else None
    return flat


def _performance(fit: _Fit) -> dict[str, Any]:
    """Throughput of this process: it varies between runs, so it goes into the summary, never a sealed output."""
    import torch

    epochs = fit.state.timings

    def mean(key: str, digits: int) -> float:
        return round(float(np.mean([h[key] for h in epochs])), digits) if epochs else 0

    return {
        **fit.trainer.hardware.describe(),
        "channels_last": fit.trainer.channels_last,
        "threads": torch.get_num_threads(),
        "openmp_wait": openmp_wait(os.environ),
        "images_per_s": mean("images_per_s", 1),
        "data_wait_fraction": mean("data_wait_fraction", 4),
        "loader_workers": fit.trainer.workers,
        **fit.trainer.data_path,
        **fit.trainer.compiled.describe(),
    }


def _run_config(settings: TrainSettings, job: StageJob[TrainPlan], fit: _Fit) -> dict[str, Any]:
    """``config.json``: what the run was trained with and on, enough to rebuild the network and its inputs."""
    split = job.plan.split
    train = fit.trainer.sets["train"]
    counts = class_counts(train.labels, len(fit.classes)) if split.task != "segmentation" else None
    return {
        **settings.result_params(),
        "dataset": settings.dataset,
        "run_id": job.plan.run_id,
        "in_channels": fit.in_channels,
        "num_classes": len(fit.classes),
        "classes": list(fit.classes),
        "preprocessing": fit.prep.to_dict(),
        "train_images": len(train),
        "class_counts": counts,
        **fit.extra,
        **_init_config(job.plan.init, fit),
        "split_manifest_sha256": split.manifest.content_sha256,
        "code_version": code_version(),
    }


def _init_config(init: InitSource | None, fit: _Fit) -> dict[str, Any]:
    """``config.json``'s ``init``: where the weights came from and which head tensors were re-initialised (none
    without ``--init``, so other runs' configs are as they were)."""
    if init is None:
        return {}
    return {"init": {**init.record(), "reinitialised": list(fit.trainer.reinitialised)}}


def _evaluation(
    settings: TrainSettings, job: StageJob[TrainPlan], fit: _Fit
) -> tuple[dict[str, Any], dict[str, Scored]]:
    """The task's evaluation sections for ``metrics.json`` (``jobs.train.assessment``): for classification
    intervals, calibration, operating points and subgroups; for multilabel per-finding AUC intervals; for
    segmentation the Dice interval; each with what does not apply. Also the scored splits (none for segmentation)."""
    split = job.plan.split
    options = EvaluationOptions(
        resamples=settings.bootstrap_resamples,
        seed=settings.seed,
        calibrate=settings.calibrate,
        specificity=settings.specificity,
        min_subgroup=settings.min_subgroup,
    )
    if split.task == "segmentation":
        cases = {}
        for name, result in fit.results.items():
            per_case = result["details"]["per_case"]
            keys = [case["key"] for case in per_case]
            dice = [[d for d in case["dice"].values() if d is not None] for case in per_case]
            cases[name] = (dice, patients_of(job.store, split.manifest, keys))
        return assess_segmentation(cases, options), {}
    scored = join_items(job.store, split.manifest, fit.predictions)
    if split.task == "multilabel":
        return assess_multilabel(scored, split.classes, options), scored
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
    from jobs.train.plots import task_picture, training_curves
    from jobs.train.report import render_report

    writer, state = job.writer, fit.state
    flat = _flat_scores(fit.results, fit.trainer.task.headline)
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
    if scored:
        writer.put_bytes(PREDICTIONS, predictions_bytes(scored, fit.classes, settings.task))
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
    name, picture = task_picture(fit.trainer, metrics["details"])
    writer.put_bytes(name, picture)
    record_final(flat)
    return {
        "run_id": job.plan.run_id,
        "task": settings.task,
        "dims": settings.dims,
        "model": settings.model,
        "device": f"{fit.trainer.hardware.device.type} ({fit.trainer.hardware.name})",
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        **({"init": job.plan.init.source} if job.plan.init is not None else {}),
        **{k: v for k, v in flat.items() if k.startswith(("val_", "test_")) and not k.endswith("_loss")},
        "performance": _performance(fit),
    }


STAGE = TrainStage()


def run(settings: TrainSettings) -> StageResult:
    """Train (or find the cached run): the run's manifest, and whether it was a cache hit."""
    return STAGE.execute(settings)


def follow_main(argv: Sequence[str]) -> int:
    """A follower process (rank > 0): settings, logs, ``TrainStage.follow``; no result file and no metrics (rank
    0 owns both). A usage or data error is rank 0's to report too: it is logged here and the exit code returned."""
    from jobs.core.logs import setup_logging

    env = dict(os.environ)
    try:
        settings = STAGE.parse(argv, env)
    except IrmsiaError as exc:
        return int(exc.exit_code)
    common = settings.common
    # Warnings and errors only: the leader logs the run, N copies of every epoch line would bury it.
    setup_logging(STAGE.name, common.log_format, "WARNING", workflow_id=common.workflow_id,
                  **settings.log_fields(), rank=env.get("RANK"))  # fmt: skip
    try:
        STAGE.follow(settings)
    except IrmsiaError as exc:
        log.error("process %s: %s", env.get("RANK"), exc)
        return int(exc.exit_code)
    return 0
