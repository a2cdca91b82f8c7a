"""The ``configs/metadata.json`` of a registered version: MONAI bundle keys plus our metrics and lineage.

MONAI's bundle specification fixes ``version``, ``changelog``, ``monai_version``, ``pytorch_version``,
``numpy_version``, ``required_packages_version``, ``task``, ``description``, ``authors``, ``copyright`` and
``network_data_format`` (input shape, channels, classes); our keys sit beside them: every flat metric, the
chosen one, the evaluation (intervals, calibration, operating points, subgroups, what serving applies), the
cross-validation of the run's settings when registered with one (per-fold metrics, mean and sd),
SHA-256 of every model file, the run, the manifest hashes of the data it came from, patients per
split, the dataset's source and licence, the code version and the container image. This module imports no torch.
"""

from __future__ import annotations

from importlib import metadata as pkg_metadata
from typing import Any

from jobs.core.manifest import code_version
from jobs.register.lineage import Lineage
from jobs.register.source_run import SourceRun

EVALUATION_SECTIONS = (
    "intervals",
    "bootstrap",
    "calibration",
    "operating_points",
    "subgroups",
    "serving",
    "not_applicable",
)
"""The sections of the run's ``metrics.json`` that the train stage's evaluation wrote, kept as they are."""
SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"


def package_version(name: str) -> str | None:
    """The installed version of ``name`` (without a local ``+cpu`` suffix), or ``None``."""
    try:
        return pkg_metadata.version(name).split("+")[0]
    except pkg_metadata.PackageNotFoundError:
        return None


def input_shape(config: dict[str, Any]) -> list[int | str]:
    """The spatial shape of one input: ``[H, W]`` or, for ``dims`` 3, ``[D, H, W]``."""
    size = int(config.get("image_size") or 0)
    plane: list[int | str] = [size, size] if size else ["*", "*"]
    if int(config.get("dims") or 2) == 3:
        depth = int(config.get("depth") or 0) or size
        return [depth or "*", *plane]
    return plane


def task_description(config: dict[str, Any], classes: list[str]) -> str:
    """MONAI's ``task``: what the network does, in words."""
    dims, task = int(config.get("dims") or 2), str(config.get("task") or "classification")
    if task == "segmentation":
        return f"{dims}D segmentation into {len(classes)} classes: {', '.join(classes)}"
    if task == "multilabel":
        return f"{dims}D multi-label classification of {len(classes)} findings: {', '.join(classes)}"
    return f"{dims}D image classification into {len(classes)} classes: {', '.join(classes)}"


def _outputs(config: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    task = str(config.get("task") or "classification")
    channel_def = {str(i): name for i, name in enumerate(classes)}
    if task == "segmentation":
        return {"type": "image", "format": "segmentation", "num_channels": int(config["num_classes"]),
                "spatial_shape": input_shape(config), "dtype": "float32", "value_range": [0, 1],
                "is_patch_data": False, "channel_def": channel_def,
                "note": "logit maps; argmax gives class i = mask value label_values[i]"}  # fmt: skip
    multilabel = task == "multilabel"
    return {
        "type": "probabilities",
        "format": "labels" if multilabel else "classes",
        "num_channels": int(config["num_classes"]),
        "spatial_shape": [1],
        "dtype": "float32",
        "value_range": [0, 1],
        "is_patch_data": False,
        "channel_def": channel_def,
        "note": "logits; apply a sigmoid and the thresholds" if multilabel else "logits; apply softmax",
    }


def _network_data_format(config: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    channels = int(config["in_channels"])
    return {
        "inputs": {
            "image": {
                "type": "image",
                "format": "magnitude",
                "modality": str(config.get("modality") or "unknown"),
                "num_channels": channels,
                "spatial_shape": input_shape(config),
                "dtype": "float32",
                "value_range": [0, 1],
                "is_patch_data": False,
                "channel_def": {str(i): "image" for i in range(channels)},
            }
        },
        "outputs": {"pred": _outputs(config, classes)},
        "preprocessing": config.get("preprocessing") or {},
    }


def build_metadata(  # noqa: PLR0913 - keyword-only: every part of the metadata, named at the one call
    *,
    name: str,
    version: int,
    run: SourceRun,
    lineage: Lineage,
    metric: str,
    model_files: dict[str, str],
    image: str | None,
    description: str,
    cross_validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata of version ``version`` of ``name``; ``model_files`` maps bundle path -> SHA-256."""
    config = run.config
    classes = [str(c) for c in (config.get("classes") or lineage.classes)]
    if not classes:
        classes = [str(i) for i in range(int(config["num_classes"]))]
    semver = f"{version}.0.0"
    metrics = run.scalar_metrics
    return {
        "schema": SCHEMA,
        "version": semver,
        "changelog": {semver: f"registered from run {run.run_id}"},
        "monai_version": package_version("monai"),
        "pytorch_version": package_version("torch"),
        "numpy_version": package_version("numpy"),
        "required_packages_version": {
            k: v for k, v in (("onnx", package_version("onnx")), ("onnxruntime", package_version("onnxruntime"))) if v
        },
        "task": task_description(config, classes),
        "description": description
        or f"{config['model']} trained by IRMSIA Pipeline run {run.run_id} on dataset {lineage.dataset or 'unknown'}",
        "authors": "IRMSIA Pipeline",
        "copyright": f"dataset licence: {lineage.license or 'unknown'}"
        + "".join(f"; {d['attribution'].splitlines()[0]}" for d in lineage.datasets if d.get("attribution")),
        "data_source": lineage.source or "unknown",
        "data_type": str(config.get("modality") or "image"),
        "image_classes": f"{config['in_channels']} channel image, intensity scaled to [0, 1]",
        "label_classes": ", ".join(f"{i}: {c}" for i, c in enumerate(classes)),
        "pred_classes": ", ".join(f"{i}: {c}" for i, c in enumerate(classes)),
        "eval_metrics": {k: v for k, v in metrics.items() if k.startswith(("val_", "test_"))},
        "intended_use": "Research and pipeline validation only; not for clinical decisions.",
        "network_data_format": _network_data_format(config, classes),
        "irmsia": {
            "model_name": name,
            "registry_version": version,
            "task": str(config.get("task") or "classification"),
            "network": {
                "name": config["model"],
                "in_channels": int(config["in_channels"]),
                "num_classes": int(config["num_classes"]),
                "image_size": config.get("image_size"),
                "dims": int(config.get("dims") or 2),
            },
            "thresholds": config.get("thresholds"),
            "label_values": config.get("label_values"),
            "classes": classes,
            "metrics": metrics,
            "metric": {"name": metric, "value": metrics[metric]},
            "details": run.metrics.get("details") or {},
            "evaluation": {k: run.metrics[k] for k in EVALUATION_SECTIONS if k in run.metrics},
            # the folds of the run's settings (jobs.register.crossval): an estimate of the spread, not this model
            "cross_validation": cross_validation,
            "model_files": dict(sorted(model_files.items())),
            "run_id": run.run_id,
            "run_config": config,
            "lineage": lineage.to_dict(),
            "code_version": code_version(),
            "image": image,
        },
    }
