"""Training settings: flags over an optional YAML ``--config`` over defaults, validated once into a frozen dataclass.

The YAML keys mirror the flags (``image_size`` or ``image-size`` for ``--image-size``; ``augment: false`` for
``--no-augment``); a flag given on the command line wins over the file, and an unknown key is an error naming it.
Environment: ``IRMSIA_STORE`` (via the common settings) and ``IRMSIA_CACHE_DIR`` (local cache for decoded images).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from jobs.core.errors import UsageError
from jobs.core.layout import check_name
from jobs.core.networks import NETWORKS, check_network
from jobs.core.settings import CommonSettings, StageArgumentParser, add_common_arguments, common_settings

MONITORS = ("loss", "accuracy", "balanced_accuracy", "macro_f1", "auc")
AMP_MODES = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda")
RESUME_MODES = ("off", "required", "auto")


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Everything one training run needs; ``result_params()`` is the part that changes the result."""

    common: CommonSettings = field(default_factory=CommonSettings)
    dataset: str
    """Split to train on: ``splits/<dataset>/``."""
    run_id: str | None = None
    """``runs/<run-id>/``; derived from the dataset and cache key when absent, so a rerun is a cache hit."""
    model: str = "densenet121"
    """Network name, one of ``jobs.core.networks.NETWORKS``."""
    epochs: int = 10
    image_size: int = 224
    batch_size: int = 32
    seed: int = 42
    lr: float = 1e-3
    """Peak learning rate of AdamW (reached after warm-up)."""
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    """Linear warm-up length in epochs, then cosine decay to ``min_lr_ratio * lr``."""
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables."""
    class_weights: bool = False
    """Weight the loss by inverse class frequency in the training split (imbalanced data)."""
    label_smoothing: float = 0.0
    patience: int = 0
    """Stop after this many epochs without improvement of ``monitor``; 0 disables early stopping."""
    monitor: str = "loss"
    """Validation metric that picks the best model and drives early stopping."""
    min_delta: float = 0.0
    """The smallest change of ``monitor`` that counts as an improvement."""
    augment: bool = True
    rotate_deg: float = 10.0
    flip_prob: float = 0.5
    zoom: float = 0.1
    """Random zoom in ``[1 - zoom, 1 + zoom]``."""
    noise_std: float = 0.02
    noise_prob: float = 0.5
    percentiles: tuple[float, float] = (0.0, 100.0)
    """Per-image intensity range mapped to [0, 1]."""
    amp: str = "auto"
    """``auto``: fp16 + GradScaler on CUDA, bf16 on CPUs with AMX; ``on``: also bf16 on other CPUs; ``off``."""
    device: str = "auto"
    workers: int = -1
    """DataLoader workers and decode processes; -1 picks (0 loader workers on CPU, 4 on CUDA)."""
    max_unreadable: float = 0.05
    """Fraction of images that may be unreadable (skipped with a warning) before the run fails with exit 3."""
    cache_dir: str = field(default_factory=lambda: os.path.join(tempfile.gettempdir(), "irmsia-train-cache"))
    """Local folder for downloaded objects and decoded tensors (``--cache-dir`` / ``IRMSIA_CACHE_DIR``)."""
    resume: str = "off"
    """``required`` (``--resume``): continue from ``runs/<run-id>/checkpoints/last.pt``, an error if there is none;
    ``auto`` (``--resume auto``, what Argo retries pass): continue from it when the unfinished run has one, else
    start fresh; ``off``: always start fresh."""

    def __post_init__(self) -> None:
        check_name(self.dataset, "--dataset")
        if self.run_id is not None:
            check_name(self.run_id, "--run-id")
        check_network(self.model, self.image_size)
        _positive("--epochs", self.epochs)
        _positive("--batch-size", self.batch_size)
        if self.image_size > 2048:
            raise UsageError(f"--image-size {self.image_size}: use at most 2048 pixels")
        _positive("--lr", self.lr)
        _in_range("--weight-decay", self.weight_decay, 0.0, 1.0)
        _in_range("--warmup-epochs", self.warmup_epochs, 0.0, float(self.epochs))
        _in_range("--min-lr-ratio", self.min_lr_ratio, 0.0, 1.0)
        _in_range("--grad-clip", self.grad_clip, 0.0, float("inf"))
        _in_range("--label-smoothing", self.label_smoothing, 0.0, 0.5)
        _in_range("--patience", self.patience, 0, float("inf"))
        _in_range("--min-delta", self.min_delta, 0.0, float("inf"))
        _in_range("--rotate-deg", self.rotate_deg, 0.0, 180.0)
        _in_range("--flip-prob", self.flip_prob, 0.0, 1.0)
        _in_range("--zoom", self.zoom, 0.0, 0.9)
        _in_range("--noise-std", self.noise_std, 0.0, 1.0)
        _in_range("--noise-prob", self.noise_prob, 0.0, 1.0)
        _in_range("--max-unreadable", self.max_unreadable, 0.0, 1.0)
        if self.workers < -1:
            raise UsageError(f"--workers {self.workers}: use -1 (automatic) or a count >= 0")
        if self.monitor not in MONITORS:
            raise UsageError(f"--monitor {self.monitor!r}: use one of {', '.join(MONITORS)}")
        if self.amp not in AMP_MODES:
            raise UsageError(f"--amp {self.amp!r}: use one of {', '.join(AMP_MODES)}")
        if self.resume not in RESUME_MODES:
            raise UsageError(f"--resume {self.resume!r}: use one of {', '.join(RESUME_MODES)}")
        if self.device not in DEVICES:
            raise UsageError(f"--device {self.device!r}: use one of {', '.join(DEVICES)}")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise UsageError(f"--percentiles {lo},{hi}: need 0 <= low < high <= 100")

    def result_params(self) -> dict[str, Any]:
        """The hyperparameters that change what training produces (the cache key and ``config.json``)."""
        skip = {"common", "run_id", "workers", "cache_dir", "resume", "max_unreadable", "device"}
        data = {k: v for k, v in asdict(self).items() if k not in skip}
        data["percentiles"] = list(self.percentiles)
        return data


def _positive(flag: str, value: float) -> None:
    if not value > 0:
        raise UsageError(f"{flag} {value}: must be greater than 0")


def _in_range(flag: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise UsageError(f"{flag} {value}: must be between {lo} and {hi}")


def _resume_mode(value: Any) -> str:
    """``--resume`` alone is ``required``; YAML booleans map to ``required``/``off``; else a mode name."""
    if isinstance(value, bool):
        return "required" if value else "off"
    text = str(value).strip().lower()
    mode = {"true": "required", "yes": "required", "false": "off", "no": "off"}.get(text, text)
    if mode not in RESUME_MODES:
        raise UsageError(f"--resume {value!r}: use --resume (required), --resume auto or --no-resume")
    return mode


def _percentiles(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError as exc:
        raise UsageError(f"--percentiles {text!r}: expected two numbers like 0.5,99.5") from exc
    return lo, hi


# flag dest -> (type converter, help). Booleans use --x/--no-x. Every key here is also a valid YAML key.
_OPTIONS: dict[str, tuple[Any, str]] = {
    "dataset": (str, "dataset name: trains on splits/<dataset>/"),
    "run_id": (str, "run id: outputs go to runs/<run-id>/ (derived from the cache key when empty)"),
    "model": (str, f"network: {', '.join(NETWORKS)}"),
    "epochs": (int, "maximum epochs"),
    "image_size": (int, "square input size in pixels"),
    "batch_size": (int, "training batch size"),
    "seed": (int, "seed for initialisation, shuffling and augmentation"),
    "lr": (float, "peak AdamW learning rate"),
    "weight_decay": (float, "AdamW weight decay"),
    "warmup_epochs": (float, "linear warm-up epochs before the cosine decay"),
    "min_lr_ratio": (float, "final learning rate as a fraction of --lr"),
    "grad_clip": (float, "clip the gradient norm to this (0 disables)"),
    "class_weights": (bool, "weight the loss by inverse class frequency"),
    "label_smoothing": (float, "cross-entropy label smoothing"),
    "patience": (int, "early stopping patience in epochs (0 disables)"),
    "monitor": (str, f"validation metric for best model and early stopping: {', '.join(MONITORS)}"),
    "min_delta": (float, "smallest improvement of --monitor that counts"),
    "augment": (bool, "random rotation, flip, zoom and noise on training images"),
    "rotate_deg": (float, "maximum rotation in degrees"),
    "flip_prob": (float, "probability of a horizontal flip"),
    "zoom": (float, "maximum zoom change (0.1 = 0.9x..1.1x)"),
    "noise_std": (float, "standard deviation of Gaussian noise on [0, 1] intensities"),
    "noise_prob": (float, "probability of adding noise to an image"),
    "percentiles": (_percentiles, "intensity percentiles mapped to [0, 1], e.g. 0.5,99.5 (default 0,100)"),
    "amp": (str, "mixed precision: auto, on or off"),
    "device": (str, "auto, cpu or cuda"),
    "workers": (int, "data loader workers and decode processes (-1: automatic)"),
    "max_unreadable": (float, "fraction of unreadable images tolerated before exit 3"),
    "cache_dir": (str, "local cache folder (env IRMSIA_CACHE_DIR)"),
    "resume": (
        _resume_mode,
        "continue from the run's last checkpoint: alone, an error if there is none; 'auto': if there is one",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = StageArgumentParser(
        prog="irmsia-train", description="Train a MONAI classifier on a split; writes runs/<run-id>/."
    )
    parser.add_argument("--config", help="YAML file whose keys mirror these flags; flags override it")
    for dest, (kind, text) in _OPTIONS.items():
        flag = "--" + dest.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif dest == "resume":
            parser.add_argument(flag, dest=dest, nargs="?", const="required", default=None, help=text)
            parser.add_argument("--no-resume", dest=dest, action="store_const", const="off", help="start fresh")
        else:
            parser.add_argument(flag, dest=dest, default=None, help=text)
    add_common_arguments(parser)
    return parser


def load_config(path: str) -> dict[str, Any]:
    """The YAML file as ``{dest: value}``; an unknown key or a non-mapping is a ``UsageError`` naming it."""
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
    out: dict[str, Any] = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in _OPTIONS:
            raise UsageError(f"--config {path!r}: unknown key {key!r}; valid keys: {', '.join(_OPTIONS)}")
        out[dest] = value
    return out


def _convert(dest: str, value: Any, source: str) -> Any:
    kind = _OPTIONS[dest][0]
    flag = "--" + dest.replace("_", "-")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1"):
            return True
        if str(value).lower() in ("false", "no", "0"):
            return False
        raise UsageError(f"{source} {dest}: {value!r} is not true or false")
    if dest == "percentiles" and isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{flag} {value!r}: expected {getattr(kind, '__name__', 'a value')}") from exc


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> TrainSettings:
    """Flags over ``--config`` over defaults; ``UsageError`` (exit 2) on anything invalid."""
    args = build_parser().parse_args(list(argv))
    values: dict[str, Any] = {}
    if args.config:
        values.update({k: _convert(k, v, f"--config {args.config!r}") for k, v in load_config(args.config).items()})
    for dest in _OPTIONS:
        given = getattr(args, dest)
        if given is None:
            continue
        if given == "":  # Argo passes every argument; an empty value means "not set"
            continue
        values[dest] = _convert(dest, given, "flag")
    if "cache_dir" not in values and env.get("IRMSIA_CACHE_DIR"):
        values["cache_dir"] = env["IRMSIA_CACHE_DIR"]
    if not values.get("dataset"):
        raise UsageError("--dataset is required (the split to train on: splits/<dataset>/)")
    if values.get("run_id") == "":
        values["run_id"] = None
    return TrainSettings(common=common_settings(args, env), **values)
