"""The opt-in speed-ups: the device cache trains on the very same batches (images, volumes, segmentation masks),
the LR scales with the batch, and torch.compile trains like eager (2-D and 3-D), records its compile time and falls
back to eager when compilation fails."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.core.cpus import usable_cpus
from jobs.core.errors import UsageError
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from jobs.ml.preprocess import Preprocessing
from jobs.train.acceleration import DeviceBatches, scaled_lr
from jobs.train.cache import load_images
from jobs.train.checkpoint import TrainState
from jobs.train.data import read_split
from jobs.train.loop import Trainer, pick_hardware
from jobs.train.settings import TrainSettings
from tests.support.synthetic_split import write_split
from tests.support.task_trainers import TASK_DATASETS, task_trainer

REPO = Path(__file__).resolve().parents[3]


def _trainer(tmp_path, fast_settings, **overrides) -> Trainer:
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    if not store.exists("splits/tiny/_SUCCESS.json"):
        write_split(store, "tiny")
    settings = fast_settings(store_uri, **overrides)
    split = read_split(store, "tiny")
    sets, channels = load_images(
        store, split, Preprocessing(image_size=32), settings.cache_dir, workers=1, max_unreadable=0.0
    )
    return Trainer(settings, sets, split.classes, channels, pick_hardware("cpu", "off"))


def _fit(trainer: Trainer) -> tuple[list[dict], dict[str, torch.Tensor]]:
    state = trainer.fit(TrainState(), on_epoch=lambda s: None)
    return state.history, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_device_cache_trains_on_the_same_batches_bit_for_bit(tmp_path, fast_settings):
    # GIVEN two runs of the same settings, one gathering batches from the loader, one from the split held in memory
    plain = _trainer(tmp_path, fast_settings)
    cached = _trainer(tmp_path, fast_settings, device_cache="on")
    # WHEN both train
    history_plain, weights_plain = _fit(plain)
    history_cached, weights_cached = _fit(cached)
    # THEN the cached run really iterates the in-memory split, and learns exactly what the loader run learns
    assert isinstance(cached.train_batches, DeviceBatches) and cached.data_path["device_cache"] is True
    assert plain.data_path == {"device_cache": False, "prefetch": False}
    assert len(cached.train_batches) == len(plain.train_loader)
    assert history_cached == history_plain
    assert all(torch.equal(weights_plain[k], weights_cached[k]) for k in weights_plain)


@pytest.mark.parametrize(("demo", "task", "dims", "model", "size"), TASK_DATASETS, ids=[c[0] for c in TASK_DATASETS])
def test_device_cache_trains_volumes_and_masks_on_the_same_batches(tmp_path, fast_settings, demo, task, dims, model,
                                                                   size):  # fmt: skip
    # GIVEN a 3-D or segmentation run from the loader, and the same run with the split (masks included) in memory
    plain = task_trainer(tmp_path, fast_settings, demo, task, dims, model, size)
    cached = task_trainer(tmp_path, fast_settings, demo, task, dims, model, size, device_cache="on")
    # WHEN both train
    history_plain, weights_plain = _fit(plain)
    history_cached, weights_cached = _fit(cached)
    # THEN the cached run holds the labels (a segmentation split's masks) in memory it owns, not the read-only map
    assert isinstance(cached.train_batches, DeviceBatches)
    labels = cached.train_batches.labels
    assert tuple(labels.shape) == cached.sets["train"].labels.shape
    assert not np.shares_memory(labels.numpy(), cached.sets["train"].labels)
    # AND it learns exactly what the loader run learns
    assert history_cached == history_plain
    assert all(torch.equal(weights_plain[k], weights_cached[k]) for k in weights_plain)


def test_prefetch_is_a_no_op_on_cpu(tmp_path, fast_settings):
    # GIVEN --prefetch on a CPU run  WHEN the trainer is built  THEN it iterates the plain loader
    trainer = _trainer(tmp_path, fast_settings, prefetch=True)
    assert trainer.train_batches is trainer.train_loader and trainer.data_path["prefetch"] is False


@pytest.mark.parametrize(
    ("lr", "batch", "base", "expected"),
    [
        (1e-3, 32, 0, 1e-3),  # 0: no scaling
        (1e-3, 128, 32, 4e-3),  # 4x the batch: 4x the rate
        (1e-3, 16, 32, 5e-4),
        (2e-3, 32, 32, 2e-3),
    ],
)
def test_linear_lr_scaling(lr, batch, base, expected):
    assert scaled_lr(lr, batch, base) == pytest.approx(expected)


def test_the_optimiser_starts_from_the_scaled_rate(tmp_path, fast_settings):
    # GIVEN batch 16 with --lr 1e-3 meant for batch 8
    trainer = _trainer(tmp_path, fast_settings, batch_size=16, lr=1e-3, lr_base_batch=8)
    # THEN the warm-up/cosine schedule is built on 2e-3
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(2e-3)


@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        ([], "compile", "off"),
        (["--compile", "reduce-overhead"], "compile", "reduce-overhead"),
        ([], "device_cache", "off"),
        (["--device-cache", "auto"], "device_cache", "auto"),
        ([], "prefetch", False),
        (["--prefetch"], "prefetch", True),
        ([], "lr_base_batch", 0),
        (["--lr-base-batch", "256"], "lr_base_batch", 256),
    ],
)
def test_acceleration_flags(argv, field, expected):
    settings = TrainSettings.parse(["--dataset", "d", *argv], env={})
    assert getattr(settings, field) == expected


@pytest.mark.parametrize("argv", [["--compile", "fast"], ["--device-cache", "gpu"], ["--lr-base-batch", "-1"]], ids=str)
def test_bad_acceleration_flags_are_usage_errors(argv):
    with pytest.raises((UsageError, SystemExit)) as info:
        TrainSettings.parse(["--dataset", "d", *argv], env={})
    if info.type is SystemExit:
        assert info.value.code == 2


def test_compile_result_options_change_the_cache_key():
    # GIVEN the default and a compiled / LR-scaled run  THEN their result parameters differ (no false cache hit)
    base = TrainSettings.parse(["--dataset", "d"], env={}).result_params()
    for flag in (["--compile", "default"], ["--lr-base-batch", "64"]):
        assert TrainSettings.parse(["--dataset", "d", *flag], env={}).result_params() != base
    # AND the pure data-path switches do not change what is trained
    for flag in (["--device-cache", "on"], ["--prefetch"]):
        assert TrainSettings.parse(["--dataset", "d", *flag], env={}).result_params() == base


@pytest.mark.slow
def test_compiled_training_matches_eager_and_logs_its_compile_time(tmp_path, fast_settings, caplog):
    # GIVEN the same run eager and with --compile default (inductor on the CPU)
    eager = _trainer(tmp_path, fast_settings, epochs=1, augment=False)
    compiled = _trainer(tmp_path, fast_settings, epochs=1, augment=False, compile="default")
    # WHEN both train one epoch
    with caplog.at_level(logging.INFO, logger="irmsia.train.acceleration"):
        history_eager, _ = _fit(eager)
        history_compiled, _ = _fit(compiled)
    # THEN the compiled one compiled (time recorded and logged) and learned comparably: not bit for bit, since the
    # compiled graph draws its dropout masks from inductor's own generator
    info = compiled.compiled.describe()
    assert info["compiled"] is True and info["compile_fallback"] is None and info["compile_s"] > 0
    assert "first step compiled in" in caplog.text
    assert history_compiled[0]["train_loss"] == pytest.approx(history_eager[0]["train_loss"], rel=0.2)


@pytest.mark.slow
def test_compiled_3d_segmentation_trains_like_eager(tmp_path, fast_settings):
    # GIVEN a 3-D U-Net on volumes and label maps, eager and with --compile default (inductor on the CPU)
    case = TASK_DATASETS[1]
    eager = task_trainer(tmp_path, fast_settings, *case, epochs=1, augment=False)
    compiled = task_trainer(tmp_path, fast_settings, *case, epochs=1, augment=False, compile="default")
    # WHEN both train one epoch
    history_eager, _ = _fit(eager)
    history_compiled, _ = _fit(compiled)
    # THEN the 3-D forward compiled and the Dice + CE loss agrees with eager's
    info = compiled.compiled.describe()
    assert info["compiled"] is True and info["compile_fallback"] is None and info["compile_s"] > 0
    assert history_compiled[0]["train_loss"] == pytest.approx(history_eager[0]["train_loss"], rel=0.05)


@pytest.mark.slow
def test_compile_failure_falls_back_to_eager_with_a_warning(tmp_path):
    # GIVEN irmsia-train --compile default in a fresh process whose inductor points at a C++ compiler that does not
    # exist, with no compiled-graph cache to hide it (a subprocess: inductor remembers its toolchain per process)
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    argv = ["--store", store_uri, "--dataset", "tiny", "--run-id", "fallback", "--model", "small-cnn", "--epochs", "1",
            "--image-size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--compile", "default"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "CXX": "/nonexistent/g++", "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}  # fmt: skip
    # WHEN it trains
    done = subprocess.run([sys.executable, "-m", "jobs.train", *argv], env=env, capture_output=True, text=True)
    # THEN the run succeeds eagerly, says why in the log, and records the fallback in its performance summary
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch.compile (mode default) failed, training eagerly" in done.stderr
    perf = read_manifest(open_store(store_uri), "runs/fallback/").summary["performance"]
    assert perf["compile"] == "default" and perf["compiled"] is False and perf["compile_fallback"]
    assert perf["compile_s"] is None
    # AND it says how its OpenMP team ran: the usable CPUs' threads, waiting as the environment asked
    assert perf["threads"] == usable_cpus() and perf["openmp_wait"] == os.environ["OMP_WAIT_POLICY"].upper()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "options",
    [{"prefetch": True}, {"device_cache": "on"}, {"compile": "reduce-overhead"}],
    ids=["prefetch", "device-cache", "cuda-graphs"],
)
def test_cuda_speed_ups_train_like_the_default(tmp_path, fast_settings, options):
    # GIVEN the default CUDA run and one with a speed-up
    def cuda_trainer(**extra) -> Trainer:
        store_uri = str(tmp_path / "store")
        store = open_store(store_uri)
        if not store.exists("splits/tiny/_SUCCESS.json"):
            write_split(store, "tiny")
        settings = fast_settings(store_uri, device="cuda", workers=2, epochs=2, **extra)
        split = read_split(store, "tiny")
        sets, channels = load_images(store, split, Preprocessing(image_size=32), settings.cache_dir, workers=1,
                                     max_unreadable=0.0)  # fmt: skip
        return Trainer(settings, sets, split.classes, channels, pick_hardware("cuda", "auto"))

    plain, faster = cuda_trainer(), cuda_trainer(**options)
    # WHEN both train
    history_plain, _ = _fit(plain)
    history_faster, _ = _fit(faster)
    # THEN the speed-up is in effect and the losses agree within fp16/cuDNN tolerance
    if "compile" in options:
        assert faster.compiled.describe()["compiled"] is True
    else:
        assert any(faster.data_path.values())
    for a, b in zip(history_plain, history_faster, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)
