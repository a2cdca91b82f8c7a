"""The training loop learns, stops early, schedules the learning rate, and augments deterministically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.core.store import open_store
from jobs.ml.preprocess import Preprocessing
from jobs.train.augment import Augmentation
from jobs.train.cache import load_images
from jobs.train.checkpoint import TrainState
from jobs.train.data import read_split
from jobs.train.loop import Trainer, class_weight_tensor, is_improvement, pick_hardware, warmup_cosine
from tests.support.synthetic_split import write_split


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


def test_training_loss_falls(tmp_path, fast_settings):
    # GIVEN a fresh small CNN on the tiny split
    trainer = _trainer(tmp_path, fast_settings, epochs=4, augment=False)
    # WHEN it trains for four epochs
    state = trainer.fit(TrainState(), on_epoch=lambda s: None)
    # THEN the training loss of the last epoch is well below the first, and validation improves on chance
    losses = [h["train_loss"] for h in state.history]
    assert len(losses) == 4
    assert losses[-1] < 0.6 * losses[0]
    assert max(h["val_auc"] for h in state.history) > 0.8
    assert [t["epoch"] for t in state.timings] == [1, 2, 3, 4]
    assert all(t["images_per_s"] > 0 and 0 <= t["data_wait_fraction"] < 1 for t in state.timings)
    assert not any("images_per_s" in h for h in state.history)  # history is sealed: no timings in it


def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path, fast_settings):
    # GIVEN a monitor that can never improve after the first epoch (min_delta larger than any loss change)
    trainer = _trainer(tmp_path, fast_settings, epochs=6, patience=2, min_delta=100.0)
    seen: list[int] = []
    # WHEN it trains
    state = trainer.fit(TrainState(), on_epoch=lambda s: seen.append(s.epoch))
    # THEN it stops after epoch 1 + patience, keeps epoch 1 as best, and checkpointed every epoch
    assert state.stopped and state.epoch == 3 and state.best_epoch == 1
    assert seen == [1, 2, 3]
    # AND a resumed state that already stopped trains no further
    assert trainer.fit(state, on_epoch=lambda s: seen.append(s.epoch)).epoch == 3


@pytest.mark.parametrize(
    ("value", "best", "monitor", "delta", "expected"),
    [
        (0.5, None, "loss", 0.0, True),
        (0.4, 0.5, "loss", 0.0, True),
        (0.5, 0.5, "loss", 0.0, False),
        (0.45, 0.5, "loss", 0.1, False),
        (0.9, 0.8, "auc", 0.0, True),
        (0.8, 0.8, "auc", 0.0, False),
        (None, None, "auc", 0.0, True),
        (None, 0.7, "auc", 0.0, False),
    ],
)
def test_is_improvement(value, best, monitor, delta, expected):
    assert is_improvement(value, best, monitor, delta) is expected


def test_warmup_then_cosine_schedule():
    f = warmup_cosine(total_steps=10, warmup_steps=2, min_ratio=0.1)
    assert [f(0), f(1)] == pytest.approx([0.5, 1.0])
    assert f(2) == pytest.approx(1.0)
    assert f(6) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert f(10) == pytest.approx(0.1)
    assert all(f(i) >= f(i + 1) for i in range(2, 10))


def test_class_weights_are_inverse_frequency():
    w = class_weight_tensor(np.array([0, 0, 0, 1]), 2)
    assert w.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])


def test_augmentation_is_seeded_and_off_means_identity():
    images = torch.rand(4, 1, 16, 16)
    aug = Augmentation(rotate_deg=20, flip_prob=0.5, zoom=0.2, noise_std=0.05, noise_prob=1.0)
    a = aug(images, torch.Generator().manual_seed(1))
    b = aug(images, torch.Generator().manual_seed(1))
    c = aug(images, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == images.shape
    identity = Augmentation(rotate_deg=0, flip_prob=0, zoom=0, noise_std=0, noise_prob=0)
    assert torch.allclose(identity(images, torch.Generator().manual_seed(1)), images)
    flipped = Augmentation(rotate_deg=0, flip_prob=1.0, zoom=0, noise_std=0)(images, torch.Generator())
    assert torch.allclose(flipped, images.flip(-1), atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 2, 12, 16, 16), (2, 1, 7, 9, 13)])
def test_3d_augmentation_matches_one_trilinear_resample(shape):
    # GIVEN volumes and label maps, and the random affines (rotation, zoom, flip) of one batch
    import torch.nn.functional as F

    images = torch.rand(shape)
    masks = (torch.rand(shape[0], *shape[2:]) * 3).long()
    aug = Augmentation(rotate_deg=25, flip_prob=0.5, zoom=0.3, noise_std=0)
    theta = aug._theta(shape[0], 3, torch.Generator().manual_seed(4), images.device)
    # WHEN the batch is augmented (in-plane, then along depth)
    out, warped = aug.pair(images, masks, torch.Generator().manual_seed(4))
    # THEN it equals one 3-D grid_sample by the same affines: trilinear images, nearest masks
    grid = F.affine_grid(theta, list(shape), align_corners=False)
    ref = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ref_masks = F.grid_sample(masks.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros",
                              align_corners=False).squeeze(1).long()  # fmt: skip
    assert torch.allclose(out, ref, atol=1e-5)
    assert warped is not None and torch.equal(warped, ref_masks) and warped.dtype == masks.dtype
