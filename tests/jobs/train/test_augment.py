"""Random patches for segmentation (``random_crop``): windows of the very voxels, image and mask aligned, every corner
reachable, the same draws on the host as on the device's batch; and a run on patches trains on them and scores whole
volumes by sliding windows."""

from __future__ import annotations

import pytest
import torch

from jobs.train.augment import random_crop
from tests.support.task_trainers import TASK_DATASETS, task_trainer


def _coded(n: int, sides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch whose every voxel holds its own flat index (image) and that index's last digit (mask)."""
    numel = n * int(torch.tensor(sides).prod())
    codes = torch.arange(numel, dtype=torch.float64).reshape(n, 1, *sides)
    return codes, (codes[:, 0] % 10).to(torch.uint8)


@pytest.mark.parametrize("sides", [(12, 12), (10, 12, 14)])
def test_patches_are_aligned_windows_of_each_item(sides):
    # GIVEN a coded batch of 2-D slices or 3-D volumes
    images, masks = _coded(3, sides)
    # WHEN one 8-voxel patch per item is cut
    patches, mask_patches = random_crop(images, masks, 8, torch.Generator().manual_seed(5))
    assert patches.shape == (3, 1, *(8,) * len(sides)) and mask_patches.shape == (3, *(8,) * len(sides))
    for i in range(3):
        # THEN each is the contiguous window of its own item starting at the patch's first voxel
        first = int(patches[i, 0].flatten()[0])
        corner = torch.nonzero(images[i, 0] == first)[0].tolist()
        window = tuple(slice(c, c + 8) for c in corner)
        assert torch.equal(patches[i, 0], images[i, 0][window])
        # AND its mask is the same window of the same item's mask
        assert torch.equal(mask_patches[i], masks[i][window])


def test_every_corner_is_reachable_and_none_falls_outside():
    # GIVEN 10-voxel sides and 8-voxel patches: corners 0, 1 and 2 along each axis
    images, masks = _coded(64, (10, 10))
    seen: set[tuple[int, int]] = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        patches, _ = random_crop(images, masks, 8, generator)
        for i in range(len(patches)):
            flat = int(patches[i, 0, 0, 0]) - i * 100
            seen.add((flat // 10, flat % 10))
    # THEN all nine corners come up and no patch runs past the edge
    assert seen == {(r, c) for r in range(3) for c in range(3)}


def test_cropping_before_the_conversion_gives_the_same_patches():
    # GIVEN a float16 batch with uint8 masks (as the cache holds them) and one seed
    images, masks = _coded(4, (16, 16, 16))
    half = (images / images.max()).to(torch.float16)
    # WHEN the loop crops the stored batch and converts the patch, or converts the batch and crops it
    early, early_masks = random_crop(half, masks, 8, torch.Generator().manual_seed(3))
    late, late_masks = random_crop(half.float(), masks.long(), 8, torch.Generator().manual_seed(3))
    # THEN the patches are the same voxels
    assert torch.equal(early.float(), late) and torch.equal(early_masks.long(), late_masks)


def test_a_run_on_patches_trains_on_them_and_scores_whole_volumes(tmp_path, fast_settings):
    # GIVEN a 3-D segmentation run on 32³ volumes with 16³ patches
    demo, task, dims, model, _ = TASK_DATASETS[1]
    trainer = task_trainer(tmp_path, fast_settings, demo, task, dims, model, 32, patch_size=16, epochs=1)
    shapes: list[tuple[int, ...]] = []
    trainer.model.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape[2:])))
    # WHEN it trains an epoch and scores val
    trainer.train_epoch(1)
    trained = set(shapes)
    shapes.clear()
    scores = trainer.evaluate("val")
    # THEN every training step saw 16³ patches, and val was scored in 16³ windows over each 32³ volume
    assert trained == {(16, 16, 16)}
    assert shapes and set(shapes) == {(16, 16, 16)}
    assert trainer.task.infer(trainer, torch.zeros(1, 1, 32, 32, 32)).shape == (1, len(trainer.classes), 32, 32, 32)
    assert 0.0 <= scores["dice"] <= 1.0
