"""GPU throughput bench (issue 21): ours against MONAI's tutorial loop and MONAI's fast-training recipe, same run.

Per network (resnet18 and densenet121 at 224²; DenseNet121 3-D classifying and MONAI's 3-D UNet segmenting 96³
volumes), on the same synthetic data and batch. The 2-D data is a sealed split of synthetic DICOMs; the volumes are
synthetic 96³ CT-like NIfTI files (half with a bright blob, its mask the segmentation label map) that go through the
real collect (``--source local``) -> index -> split stages, one dataset per task; every contender reads the files
the split's datalist names.

(a) ``tutorial``: the plain MONAI tutorial loop: ``LoadImaged`` + ``EnsureChannelFirstd`` + ``ScaleIntensityd`` +
    ``Resized`` + random rotate/flip/zoom/noise per item per epoch on the CPU (label maps alongside, nearest
    neighbour), ``monai.data.Dataset``, a shuffled ``DataLoader`` with one worker per core, fp32; cross-entropy, or
    MONAI's ``DiceCELoss`` for segmentation.
(b) ``monai-fast``: MONAI's fast-training recipe (tutorials ``acceleration/fast_training_tutorial``): the
    deterministic transforms cached once by ``CacheDataset`` and ending in ``EnsureTyped(device=cuda)``, the random
    transforms then run on the GPU, meta tracking off (``set_track_meta(False)``), ``ThreadDataLoader`` with
    ``num_workers=0``, AMP (autocast fp16 + GradScaler), ``cudnn.benchmark``.
(c) ``ours``: the train stage itself: ``jobs.train.cache.load_images`` (decode once into the memory-mapped float16
    cache, masks as uint8 class indices) and ``jobs.train.loop.Trainer.train_epoch`` (batch gathering, batch
    augmentation on the device, AMP, channels_last(_3d), fused AdamW), with its defaults; ``--dims 3`` and
    ``--task segmentation`` for the volume rows.
(d) ``ours`` with one train option changed at a time: ``--compile default``, ``--compile reduce-overhead`` (CUDA
    graphs), ``--batch-size x4`` with ``--lr-base-batch`` (linear LR scaling, warm-up 1 epoch), ``--prefetch``
    (pinned memory + side-stream copy), ``--device-cache on`` (the float16 split on the device), and the device
    cache with CUDA graphs together (the volume rows: prefetch, device cache, compile, device cache + CUDA graphs).

All use AdamW at lr 1e-3 (scaled in the x4 case) and the same augmentation ranges; epoch 1 warms up (compile, cuDNN
autotuning, worker start), epochs 2.. are timed. Per case: images/s, GPU busy % (NVML, ``jobs.ml.nvml``, sampled
every 100 ms during the timed epochs), data-wait fraction (time blocked on the next batch / epoch time), the ratio
to (a) and (b), validation accuracy where the case trains through the train stage. Cheap cases run first for every
network, the compile cases last, so a run cut by ``--budget-s`` (or SIGINT) still reports every baseline; the JSON
is rewritten after every case, the markdown table is appended to ``--results`` at the end. The "val score" column
is the train stage's val accuracy (classification) or mean Dice (segmentation) after the timed epochs.

The DDP scaling case says why it is not measured while the train stage has no DDP. ``--device cpu --quick`` runs
every code path with tiny sizes and the smallest networks (tests/bench/test_gpu_bench.py).

    PYTHONPATH=. python bench/gpu_bench.py                       # CUDA; bench/gpu_check.sh is the entry point
    PYTHONPATH=. python bench/gpu_bench.py --device cpu --quick --results /tmp/r.md --out /tmp/o
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from jobs.core.cpus import openmp_defaults  # noqa: E402

os.environ.update(openmp_defaults(os.environ))  # as irmsia-train does, before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS_HEADING = "## GPU throughput (`bench/gpu_bench.py`, `bench/gpu_check.sh`, issue 21)"
MODELS_2D = ("resnet18", "densenet121")
# The volume rows: table name -> (network in jobs.ml.networks, task); quick: the smallest networks, same paths.
MODELS_3D: dict[str, tuple[str, str]] = {
    "densenet121-3d": ("densenet121", "classification"),
    "unet-3d": ("unet", "segmentation"),
}
QUICK_MODELS_3D: dict[str, tuple[str, str]] = {
    "small-cnn-3d": ("small-cnn", "classification"),
    "small-unet-3d": ("small-unet", "segmentation"),
}
# (name, train-option overrides; "batch_x" multiplies the batch); cheap ones first, then the compile cases.
OURS_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ours", {}),
    ("ours + batch x4, LR scaled", {"batch_x": 4}),
    ("ours + pinned prefetch", {"prefetch": True}),
    ("ours + device cache", {"device_cache": "on"}),
    ("ours + compile", {"compile": "default"}),
    ("ours + CUDA graphs", {"compile": "reduce-overhead"}),
    ("ours + device cache + CUDA graphs", {"device_cache": "on", "compile": "reduce-overhead"}),
)
# The volume rows' options: batch x4 of 96³ volumes is left out (memory, and the 2-D rows already measure it).
VOLUME_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = tuple(
    (name, opts)
    for name, opts in OURS_VARIANTS
    if name
    in ("ours", "ours + pinned prefetch", "ours + device cache", "ours + compile", "ours + device cache + CUDA graphs")
)
COMPILE_CASES = {name for name, opts in OURS_VARIANTS if "compile" in opts}
AUGMENT = {"rotate_deg": 10.0, "flip_prob": 0.5, "zoom": 0.1, "noise_std": 0.02, "noise_prob": 0.5}
LR = 1e-3


# -- measurement -------------------------------------------------------------------------------------------------
class BusySampler:
    """GPU utilisation from NVML every 100 ms in a thread, between ``start`` and ``stop`` (None without NVML)."""

    def __init__(self, gpu: int = 0) -> None:
        self.gpu = gpu
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> BusySampler:
        from jobs.ml.nvml import read_gpus

        if not read_gpus():
            return self
        self._thread = threading.Thread(target=self._run, args=(read_gpus,), daemon=True)
        self._thread.start()
        return self

    def _run(self, read_gpus: Callable[[], list[Any]]) -> None:
        while not self._stop.wait(0.1):
            for sample in read_gpus():
                if sample.index == self.gpu:
                    self.samples.append(100.0 * sample.utilization)

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return round(float(np.mean(self.samples)), 1) if self.samples else None


@dataclass
class Case:
    """One row of the table."""

    network: str
    name: str
    batch_size: int
    status: str = "ok"
    images_per_s: float | None = None
    gpu_busy_pct: float | None = None
    data_wait_fraction: float | None = None
    val_score: float | None = None
    setup_s: float | None = None
    compile_s: float | None = None
    peak_mem_mib: float | None = None
    notes: str = ""
    vs_tutorial: float | None = None
    vs_monai_fast: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def timed_epochs(run_epoch: Callable[[int], dict[str, float]], epochs: int, device: torch.device) -> dict[str, Any]:
    """Epoch 1 warms up; epochs 2.. are timed with the busy sampler running."""
    run_epoch(1)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler = BusySampler(device.index or 0).start()
    stats = [run_epoch(e) for e in range(2, epochs + 1)]
    busy = sampler.stop()
    seen = sum(s["images"] for s in stats)
    elapsed = sum(s["epoch_s"] for s in stats)
    return {
        "images_per_s": round(seen / elapsed, 1) if elapsed > 0 else None,
        "data_wait_fraction": round(sum(s["wait_s"] for s in stats) / elapsed, 4) if elapsed > 0 else None,
        "gpu_busy_pct": busy,
        "peak_mem_mib": round(torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else None,
    }


def monai_loss(task: str) -> Callable[[torch.Tensor, Any, torch.device], torch.Tensor]:
    """The tutorial's loss: cross-entropy on class indices, or ``DiceCELoss`` on a ``(N, 1, *spatial)`` label map."""
    if task == "segmentation":
        from monai.losses import DiceCELoss

        dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
        return lambda logits, label, device: dice_ce(logits.float(), torch.as_tensor(label).to(device).float())
    return lambda logits, label, device: torch.nn.functional.cross_entropy(
        logits.float(), torch.as_tensor(label).to(device, non_blocking=True).long()
    )


def monai_epoch(
    loader: Any, model: torch.nn.Module, optimizer: Any, scaler: Any, device: torch.device, amp: bool, task: str
) -> Callable[[int], dict[str, float]]:
    """One epoch of the MONAI-style loop (dict batches, image to the device, optional autocast fp16)."""
    loss_of = monai_loss(task)

    def run(_epoch: int) -> dict[str, float]:
        model.train()
        seen, wait = 0, 0.0
        started = mark = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - mark
            x = torch.as_tensor(batch["image"]).to(device, non_blocking=True).float()
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = loss_of(model(x), batch["label"], device)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += len(x)
            mark = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return {"images": seen, "epoch_s": time.perf_counter() - started, "wait_s": wait}

    return run


# -- data --------------------------------------------------------------------------------------------------------
def write_images(root: Path, images: int, size: int) -> tuple[str, list[dict[str, Any]]]:
    """A sealed synthetic 2-D split (16-bit DICOM at the training size) in a file store; its training items."""
    from jobs.core.store import open_store
    from tests.support.synthetic_split import write_split

    store_path = str(root / "store")
    store = open_store(store_path)
    write_split(store, "gpubench", counts={"train": images, "val": max(16, images // 8), "test": 0}, size=size)
    datalist = json.loads(store.get_bytes("splits/gpubench/datalist.json"))
    files = [{"image": os.path.join(store_path, r["image"]), "label": r["label"]} for r in datalist["training"]]
    return store_path, files


def _stage(module: str, argv: list[str]) -> None:
    """One stage's console entry point in-process (as bench/task_cases.py runs them); a failure stops the bench."""
    main = __import__(f"jobs.{module}.__main__", fromlist=["main"]).main
    code = main([*argv, "--log-format", "text", "--log-level", "warning"])
    if code != 0:
        raise SystemExit(f"irmsia-{module} {' '.join(argv)} exited {code}")


VOLUME_DATASETS = {"classification": "gpubench-3d", "segmentation": "gpubench-seg3d"}


def write_volumes(root: Path, volumes: int, size: int) -> dict[str, dict[str, Any]]:
    """Synthetic CT-like volumes (half carry a bright blob) as NIfTI, each written twice: ``<label>/V<n>.nii``
    for classification and Decathlon-style ``imagesTr/case_<n>.nii`` + ``labelsTr/`` (the blob's mask) for
    segmentation; both through the real collect -> index -> split into one folder store. Per task: the store, the
    dataset and the MONAI items of its training split (absolute paths; a class index or the mask's file)."""
    from jobs.collect.sources.image_files import nifti_bytes

    rng = np.random.default_rng(42)
    grid = np.stack(np.mgrid[0:size, 0:size, 0:size]).astype(np.float32) / size
    classes, decathlon = root / "raw" / "classes", root / "raw" / "decathlon" / "Task01_Bench"
    for folder in (classes / "blob", classes / "clear", decathlon / "imagesTr", decathlon / "labelsTr"):
        folder.mkdir(parents=True, exist_ok=True)
    for n in range(volumes):
        blob = np.zeros((size,) * 3, np.float32)
        if n % 2:
            centre = rng.uniform(0.3, 0.7, 3).reshape(3, 1, 1, 1)
            blob = 0.6 * np.exp(-((grid - centre) ** 2).sum(0) / (2 * 0.12**2))
        vol = np.clip(0.3 + rng.normal(0, 0.03, blob.shape).astype(np.float32) + blob, 0, 1)
        stored = np.rint(vol * 1000).astype(np.int16)  # CT-like stored values
        image = nifti_bytes(stored, (1.5, 1.0, 1.0))
        (classes / ("blob" if n % 2 else "clear") / f"V{n:04d}.nii").write_bytes(image)
        (decathlon / "imagesTr" / f"case_{n:04d}.nii").write_bytes(image)
        mask = (blob > 0.3).astype(np.uint8)
        (decathlon / "labelsTr" / f"case_{n:04d}.nii").write_bytes(nifti_bytes(mask, (1.5, 1.0, 1.0)))
    store = str(root / "store3d")
    out: dict[str, dict[str, Any]] = {}
    for task, source in (("classification", classes), ("segmentation", decathlon.parent)):
        dataset = VOLUME_DATASETS[task]
        common = ["--dataset", dataset, "--store", store]
        _stage("collect", ["--source", "local", "--path", str(source), *common])
        _stage("index", common)
        _stage("split", [*common, "--task", task])
        datalist = json.loads(Path(store, "splits", dataset, "datalist.json").read_text())
        label = (lambda r: r["label"]) if task == "classification" else (lambda r: os.path.join(store, r["label"]))
        files = [{"image": os.path.join(store, r["image"]), "label": label(r)} for r in datalist["training"]]
        out[task] = {"store": store, "dataset": dataset, "files": files}
    return out


# -- (a) and (b): the MONAI contenders ---------------------------------------------------------------------------
def build_model(network: str, dims: int, device: torch.device) -> torch.nn.Module:
    """The same network ours trains (``jobs.ml.networks``: MONAI's DenseNet121/UNet), 1 channel, 2 outputs."""
    from jobs.ml.networks import build_network

    return build_network(network, 1, 2, dims).to(device)


def _transforms(
    spatial: int, size: int, device: torch.device | None, task: str = "classification"
) -> tuple[list[Any], list[Any]]:
    """(deterministic, random) MONAI transforms; ``device`` set: the deterministic ones end on it (the recipe).
    Segmentation: the label map is loaded, resized and moved with the image (nearest neighbour)."""
    from monai.transforms import (
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        RandFlipd,
        RandGaussianNoised,
        RandRotated,
        RandZoomd,
        Resized,
        ScaleIntensityd,
    )

    angle = math.radians(AUGMENT["rotate_deg"])
    seg = task == "segmentation"
    keys = ("image", "label") if seg else ("image",)
    sizing = {"mode": ("area", "nearest")} if seg else {}
    smooth = {"mode": ("bilinear", "nearest")} if seg else {}
    deterministic: list[Any] = [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        ScaleIntensityd(keys="image"),
        Resized(keys=keys, spatial_size=(size,) * spatial, **sizing),
    ]
    if device is not None:
        deterministic.append(EnsureTyped(keys=("image", "label"), device=device, track_meta=False))
    zoom = AUGMENT["zoom"]
    rotate = {"range_x": angle, "range_y": angle, "range_z": angle} if spatial == 3 else {"range_x": angle}
    random_ = [
        RandRotated(keys=keys, prob=1.0, keep_size=True, **rotate, **smooth),
        RandFlipd(keys=keys, spatial_axis=spatial - 1, prob=AUGMENT["flip_prob"]),
        RandZoomd(keys=keys, min_zoom=1 - zoom, max_zoom=1 + zoom, prob=1.0, keep_size=True, **sizing),
        RandGaussianNoised(keys="image", prob=AUGMENT["noise_prob"], std=AUGMENT["noise_std"]),
    ]
    return deterministic, random_


def run_tutorial(
    network: str,
    files: list[dict[str, Any]],
    size: int,
    batch: int,
    args: argparse.Namespace,
    *,
    dims: int = 2,
    task: str = "classification",
) -> dict[str, Any]:
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose
    from monai.utils import set_determinism

    set_determinism(seed=42)
    device = torch.device(args.device)
    deterministic, random_ = _transforms(dims, size, None, task)
    loader = DataLoader(
        Dataset(files, Compose(deterministic + random_)),
        batch_size=batch,
        shuffle=True,
        num_workers=args.workers,
        drop_last=len(files) > batch,
        persistent_workers=args.workers > 0,
    )
    model = build_model(network, dims, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    run = monai_epoch(loader, model, optimizer, scaler, device, amp=False, task=task)
    result = timed_epochs(run, args.epochs, device)
    set_determinism(seed=None)
    return result


def run_monai_fast(
    network: str,
    files: list[dict[str, Any]],
    size: int,
    batch: int,
    args: argparse.Namespace,
    *,
    dims: int = 2,
    task: str = "classification",
) -> dict[str, Any]:
    from monai.data import CacheDataset, ThreadDataLoader, set_track_meta
    from monai.transforms import Compose
    from monai.utils import set_determinism

    set_determinism(seed=42)
    device = torch.device(args.device)
    deterministic, random_ = _transforms(dims, size, device, task)
    started = time.perf_counter()
    dataset = CacheDataset(files, Compose(deterministic + random_), cache_rate=1.0, num_workers=args.workers)
    setup_s = time.perf_counter() - started
    set_track_meta(False)  # as the recipe: plain tensors through the random transforms and the network
    try:
        loader = ThreadDataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0, drop_last=len(files) > batch)
        model = build_model(network, dims, device)
        torch.backends.cudnn.benchmark = True
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        amp = device.type == "cuda"  # the recipe's AMP is fp16 on the GPU; on a CPU dry run it stays fp32
        run = monai_epoch(loader, model, optimizer, scaler, device, amp, task)
        result = timed_epochs(run, args.epochs, device)
    finally:
        set_track_meta(True)
        set_determinism(seed=None)
    return {**result, "setup_s": round(setup_s, 2)}


# -- (c) and (d): the train stage ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """What one ours row trains: the network, its dataset, task, dims and input side."""

    model: str
    dataset: str = "gpubench"
    task: str = "classification"
    dims: int = 2
    size: int = 224


def run_ours(target: Target, store_path: str, cache_dir: str, batch: int, options: dict[str, Any], args) -> dict:
    from jobs.core.settings import CommonSettings
    from jobs.core.store import open_store
    from jobs.train.cache import label_values, load_images
    from jobs.train.data import read_split
    from jobs.train.loop import Trainer, pick_hardware
    from jobs.train.settings import TrainSettings
    from jobs.train.stage import preprocessing, segmentation_classes

    options = dict(options)
    factor = options.pop("batch_x", 1)
    if factor != 1:
        options.update(batch_size=batch * factor, lr_base_batch=batch)
    segmentation = target.task == "segmentation"
    values: dict[str, Any] = {
        "dataset": target.dataset,
        "task": target.task,
        "dims": target.dims,
        "monitor": "dice" if segmentation else "accuracy",
        "model": target.model,
        "epochs": args.epochs,
        "image_size": target.size,
        "batch_size": batch,
        "lr": LR,
        "warmup_epochs": 1.0,
        "device": args.device,
        "cache_dir": cache_dir,
        **AUGMENT,
    }
    settings = TrainSettings(common=CommonSettings(store=store_path), **(values | options))
    store = open_store(store_path)
    started = time.perf_counter()
    split = read_split(store, target.dataset, target.task, target.dims)
    prep = preprocessing(settings)
    sets, channels = load_images(store, split, prep, cache_dir, workers=args.workers, max_unreadable=0)
    classes = segmentation_classes(label_values(cache_dir, split, prep)) if segmentation else split.classes
    hardware = pick_hardware(args.device, settings.amp)
    trainer = Trainer(settings, sets, classes, channels, hardware)
    setup_s = time.perf_counter() - started

    def epoch(e: int) -> dict[str, float]:
        stats = trainer.train_epoch(e)
        images = stats["images_per_s"] * stats["epoch_s"]
        return {"images": images, "epoch_s": stats["epoch_s"], "wait_s": stats["data_wait_fraction"] * stats["epoch_s"]}

    result = timed_epochs(epoch, args.epochs, hardware.device)
    forward = trainer.compiled.describe()
    score = trainer.evaluate("val")["dice" if segmentation else "accuracy"] if len(sets["val"]) else None
    return {
        **result,
        "setup_s": round(setup_s, 2),
        "val_score": None if score is None else round(float(score), 4),
        "compile_s": forward["compile_s"],
        "batch_size": settings.batch_size,
        "notes": ", ".join(
            n
            for n in (
                f"compile fell back: {forward['compile_fallback']}" if forward["compile_fallback"] else "",
                "device cache" if trainer.data_path["device_cache"] else "",
                "prefetch stream" if trainer.data_path["prefetch"] else "",
                f"lr {trainer.optimizer.param_groups[0]['initial_lr']:g}" if factor != 1 else "",
                "val dice" if segmentation else "",
                f"amp {hardware.describe()['amp']}",
            )
            if n
        ),
    }


# -- orchestration -------------------------------------------------------------------------------------------------
def plan_cases(args: argparse.Namespace) -> list[Case]:
    """Every row in run order: cheap ones for all networks first, the compile cases last."""
    cheap: list[Case] = []
    costly: list[Case] = []
    for network in args.models:
        cheap += [Case(network, "(a) tutorial", args.batch_size), Case(network, "(b) monai-fast", args.batch_size)]
        for name, _ in OURS_VARIANTS:
            (costly if name in COMPILE_CASES else cheap).append(Case(network, name, args.batch_size))
    if args.volumes:
        for network in args.volume_models:
            cheap += [Case(network, name, args.volume_batch) for name in ("(a) tutorial", "(b) monai-fast")]
            for name, _ in VOLUME_VARIANTS:
                (costly if name in COMPILE_CASES else cheap).append(Case(network, name, args.volume_batch))
    return cheap + costly


def run_case(case: Case, data: dict[str, Any], args: argparse.Namespace) -> None:
    options = dict(OURS_VARIANTS).get(case.name)
    if case.network in args.volume_models:
        model, task = args.volume_models[case.network]
        volumes = data["volumes"][task]
        target = Target(model, volumes["dataset"], task, 3, args.volume_size)
        store, files, size = volumes["store"], volumes["files"], args.volume_size
    else:
        target, store, files, size = (
            Target(case.network, size=args.image_size),
            data["store"],
            data["files"],
            args.image_size,
        )
    if case.name.startswith(("(a)", "(b)")):
        fn = run_tutorial if case.name.startswith("(a)") else run_monai_fast
        result = fn(target.model, files, size, case.batch_size, args, dims=target.dims, task=target.task)
    else:
        assert options is not None, case.name
        result = run_ours(target, store, data["cache"], case.batch_size, options, args)
    for key, value in result.items():
        setattr(case, key, value)


def add_ratios(cases: list[Case]) -> None:
    for case in cases:
        if case.images_per_s is None:
            continue
        base = {c.name: c.images_per_s for c in cases if c.network == case.network and c.images_per_s}
        if tutorial := base.get("(a) tutorial"):
            case.vs_tutorial = round(case.images_per_s / tutorial, 2)
        if fast := base.get("(b) monai-fast"):
            case.vs_monai_fast = round(case.images_per_s / fast, 2)


def ddp_case(args: argparse.Namespace) -> dict[str, Any]:
    """DDP scaling is measured only when the machine has several GPUs and the train stage can use them."""
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    from jobs.train import loop

    has_ddp = "DistributedDataParallel" in Path(loop.__file__).read_text()
    if gpus < 2:
        return {"status": "skipped", "reason": f"{gpus} GPU(s) visible; scaling needs at least 2"}
    if not has_ddp:
        return {"status": "n/a", "reason": f"{gpus} GPUs, but the train stage has no DDP yet"}
    return {"status": "n/a", "reason": "DDP present in the train stage; add its launcher to this bench"}


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import monai

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "monai": monai.__version__,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "device": args.device,
    }
    if args.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_count"] = torch.cuda.device_count()
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    else:
        from jobs.train.loop import _cpu_name

        env["gpu"] = None
        env["cpu"] = _cpu_name()
    return env


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f} %"
    if kind == "x":
        return f"{value:.2f}×"
    if kind == "int":
        return f"{value:,.0f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    env, cfg = report["environment"], report["config"]
    machine = env["gpu"] or f"CPU ({env.get('cpu')})"
    lines = [
        f"### {report['date']}: {machine}, {env['cpu_cores']} cores{' (quick CPU dry run)' if cfg['quick'] else ''}",
        "",
        f"torch {env['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}), MONAI {env['monai']}. "
        f"2-D: {cfg['images']} synthetic DICOMs at {cfg['image_size']}², batch {cfg['batch_size']}; 3-D: "
        f"{cfg['volumes']} NIfTI volumes at {cfg['volume_size']}³ through collect/index/split (train split of each "
        f"task), batch {cfg['volume_batch']}; {cfg['epochs']} epochs, "
        f"epoch 1 untimed; {report['elapsed_s']} s in all (budget {cfg['budget_s']} s).",
        "",
        "| network | case | batch | images/s | GPU busy | data wait | vs (a) | vs (b) | val score | setup s | "
        "compile s | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in report["cases"]:
        status = "" if c["status"] == "ok" else f"{c['status']}: "
        busy = "–" if c["gpu_busy_pct"] is None else f"{c['gpu_busy_pct']:.0f} %"
        lines.append(
            f"| {c['network']} | {c['name']} | {c['batch_size']} | {_fmt(c['images_per_s'], 'int')} | {busy} | "
            f"{_fmt(c['data_wait_fraction'], 'pct')} | {_fmt(c['vs_tutorial'], 'x')} | "
            f"{_fmt(c['vs_monai_fast'], 'x')} | {_fmt(c['val_score'])} | {_fmt(c['setup_s'])} | "
            f"{_fmt(c['compile_s'])} | {status}{c['notes']} |"
        )
    ddp = report["ddp"]
    lines += ["", f"DDP scaling: {ddp['status']} ({ddp['reason']}).", ""]
    return "\n".join(lines)


def append_results(path: Path, section: str) -> None:
    """Add ``section`` at the end of the bench's part of RESULTS.md (before the next ``## `` heading); the heading is
    added once, at the end of the file."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if RESULTS_HEADING not in text:
        text = text.rstrip("\n") + f"\n\n{RESULTS_HEADING}\n"
    start = text.index(RESULTS_HEADING) + len(RESULTS_HEADING)
    following = text.find("\n## ", start)
    end = len(text) if following < 0 else following + 1
    head, tail = text[:end].rstrip("\n"), text[end:]
    path.write_text(head + "\n\n" + section.rstrip("\n") + "\n" + ("\n" + tail if tail else ""), encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a CPU dry run of every code path")
    parser.add_argument("--models", help="comma-separated 2-D networks (default resnet18,densenet121; quick small-cnn)")
    parser.add_argument("--images", type=int, help="training images (default 2048; quick 16)")
    parser.add_argument("--image-size", type=int, help="training size in pixels (default 224; quick 32)")
    parser.add_argument("--batch-size", type=int, help="batch of every 2-D case but x4 (default 128; quick 4)")
    parser.add_argument(
        "--volumes", type=int, help="3-D volumes per task (split 70/15/15-ish), 0 skips 3-D (default 64; quick 8)"
    )
    parser.add_argument("--volume-size", type=int, help="3-D edge in voxels (default 96; quick 16)")
    parser.add_argument("--volume-batch", type=int, help="3-D batch (default 8; quick 2)")
    parser.add_argument("--epochs", type=int, help="epochs per case, epoch 1 untimed (default 3; quick 2)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="loader/decode processes")
    parser.add_argument("--budget-s", type=float, default=340.0, help="start no case after this many seconds")
    parser.add_argument("--cases", help="run only cases whose name contains one of these comma-separated words")
    parser.add_argument("--out", default=os.environ.get("OUT") or None, help="folder for gpu_bench.json")
    parser.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"), help="markdown file to append to")
    args = parser.parse_args(argv)
    defaults = {"images": 2048, "image_size": 224, "batch_size": 128, "volumes": 64, "volume_size": 96}
    defaults |= {"volume_batch": 8, "epochs": 3}
    if args.quick:
        defaults = {"images": 16, "image_size": 32, "batch_size": 4, "volumes": 8, "volume_size": 16}
        defaults |= {"volume_batch": 2, "epochs": 2}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # quick: the smallest network, so the compile cases take seconds on a CPU, not minutes; same code paths
    args.models = tuple(args.models.split(",")) if args.models else ("small-cnn",) if args.quick else MODELS_2D
    args.volume_models = QUICK_MODELS_3D if args.quick else MODELS_3D
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is not timed)")
    if args.images < 4 * args.batch_size:
        parser.error("--images must be at least 4 x --batch-size (the x4 case needs one full batch)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device visible to torch; --device cpu --quick dry-runs the script", file=sys.stderr)
        return 2
    started = time.perf_counter()
    cases = plan_cases(args)
    if args.cases:
        words = [w.strip().lower() for w in args.cases.split(",")]
        cases = [c for c in cases if any(w in f"{c.network} {c.name}".lower() for w in words)]
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": environment(args),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "results", "volume_models")},
        "ddp": ddp_case(args),
        "cases": [],
    }
    print(json.dumps(report["environment"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="irmsia-gpu-bench-") as tmp:
        data: dict[str, Any] = {"cache": f"{tmp}/cache"}
        data["store"], data["files"] = write_images(Path(tmp), args.images, args.image_size)
        if args.volumes and any(c.network in args.volume_models for c in cases):
            data["volumes"] = write_volumes(Path(tmp) / "volumes", args.volumes, args.volume_size)
        report["data_s"] = round(time.perf_counter() - started, 1)
        print(f"synthetic data written in {report['data_s']} s", flush=True)
        try:
            for case in cases:
                if case.status == "ok" and time.perf_counter() - started > args.budget_s:
                    case.status, case.notes = "skipped", f"time budget {args.budget_s:.0f} s spent"
                if case.status == "ok":
                    try:
                        run_case(case, data, args)
                    except Exception as exc:  # one failing case must not lose the others' figures
                        case.status, case.notes = "failed", f"{type(exc).__name__}: {exc}"[:300]
                add_ratios(cases)
                report["cases"] = [vars(c) for c in cases]
                report["elapsed_s"] = round(time.perf_counter() - started, 1)
                save_json(report, args.out)
                print(f"{case.network:<15} {case.name:<36} {case.status:<8} {_fmt(case.images_per_s, 'int'):>9} "
                      f"img/s  busy {case.gpu_busy_pct}  wait {_fmt(case.data_wait_fraction, 'pct')}  "
                      f"{case.notes}", flush=True)  # fmt: skip
        except KeyboardInterrupt:  # SIGINT from the wrapper's timeout: report what was measured
            for case in cases:
                if case.status == "ok" and case.images_per_s is None:
                    case.status, case.notes = "skipped", "interrupted"
            report["cases"] = [vars(c) for c in cases]
    add_ratios(cases)
    report["cases"] = [vars(c) for c in cases]
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    save_json(report, args.out)
    section = markdown(report)
    if args.results:
        append_results(Path(args.results), section)
    print(section)
    return 0 if all(c.status in ("ok", "n/a", "skipped") for c in cases) else 1


def save_json(report: dict[str, Any], out: str | None) -> None:
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "gpu_bench.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
