"""Training settings: flags over an optional YAML ``--config`` over defaults, declared once (``jobs.core.settings``).

The YAML keys mirror the flags (``image_size`` or ``image-size`` for ``--image-size``; ``augment: false`` for
``--no-augment``); a flag given on the command line wins over the file, and an unknown key is an error naming it.
Environment: ``IRMSIA_STORE`` (via the common settings) and ``IRMSIA_CACHE_DIR`` (local cache for decoded images).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from jobs.core.errors import UsageError
from jobs.core.paths import check_name
from jobs.core.settings import CommonSettings, StageArgumentParser, StageSettings, option
from jobs.ml.networks import CLASSIFIER, NETWORKS, SEGMENTER, check_network
from jobs.ml.preprocess import SLICE_MODES
from jobs.train.init_weights import check_init

TASKS = ("classification", "multilabel", "segmentation")
MONITORS = ("loss", "accuracy", "balanced_accuracy", "macro_f1", "auc", "dice")
TASK_MONITORS = {
    "classification": ("loss", "accuracy", "balanced_accuracy", "macro_f1", "auc"),
    "multilabel": ("loss", "auc", "macro_f1"),
    "segmentation": ("loss", "dice"),
}
"""The validation metrics each task reports, which ``--monitor`` may name."""
AMP_MODES = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda")
RESUME_MODES = ("off", "required", "auto")
# jobs.train.acceleration implements these; declared here so that reading the settings never imports torch.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
DEVICE_CACHE_MODES = ("off", "auto", "on")
FREEZE_MODES = ("none", "backbone")


def _resume_mode(text: str) -> str:
    """``--resume`` alone is ``required``; YAML booleans map to ``required``/``off``; else a mode name."""
    mode = {"true": "required", "yes": "required", "false": "off", "no": "off"}.get(text.strip().lower(), text)
    if mode not in RESUME_MODES:
        raise UsageError(f"--resume {text!r}: use --resume (required), --resume auto or --no-resume")
    return mode


def _percentiles(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError as exc:
        raise UsageError(f"--percentiles {text!r}: expected two numbers like 0.5,99.5") from exc
    return lo, hi


def _numbers(count: int, flag: str, example: str) -> Any:
    def parse(text: str) -> tuple[float, ...] | None:
        if not str(text).strip():
            return None
        try:
            values = tuple(float(v) for v in str(text).split(","))
        except ValueError as exc:
            raise UsageError(f"{flag} {text!r}: expected {count} numbers like {example}") from exc
        if len(values) != count:
            raise UsageError(f"{flag} {text!r}: expected {count} numbers like {example}")
        return values

    return parse


def _default_cache_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "irmsia-train-cache")


@dataclass(frozen=True, kw_only=True)
class TrainSettings(StageSettings):
    """Everything one training run needs; ``result_params()`` is the part that changes the result."""

    prog = "irmsia-train"
    about = "Train a MONAI classifier on a split; writes runs/<run-id>/."

    dataset: str = option(
        check=check_name, result=True, parameter="dataset", help="dataset name: trains on splits/<dataset>/"
    )
    run_id: str | None = option(
        None,
        check=check_name,
        parameter="run_id",
        help="run id: outputs go to runs/<run-id>/ (derived from the cache key when empty)",
    )
    task: str = option(
        "classification",
        choices=TASKS,
        result=True,
        parameter="task",
        help="classification (one class per image), multilabel (a finding vector, BCE, AUC per finding) or "
        "segmentation (a mask per image, Dice + cross-entropy, Dice and HD95 per case)",
    )
    dims: int = option(
        2,
        minimum=2,
        maximum=3,
        result=True,
        parameter="dims",
        help="2: images (a volume gives one per --slices); 3: volumes (DICOM series, NIfTI) into 3-D networks",
    )
    model: str = option(
        "densenet121", result=True, parameter="model", help=f"network: {', '.join(NETWORKS)} (unet* segment)"
    )
    epochs: int = option(10, above=0, maximum=100_000, result=True, parameter="epochs", help="maximum epochs")
    image_size: int = option(224, maximum=2048, result=True, parameter="image_size", help="square input size in pixels")
    depth: int = option(
        0, minimum=0, maximum=1024, result=True, help="--dims 3: slices of each input volume (0: --image-size)"
    )
    slices: str = option(
        "each",
        choices=SLICE_MODES,
        result=True,
        help="--dims 2: how volumes become images: each (every file on its own; a multi-slice file's middle "
        "slice), middle (one image per volume, its middle slice) or mip (maximum intensity projection)",
    )
    window: tuple[float, float] | None = option(
        None,
        parse=_numbers(2, "--window", "-600,1500"),
        result=True,
        help="intensity window centre,width in modality units (Hounsfield for CT) mapped to [0, 1], instead of "
        "the file's VOI and --percentiles",
    )
    spacing: tuple[float, float, float] | None = option(
        None,
        parse=_numbers(3, "--spacing", "2.0,1.5,1.5"),
        result=True,
        help="--dims 3: resample volumes to this z,y,x voxel spacing (mm) first, then centre-crop or pad to size",
    )
    patch_size: int = option(
        0,
        minimum=0,
        maximum=1024,
        result=True,
        help="--task segmentation: train on random patches of this side and infer by sliding windows (0: whole)",
    )
    batch_size: int = option(
        32, above=0, maximum=65536, result=True, parameter="batch_size", help="training batch size"
    )
    seed: int = option(
        42, minimum=0, result=True, parameter="seed", help="seed for initialisation, shuffling and augmentation"
    )
    lr: float = option(
        1e-3, above=0.0, result=True, parameter="lr", help="peak AdamW learning rate (reached after warm-up)"
    )
    init: str | None = option(
        None,
        check=check_init,
        parameter="init",
        metavar="PATH|registry:NAME[:VERSION]",
        help="fine-tune: start from these weights, a state dict (.pt/.pth), a TorchScript file, a MONAI bundle folder "
        "or registry:NAME[:VERSION] (default champion); a head with another class count is re-initialised (its "
        "SHA-256 is in the cache key and the run's lineage)",
    )
    freeze: str = option(
        "none",
        choices=FREEZE_MODES,
        result=True,
        parameter="freeze",
        help="with --init: backbone trains only the classification (or segmentation) head, the rest stays as loaded",
    )
    freeze_epochs: int = option(
        0,
        minimum=0,
        result=True,
        help="with --freeze backbone: unfreeze the backbone after this many epochs (0: frozen for the whole run)",
    )
    backbone_lr_scale: float = option(
        1.0,
        above=0.0,
        maximum=1.0,
        result=True,
        help="with --init: the backbone's learning rate as a fraction of --lr (the head trains at --lr), e.g. 0.1",
    )
    weight_decay: float = option(1e-4, minimum=0.0, maximum=1.0, result=True, help="AdamW weight decay")
    warmup_epochs: float = option(
        1.0, minimum=0.0, result=True, help="linear warm-up epochs before the cosine decay (at most --epochs)"
    )
    min_lr_ratio: float = option(
        0.01, minimum=0.0, maximum=1.0, result=True, help="final learning rate as a fraction of --lr"
    )
    grad_clip: float = option(1.0, minimum=0.0, result=True, help="clip the global gradient norm to this (0 disables)")
    class_weights: bool = option(
        False,
        result=True,
        parameter="class_weights",
        help="weight the loss by inverse class frequency in the training split",
    )
    label_smoothing: float = option(0.0, minimum=0.0, maximum=0.5, result=True, help="cross-entropy label smoothing")
    patience: int = option(
        0,
        minimum=0,
        result=True,
        parameter="patience",
        help="stop after this many epochs without improvement of --monitor (0 disables)",
    )
    monitor: str = option(
        "loss",
        choices=MONITORS,
        result=True,
        parameter="monitor",
        help="validation metric that picks the best model and drives early stopping",
    )
    min_delta: float = option(0.0, minimum=0.0, result=True, help="smallest change of --monitor that counts")
    augment: bool = option(True, result=True, help="random rotation, flip, zoom and noise on training images")
    rotate_deg: float = option(10.0, minimum=0.0, maximum=180.0, result=True, help="maximum rotation in degrees")
    flip_prob: float = option(0.5, minimum=0.0, maximum=1.0, result=True, help="probability of a horizontal flip")
    zoom: float = option(0.1, minimum=0.0, maximum=0.9, result=True, help="maximum zoom change (0.1 = 0.9x..1.1x)")
    noise_std: float = option(
        0.02, minimum=0.0, maximum=1.0, result=True, help="standard deviation of Gaussian noise on [0, 1] intensities"
    )
    noise_prob: float = option(
        0.5, minimum=0.0, maximum=1.0, result=True, help="probability of adding noise to an image"
    )
    percentiles: tuple[float, float] = option(
        (0.0, 100.0),
        parse=_percentiles,
        result=True,
        help="per-image intensity percentiles mapped to [0, 1], e.g. 0.5,99.5",
    )
    amp: str = option(
        "auto",
        choices=AMP_MODES,
        result=True,
        parameter="amp",
        help="mixed precision: auto (fp16 + GradScaler on CUDA, bf16 on CPUs with AMX), on (also bf16 "
        "on other CPUs) or off",
    )
    fold: int | None = option(
        None,
        minimum=0,
        maximum=49,
        result=True,
        help="cross-validation: train on every fold but this one and validate on it (a split made with "
        "irmsia-split --folds K); the test split stays the test split",
    )
    aggregate_folds: bool = option(
        False,
        help="cross-validation's last step: train nothing, find the fold runs these settings made (--fold 0..K-1 "
        "of a split made with --folds K) and seal their metrics' mean and sd in crossval/<cv-id>/cv.json",
    )
    bootstrap_resamples: int = option(
        1000,
        minimum=0,
        maximum=100_000,
        result=True,
        help="patient-level bootstrap resamples for the 95-percent interval of every val/test metric (0: no intervals)",
    )
    calibrate: bool = option(
        False,
        result=True,
        help="fit a temperature on val (temperature scaling); calibration, operating points and serving use it",
    )
    specificity: float = option(
        0.9,
        above=0.0,
        maximum=1.0,
        result=True,
        help="report the sensitivity at this specificity, with the threshold chosen on val and evaluated on test",
    )
    min_subgroup: int = option(
        10,
        minimum=1,
        result=True,
        help="subgroups (modality, body part, sex, age band, dataset…) with fewer images are reported as too small",
    )
    device: str = option("auto", choices=DEVICES, help="auto, cpu or cuda")
    nproc_per_node: int = option(
        1,
        above=0,
        maximum=64,
        result=True,
        help="data-parallel training processes on this node (one per GPU; gloo on CPU): --batch-size stays the "
        "global batch, split between them (under torchrun, its --nproc-per-node and nodes count instead)",
    )
    sealed_only: bool = option(
        False,
        help="train nothing: report the run these settings seal, or fail with exit 3 if it is not sealed (the "
        "workflow's step after a multi-node PyTorchJob)",
    )
    lr_base_batch: int = option(
        0,
        minimum=0,
        result=True,
        help="linear LR scaling: --lr is for this batch size and is scaled by --batch-size / it (0: no scaling)",
    )
    compile: str = option(
        "off",
        choices=COMPILE_MODES,
        result=True,
        help="torch.compile the network (reduce-overhead also records CUDA graphs); falls back to eager if it fails",
    )
    device_cache: str = option(
        "off",
        choices=DEVICE_CACHE_MODES,
        help="hold the training split on the training device and gather batches there (auto: when it fits)",
    )
    prefetch: bool = option(
        False, help="on CUDA, copy the next batch from pinned memory on a side stream while this one trains"
    )
    workers: int = option(
        -1, minimum=-1, help="data loader workers and decode processes (-1: 0 loader workers on CPU, 4 on CUDA)"
    )
    max_unreadable: float = option(
        0.05,
        minimum=0.0,
        maximum=1.0,
        help="fraction of images that may be unreadable (skipped with a warning) before the run fails with exit 3",
    )
    cache_dir: str = option(
        default_factory=_default_cache_dir,
        env="IRMSIA_CACHE_DIR",
        help="local folder for downloaded objects and decoded tensors (default: irmsia-train-cache in the system's "
        "temporary folder)",
    )
    resume: str = option(
        "off",
        parse=_resume_mode,
        choices=RESUME_MODES,
        const="required",
        negative="off",
        help="continue from the run's last checkpoint: alone, an error if there is none; 'auto': if there is one",
    )

    def validate(self) -> None:
        if self.aggregate_folds and self.fold is not None:
            raise UsageError("--aggregate-folds aggregates every fold's run; drop --fold")
        kind = SEGMENTER if self.task == "segmentation" else CLASSIFIER
        check_network(self.model, self.image_size, kind, (self.depth or self.image_size) if self.dims == 3 else None)
        if self.monitor not in TASK_MONITORS[self.task]:
            raise UsageError(
                f"--monitor {self.monitor}: --task {self.task} reports {', '.join(TASK_MONITORS[self.task])}"
            )
        if self.patch_size:
            if self.task != "segmentation":
                raise UsageError("--patch-size: patches are for --task segmentation; drop it")
            sides = (self.image_size, *((self.depth or self.image_size,) if self.dims == 3 else ()))
            if self.patch_size > min(sides):
                raise UsageError(f"--patch-size {self.patch_size}: larger than the input ({min(sides)})")
            check_network(self.model, self.patch_size)
        if self.task == "segmentation" and self.slices == "mip":
            raise UsageError("--slices mip: a segmentation mask has no projection; use --slices middle or each")
        if self.batch_size % self.nproc_per_node:
            raise UsageError(
                f"--batch-size {self.batch_size}: the global batch must divide by --nproc-per-node "
                f"{self.nproc_per_node}; use a multiple of {self.nproc_per_node}"
            )
        if self.warmup_epochs > self.epochs:
            raise UsageError(f"--warmup-epochs {self.warmup_epochs}: must be between 0.0 and {float(self.epochs)}")
        if self.init is None:
            for flag, given in (
                ("--freeze", self.freeze != "none"),
                ("--backbone-lr-scale", self.backbone_lr_scale != 1),
            ):
                if given:
                    raise UsageError(f"{flag}: fine-tuning needs --init weights to start from; add --init or drop it")
        if self.freeze_epochs and self.freeze != "backbone":
            raise UsageError(f"--freeze-epochs {self.freeze_epochs}: needs --freeze backbone")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise UsageError(f"--percentiles {lo},{hi}: need 0 <= low < high <= 100")

    def log_fields(self) -> dict[str, str | None]:
        return {"dataset": self.dataset, "run_id": self.run_id}

    def metrics_group(self) -> dict[str, str]:
        # train, each fold and the aggregate run in one workflow: without a part they would replace each other's group
        if self.aggregate_folds:
            return {"part": "cv"}
        return {} if self.fold is None else {"part": f"fold-{self.fold}"}

    @classmethod
    def add_extra_arguments(cls, parser: StageArgumentParser, seen: set[str]) -> None:
        parser.add_argument("--config", help="YAML file whose keys mirror these flags; flags override it")

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], env: Mapping[str, str]) -> Self:
        config = (
            cls.config_keys(load_config(flags["config"]), f"--config {flags['config']!r}")
            if flags.get("config")
            else None
        )
        common = CommonSettings.from_flags(flags, env)
        return cls.build(cls.values_from(flags, env, config), common=common)


def load_config(path: str) -> dict[str, Any]:
    """The YAML file as a mapping; a missing file, bad YAML or a non-mapping is a ``UsageError`` naming it."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise UsageError(f"--config {path!r}: cannot read it ({exc.strerror}); check the path") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"--config {path!r}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--config {path!r}: expected a mapping of settings at the top level")
    return data
