"""Trainers on the demo tasks' datasets, each built through the real collect -> index -> split stages."""

from __future__ import annotations

from typing import Any

from jobs.core.store import open_store
from jobs.train.cache import label_values, load_images
from jobs.train.data import read_split
from jobs.train.loop import Trainer, pick_hardware
from jobs.train.stage import preprocessing, segmentation_classes

# demo task, train task, dims, network, input side: each through the real collect -> index -> split
TASK_DATASETS = [
    ("segmentation", "segmentation", 2, "small-unet", 32),
    ("segmentation-3d", "segmentation", 3, "small-unet", 16),
    ("volume", "classification", 3, "small-cnn", 16),
]


def task_trainer(
    tmp_path: Any, fast_settings: Any, demo: str, task: str, dims: int, model: str, size: int, **overrides: Any
) -> Trainer:
    """A CPU trainer on the ``demo`` task's dataset (built once per test through the real stages)."""
    from jobs.collect.__main__ import main as collect
    from jobs.index.__main__ import main as index
    from jobs.split.__main__ import main as split_main

    store_uri = str(tmp_path / "store")
    common = ["--store", store_uri, "--dataset", "tiny", "--log-format", "text", "--log-level", "warning"]
    if not open_store(store_uri).exists("splits/tiny/_SUCCESS.json"):
        assert collect(["--source", "demo", "--task", demo, "--patients", "8", *common]) == 0
        assert index(common) == 0
        assert split_main([*common, "--task", task]) == 0
    settings = fast_settings(store_uri, task=task, dims=dims, model=model, image_size=size, batch_size=4,
                             monitor="loss", **overrides)  # fmt: skip
    store = open_store(store_uri)
    split = read_split(store, "tiny", task, dims)
    prep = preprocessing(settings)
    sets, channels = load_images(store, split, prep, settings.cache_dir, workers=1, max_unreadable=0.0)
    classes = split.classes
    if task == "segmentation":
        classes = segmentation_classes(label_values(settings.cache_dir, split, prep))
    return Trainer(settings, sets, classes, channels, pick_hardware("cpu", "off"))
