"""A run killed after a checkpoint and resumed with --resume ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
import torch

from jobs.core.errors import UsageError
from jobs.core.settings import CommonSettings
from jobs.core.store import open_store
from jobs.train import loop
from jobs.train.stage import run
from tests.support.synthetic_split import write_split

TIMING = {"images_per_s", "data_wait_fraction", "epoch_s"}


def _weights(store, key: str) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(store.get_bytes(key)), weights_only=True)


def _deterministic(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def _preempt_in_epoch(monkeypatch, epoch: int) -> Callable[[], None]:
    """Make the trainer die (as a preempted pod) when it starts ``epoch``; returns what puts it back."""
    original = loop.Trainer.train_epoch

    def dies(self, current):
        if current == epoch:
            raise KeyboardInterrupt("preempted")
        return original(self, current)

    monkeypatch.setattr(loop.Trainer, "train_epoch", dies)
    return lambda: monkeypatch.setattr(loop.Trainer, "train_epoch", original)


def _count_epochs(monkeypatch) -> list[int]:
    """Record which epochs the trainer trains from now on."""
    trained: list[int] = []
    original = loop.Trainer.train_epoch

    def counting(self, epoch):
        trained.append(epoch)
        return original(self, epoch)

    monkeypatch.setattr(loop.Trainer, "train_epoch", counting)
    return trained


def test_resume_after_a_kill_equals_an_uninterrupted_run(store_uri, fast_settings, monkeypatch):
    store = open_store(store_uri)
    write_split(store, "tiny")
    # GIVEN an uninterrupted three-epoch run
    run(fast_settings(store_uri, run_id="whole", epochs=3))
    # AND the same run killed during epoch 3 (after the epoch-2 checkpoint reached the store)
    restore_trainer = _preempt_in_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(fast_settings(store_uri, run_id="killed", epochs=3))
    assert not store.exists("runs/killed/_SUCCESS.json")
    assert store.exists("runs/killed/checkpoints/last.pt")
    restore_trainer()
    # WHEN the killed run is resumed in a fresh trainer
    manifest, cached = run(fast_settings(store_uri, run_id="killed", epochs=3, resume="required"))
    # THEN weights, history and metrics equal the uninterrupted run's
    assert not cached and manifest.summary["epochs_run"] == 3
    for name in ("last_model.pt", "best_model.pt"):
        whole, resumed = _weights(store, f"runs/whole/{name}"), _weights(store, f"runs/killed/{name}")
        assert whole.keys() == resumed.keys()
        for key in whole:
            torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6)
    history = [json.loads(store.get_bytes(f"runs/{r}/history.json")) for r in ("whole", "killed")]
    assert _deterministic(history[0]) == _deterministic(history[1])
    metrics = [json.loads(store.get_bytes(f"runs/{r}/metrics.json")) for r in ("whole", "killed")]
    assert metrics[0] == metrics[1]


def test_resume_without_a_checkpoint_is_an_error_not_a_fresh_start(tmp_path, fast_settings):
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    with pytest.raises(UsageError, match=r"--resume: no checkpoint at .*runs/never/checkpoints/last.pt"):
        run(fast_settings(store_uri, run_id="never", resume="required"))
    assert not open_store(store_uri).exists("runs/never/_SUCCESS.json")


def test_resume_with_different_settings_is_refused(tmp_path, fast_settings, monkeypatch):
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    run(fast_settings(store_uri, run_id="r", epochs=1))
    with pytest.raises(UsageError, match="written with different settings"):
        run(fast_settings(store_uri, run_id="r", epochs=1, lr=0.5, resume="required"))


def test_resume_auto_continues_an_unfinished_run_and_starts_fresh_without_one(tmp_path, fast_settings, monkeypatch):
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    write_split(store, "tiny")
    # GIVEN a run killed in epoch 2, after the epoch-1 checkpoint
    restore_trainer = _preempt_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(fast_settings(store_uri, run_id="killed", epochs=2))
    restore_trainer()
    trained = _count_epochs(monkeypatch)
    # WHEN it is retried with --resume auto THEN only epoch 2 is trained, and the run is sealed
    manifest, cached = run(fast_settings(store_uri, run_id="killed", epochs=2, resume="auto"))
    assert (trained, cached, manifest.summary["epochs_run"]) == ([2], False, 2)
    # WHEN a run with no checkpoint gets --resume auto THEN it starts fresh instead of failing
    trained.clear()
    run(fast_settings(store_uri, run_id="fresh", epochs=2, resume="auto"))
    assert trained == [1, 2]


def test_resume_auto_on_a_finished_run_is_a_cache_hit_and_force_retrains(tmp_path, fast_settings, monkeypatch):
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    # GIVEN a finished run (its last checkpoint stays in the store)
    first, _ = run(fast_settings(store_uri, run_id="done", epochs=2))
    trained = _count_epochs(monkeypatch)
    # WHEN rerun with --resume auto THEN it is a cache hit
    again, cached = run(fast_settings(store_uri, run_id="done", epochs=2, resume="auto"))
    assert cached and again.content_sha256 == first.content_sha256 and trained == []
    # WHEN forced with --resume auto THEN every epoch is trained again (not resumed from the final checkpoint)
    _, cached = run(
        fast_settings(
            store_uri, run_id="done", epochs=2, resume="auto", common=CommonSettings(store=store_uri, force=True)
        )
    )
    assert not cached and trained == [1, 2]


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_matches(tmp_path, fast_settings):
    """A real ``kill -9`` of the stage process (a preempted pod), then ``irmsia-train --resume``."""
    import os
    import signal
    import subprocess
    import sys
    import time

    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    write_split(store, "tiny", counts={"train": 48, "val": 8, "test": 8})
    argv = ["--store", store_uri, "--dataset", "tiny", "--model", "small-cnn", "--epochs", "4", "--image-size", "32",
            "--batch-size", "8", "--workers", "0", "--device", "cpu", "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    cmd = [sys.executable, "-m", "jobs.train", *argv]
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "IRMSIA_LOG_FORMAT": "json"}
    # GIVEN an uninterrupted run (in this process: the same settings as the flags below)
    run(fast_settings(store_uri, run_id="whole", epochs=4, cache_dir=str(tmp_path / "c")))
    # AND a run killed with SIGKILL as soon as its first checkpoint is in the store
    proc = subprocess.Popen([*cmd, "--run-id", "killed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not store.exists("runs/killed/checkpoints/last.pt") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if store.exists("runs/killed/_SUCCESS.json"):
        pytest.skip("the run finished before it could be killed")
    # WHEN it is resumed
    resumed = subprocess.run([*cmd, "--run-id", "killed", "--resume"], env=env, capture_output=True, text=True)
    # THEN it completes from the checkpoint and ends with the uninterrupted run's weights
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming runs/killed/ after epoch" in resumed.stderr
    whole, killed = _weights(store, "runs/whole/last_model.pt"), _weights(store, "runs/killed/last_model.pt")
    for key in whole:
        torch.testing.assert_close(killed[key], whole[key], rtol=1e-5, atol=1e-6)
