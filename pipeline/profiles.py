"""Named sets of parameter values for a kind of run, stated once and used by ``irmsia run``, ``irmsia submit``,
the schedules in ``irmsia.yaml``, ``make demo`` and the quick start.

The stages' own option defaults are the defaults for real data (``densenet121`` at 224 px for 10 epochs); a
profile says what differs for one purpose. ``demo`` trains the built-in synthetic dataset in about half a minute
on two CPU cores (val accuracy about 0.98), which is what a first run and a CI run need; ``demo-multilabel``,
``demo-segmentation``, ``demo-segmentation-3d`` and ``demo-volume`` do the same for the other tasks (NIH-shaped
findings, lgg-style masks, NIfTI label maps, 3-D CT classification), each in a CPU minute or two.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobs.core.errors import UsageError

PROFILES: dict[str, dict[str, str]] = {
    "demo": {"source": "demo", "dataset": "demo", "epochs": "5", "image_size": "64", "batch_size": "16"},
    # one per task, each on its own demo dataset and registry name
    "demo-multilabel": {"source": "demo", "demo_task": "multilabel", "dataset": "demo-multilabel",
                        "task": "multilabel", "model": "small-cnn", "epochs": "10", "image_size": "64",
                        "batch_size": "16", "model_name": "demo-multilabel"},
    "demo-segmentation": {"source": "demo", "demo_task": "segmentation", "dataset": "demo-segmentation",
                          "task": "segmentation", "model": "small-unet", "epochs": "15", "image_size": "64",
                          "batch_size": "8", "lr": "0.005", "monitor": "dice", "model_name": "demo-segmenter"},
    "demo-segmentation-3d": {"source": "demo", "demo_task": "segmentation-3d", "dataset": "demo-segmentation-3d",
                             "task": "segmentation", "dims": "3", "model": "small-unet", "epochs": "20",
                             "image_size": "32", "batch_size": "4", "lr": "0.005", "monitor": "dice",
                             "model_name": "demo-segmenter-3d"},
    "demo-volume": {"source": "demo", "demo_task": "volume", "dataset": "demo-volume", "task": "classification",
                    "dims": "3", "model": "small-cnn", "epochs": "15", "image_size": "32", "batch_size": "8",
                    "lr": "0.003", "model_name": "demo-volume-classifier"},
}  # fmt: skip


def profile_values(name: str | None, known: Mapping[str, object]) -> dict[str, str]:
    """The values of profile ``name`` (none for ``None``); ``UsageError`` for an unknown profile, and a profile
    naming a parameter the pipeline does not have is a bug caught here."""
    if not name:
        return {}
    if name not in PROFILES:
        raise UsageError(f"--profile {name!r}: use one of {', '.join(PROFILES)}")
    values = PROFILES[name]
    if unknown := sorted(set(values) - set(known)):
        raise ValueError(f"profile {name}: {unknown} are not pipeline parameters")
    return dict(values)
