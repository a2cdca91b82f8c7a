"""A run killed after a checkpoint and resumed with --resume ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import io
import json

import pytest
import torch

from jobs.core.errors import UsageError
from jobs.core.store import open_store
from jobs.train import loop
from jobs.train.stage import run
from tests.support.synthetic_split import write_split

TIMING = {"images_per_s", "data_wait_fraction", "epoch_s"}


def _weights(store, key: str) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(store.get_bytes(key)), weights_only=True)


def _deterministic(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def test_resume_after_a_kill_equals_an_uninterrupted_run(store_uri, fast_settings, monkeypatch):
    store = open_store(store_uri)
    write_split(store, "tiny")
    # GIVEN an uninterrupted three-epoch run
    run(fast_settings(store_uri, run_id="whole", epochs=3))
    # AND the same run killed during epoch 3 (after the epoch-2 checkpoint reached the store)
    original = loop.Trainer.train_epoch

    def dies_in_epoch_3(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt("preempted")
        return original(self, epoch)

    monkeypatch.setattr(loop.Trainer, "train_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(fast_settings(store_uri, run_id="killed", epochs=3))
    assert not store.exists("runs/killed/_SUCCESS.json")
    assert store.exists("runs/killed/checkpoints/last.pt")
    monkeypatch.setattr(loop.Trainer, "train_epoch", original)
    # WHEN the killed run is resumed in a fresh trainer
    manifest, cached = run(fast_settings(store_uri, run_id="killed", epochs=3, resume=True))
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
    for m in metrics:
        m.pop("performance")
    assert metrics[0] == metrics[1]


def test_resume_without_a_checkpoint_is_an_error_not_a_fresh_start(tmp_path, fast_settings):
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    with pytest.raises(UsageError, match=r"--resume: no checkpoint at .*runs/never/checkpoints/last.pt"):
        run(fast_settings(store_uri, run_id="never", resume=True))
    assert not open_store(store_uri).exists("runs/never/_SUCCESS.json")


def test_resume_with_different_settings_is_refused(tmp_path, fast_settings, monkeypatch):
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    run(fast_settings(store_uri, run_id="r", epochs=1))
    with pytest.raises(UsageError, match="written with different settings"):
        run(fast_settings(store_uri, run_id="r", epochs=1, lr=0.5, resume=True))
