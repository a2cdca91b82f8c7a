"""The stage registry: the one place that says which stages exist and what each needs to be built and run.

Everything else reads it (as pydicom's code reads its registry of decoders): the DAG (``pipeline.dag``), the Argo
objects and the Helm chart's data (resources, the GPU pool), the Dockerfile and image scripts under ``docker/``
(generated or checked against it), the Makefile's image lists, ``pyproject.toml``'s scripts, extras and import
contracts (checked by a test) and the tests that build images. Adding a stage means its package under ``jobs/``
and one entry here. This module imports nothing of the stages: the settings class is named, not imported.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs import __version__

CPU_SUFFIX = "-cpu"
"""A GPU stage's image also comes as ``irmsia-<stage>-cpu`` (CPU torch) for clusters without a GPU pool."""
IMAGE_REGISTRY = "localhost/irmsia"
"""Where stage images live by default: what ``make images`` tags, ``make kind-load`` loads and ``irmsia.yaml``'s
``images.registry`` names."""
IMAGE_TAG = __version__
"""The default tag of every stage image: the project's version (``images.tag`` in ``irmsia.yaml`` pins it)."""


@dataclass(frozen=True, kw_only=True)
class Resources:
    """A stage pod's default requests and limits (``irmsia.yaml``'s ``resources.<stage>`` overrides them)."""

    requests: dict[str, str] = field(default_factory=dict)
    """What the scheduler reserves: ``cpu``, ``memory``, ``ephemeral-storage``."""
    limits: dict[str, str] = field(default_factory=dict)
    """Hard limits: memory over the limit is an OOM kill, ``ephemeral-storage`` over it an eviction."""
    active_deadline_seconds: int = 3600
    """The pod is killed after this many seconds."""
    shm_size: str = ""
    """Size of a memory-backed ``/dev/shm``; empty for none."""


@dataclass(frozen=True, kw_only=True)
class StageEntry:
    """One stage: what it is called, what it installs, where it runs, what it follows and what it writes."""

    name: str
    """The stage's name: package ``jobs.<name>``, console script ``irmsia-<name>``, DAG task, metrics label."""
    summary: str
    """One line: what the stage does."""
    settings: str
    """``module:Class`` of the stage's settings (its options), imported only when asked for."""
    extra: str
    """The pip extra its image installs (``pip install irmsia-pipeline[<extra>]``)."""
    depends: tuple[str, ...] = ()
    """Stages that must succeed first."""
    output: str
    """Template of the prefix the stage seals (``raw/{dataset}/``), for people and summaries."""
    torch: bool = False
    """Its image is built on the torch layer."""
    gpu: bool = False
    """It runs on the GPU node pool when one is enabled (and has a CUDA image plus a ``-cpu`` variant)."""
    fixed_args: tuple[str, ...] = ()
    """Arguments the DAG always passes (train's ``--resume auto``, so a retried pod continues its run)."""
    outputs: tuple[str, ...] = ()
    """Fields of the stage's result summary that later stages take as parameters when those are left empty
    (train's ``run_id``, derived from its cache key, is register's ``--run``)."""
    exported_metrics: tuple[str, ...] = ()
    """Summary fields the Argo controller exports as gauges when the stage succeeds (custom metrics)."""
    resources: Resources = field(default_factory=Resources)
    """Default pod resources."""
    reads_input_data: bool = False
    """It reads folders given to the pipeline (``--source local``, NIH's CSVs): in a pod, the data volume."""
    downloads: bool = False
    """It downloads from the dataset sources: in a pod, it gets the configured mirror URLs."""
    keeps_cache: bool = False
    """It keeps a local cache worth keeping across a retried pod (train's decoded images): in a pod, a PVC."""
    artifacts: tuple[str, ...] = ()
    """Sealed outputs the stage copies beside its result file (its class's ``artifacts``): Argo output artifacts."""
    gpu_processes_flag: str = ""
    """The option that takes a pod's GPU count, one process per GPU (train's ``--nproc-per-node``): the DAG passes
    the GPU pool's ``gpus`` to it when that is above 1; "" for a stage that uses one GPU."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]*", self.name):
            raise ValueError(f"stage name {self.name!r}: lowercase letters and digits (a package and a DNS label)")
        if ":" not in self.settings:
            raise ValueError(f"stage {self.name}: settings {self.settings!r} must be 'module:Class'")

    @property
    def module(self) -> str:
        """The package whose ``__main__`` runs the stage (``python -m jobs.index``)."""
        return f"jobs.{self.name}"

    @property
    def script(self) -> str:
        """The console script (``irmsia-index``): the image's entrypoint and the Argo container's command."""
        return f"irmsia-{self.name}"

    def image(self, *, gpu: bool = True) -> str:
        """The image name (no registry, no tag): ``irmsia-<stage>``, or its ``-cpu`` variant for a GPU stage run
        without a GPU."""
        return self.script + (CPU_SUFFIX if self.gpu and not gpu else "")

    @property
    def images(self) -> tuple[str, ...]:
        """Every image built for the stage."""
        return (self.image(), self.image(gpu=False)) if self.gpu else (self.image(),)

    def stage_object(self) -> Any:
        """The stage itself (``jobs.<name>.stage.STAGE``: ``plan``, ``execute``), imported only when asked for;
        no stage module imports torch before it trains."""
        return importlib.import_module(f"{self.module}.stage").STAGE

    def settings_class(self) -> Any:
        """The settings dataclass (importing the stage's settings module, which imports no torch)."""
        module, _, name = self.settings.partition(":")
        return getattr(importlib.import_module(module), name)


STAGES: tuple[StageEntry, ...] = (
    StageEntry(
        name="collect",
        summary="download a dataset (demo, local folder, URL, TCIA, Kaggle, NIH ChestX-ray14) into raw/<dataset>/",
        settings="jobs.collect.settings:CollectSettings",
        extra="collect",
        output="raw/{dataset}/",
        reads_input_data=True,
        downloads=True,
        resources=Resources(
            requests={"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
            limits={"cpu": "1", "memory": "1Gi", "ephemeral-storage": "20Gi"},
            active_deadline_seconds=7200,
        ),
    ),
    StageEntry(
        name="index",
        summary="hash and read every raw file, derive labels, write index/<dataset>/index.parquet",
        settings="jobs.index.settings:IndexSettings",
        extra="index",
        depends=("collect",),
        output="index/{dataset}/",
        resources=Resources(
            requests={"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "512Mi"},
            limits={"cpu": "2", "memory": "2Gi", "ephemeral-storage": "4Gi"},
            active_deadline_seconds=7200,
        ),
    ),
    StageEntry(
        name="split",
        summary="patient-grouped stratified train/val/test split into splits/<dataset>/",
        settings="jobs.split.settings:SplitSettings",
        extra="split",
        depends=("index",),
        output="splits/{dataset}/",
        resources=Resources(
            requests={"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "256Mi"},
            # a split peaks at ~1.3 KB an index row (bench/split_bench.py: 406 MiB at 100k rows, 1.3 GiB at 1M)
            limits={"cpu": "1", "memory": "2Gi", "ephemeral-storage": "1Gi"},
            active_deadline_seconds=1800,
        ),
    ),
    StageEntry(
        name="train",
        summary="MONAI classification training into runs/<run-id>/",
        settings="jobs.train.settings:TrainSettings",
        extra="train",
        depends=("split",),
        output="runs/{run_id}/",
        torch=True,
        gpu=True,
        fixed_args=("--resume", "auto"),
        outputs=("run_id",),
        exported_metrics=("val_accuracy", "val_auc"),
        keeps_cache=True,
        artifacts=("report.html",),
        gpu_processes_flag="--nproc-per-node",
        resources=Resources(
            requests={"cpu": "1", "memory": "2Gi", "ephemeral-storage": "1Gi"},
            limits={"cpu": "2", "memory": "4Gi", "ephemeral-storage": "4Gi"},
            active_deadline_seconds=43200,
            shm_size="1Gi",
        ),
    ),
    StageEntry(
        name="register",
        summary="versioned, hash-chained model registry under registry/<model-name>/",
        settings="jobs.register.settings:RegisterSettings",
        extra="register",
        depends=("train",),
        output="registry/{model_name}/",
        torch=True,
        resources=Resources(
            requests={"cpu": "100m", "memory": "512Mi", "ephemeral-storage": "512Mi"},
            limits={"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"},
            active_deadline_seconds=1800,
        ),
    ),
)


def stage(name: str) -> StageEntry:
    """The registry entry of stage ``name``; ``KeyError`` naming the stages there are."""
    for entry in STAGES:
        if entry.name == name:
            return entry
    raise KeyError(f"no stage {name!r}; stages are {', '.join(s.name for s in STAGES)}")


def image_names(*, gpu: bool = True) -> tuple[str, ...]:
    """Every stage image in registry order; without ``gpu``, the images a cluster without GPUs runs (a GPU stage's
    ``-cpu`` variant instead of its CUDA image)."""
    return tuple(image for entry in STAGES for image in (entry.images if gpu else (entry.image(gpu=False),)))


def image_ref(image: str, *, registry: str = IMAGE_REGISTRY, tag: str = IMAGE_TAG) -> str:
    """The one naming rule of stage images: ``<registry>/<image>:<tag>`` (``<image>:<tag>`` with no registry).

    Build (``docker/build-images.sh``), load (``make kind-load``), render (the Argo templates and the chart), the
    docker executor and the docs all name images through this rule.
    """
    registry = registry.rstrip("/")
    return f"{registry}/{image}:{tag}" if registry else f"{image}:{tag}"


def image_of(image: str) -> StageEntry:
    """The stage an image name belongs to (``irmsia-train-cpu`` -> train)."""
    for entry in STAGES:
        if image in entry.images:
            return entry
    raise KeyError(f"no stage image {image!r}; images are {', '.join(image_names())}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jobs.stages images|refs|extras``: the registry for shell scripts (docker/, the Makefile).

    Standard library only, so it runs from a checkout before anything is installed.
    """
    parser = argparse.ArgumentParser(prog="python -m jobs.stages", description=main.__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    images = sub.add_parser("images", help="every stage image name, one a line")
    images.add_argument("--cpu", action="store_true", help="the images of a cluster without GPUs")
    refs = sub.add_parser("refs", help="full references of the given images (default: all)")
    refs.add_argument("images", nargs="*")
    refs.add_argument("--registry", default=IMAGE_REGISTRY)
    refs.add_argument("--tag", default=IMAGE_TAG)
    sub.add_parser("extras", help="the pip extra of every stage, one a line")
    sub.add_parser("base", help="'<image> <base layer>' per image: core, torch-cpu or cuda")
    args = parser.parse_args(argv)
    if args.what == "images":
        lines = list(image_names(gpu=not args.cpu))
    elif args.what == "refs":
        lines = [image_ref(i, registry=args.registry, tag=args.tag) for i in args.images or image_names()]
    elif args.what == "extras":
        lines = [entry.extra for entry in STAGES]
    else:
        lines = [f"{image} {image_base(image)}" for image in image_names()]
    print("\n".join(lines))
    return 0


def image_base(image: str) -> str:
    """The build layer an image starts from: ``core`` (no torch), ``torch-cpu`` or ``cuda`` (a GPU stage's image)."""
    entry = image_of(image)
    if entry.gpu and image == entry.image():
        return "cuda"
    return "torch-cpu" if entry.torch else "core"


if __name__ == "__main__":
    sys.exit(main())
