"""The train benchmark's 3-D and segmentation cases, and the decoded cache's peak RSS against the number of volumes.

Each dataset goes through the real collect -> index -> split stages into a folder store: ``3d`` is NIfTI CT
volumes (the volume demo's generator, one ``<label>/<patient>.nii.gz`` each, through ``--source local``), and
``segmentation`` / ``segmentation-3d`` are the demo's lgg-style TIFF slices + masks and Decathlon-style NIfTI
label maps. Ours: the split decoded once into the memory-mapped cache, then ``Trainer.train_epoch``. The MONAI
tutorial pattern: ``monai.data.Dataset`` + ``LoadImaged`` + resize + random flip/rotate/zoom/noise on every item
every epoch, a shuffled ``DataLoader`` with ``--workers`` processes, fp32, the same network, loss and batch size.
Epochs 2.. are timed for both.

``rss``: a child process per size decodes a 3-D dataset of N volumes into a fresh cache and reports its peak RSS
above what it held before, and the cache's size on disk; memory-mapped, the peak stays flat as N grows.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _stage(module: str, argv: list[str]) -> None:
    """Run one stage's console entry point in-process; a failure stops the benchmark."""
    main = __import__(f"jobs.{module}.__main__", fromlist=["main"]).main
    code = main([*argv, "--log-format", "text", "--log-level", "warning"])
    if code != 0:
        raise SystemExit(f"irmsia-{module} {' '.join(argv)} exited {code}")


def _nifti_volumes(out: Path, patients: int, seed: int = 42) -> None:
    """``<label>/<patient>.nii.gz`` CT volumes with the volume demo's anatomy and nodules."""
    from jobs.collect.sources.demo_volume import CLASSES, SPACING, _volume
    from jobs.collect.sources.image_files import nifti_bytes

    for p in range(patients):
        rng = np.random.default_rng([seed, p, 5])
        label = CLASSES[p % 2]
        (out / label).mkdir(parents=True, exist_ok=True)
        stored = np.clip(np.rint(_volume(rng, label == "nodule")), -1024, 3071).astype(np.int16)
        (out / label / f"V{p + 1:04d}.nii.gz").write_bytes(gzip.compress(nifti_bytes(stored, SPACING), mtime=0))


def _decathlon_case(root: Path, p: int, side: int, seed: int) -> None:
    """Case ``p`` under ``root/imagesTr`` and ``root/labelsTr``: the segmentation demo's head and two-sphere lesion
    (``jobs.collect.sources.demo_segmentation``) at ``side``³ voxels, gzip level 6."""
    from jobs.collect.sources.demo_segmentation import lesion_case
    from jobs.collect.sources.image_files import nifti_bytes

    stored, lesion = lesion_case(seed, p, side)
    for folder, array in (("imagesTr", stored), ("labelsTr", lesion.astype(np.uint8))):
        (root / folder).mkdir(parents=True, exist_ok=True)
        data = gzip.compress(nifti_bytes(array, (1.5, 1.0, 1.0)), compresslevel=6, mtime=0)
        (root / folder / f"case_{p + 1:03d}.nii.gz").write_bytes(data)


def _decathlon_volumes(out: Path, patients: int, side: int, pool: Path | None = None, seed: int = 42) -> None:
    """``out/Task00_Bench/imagesTr|labelsTr/case_<n>.nii.gz`` of ``side``³; with ``pool``, each case is made once
    there and hard-linked (the RSS case's growing datasets share their first cases)."""
    root = out / "Task00_Bench"
    for p in range(patients):
        if pool is None:
            _decathlon_case(root, p, side, seed)
            continue
        name = f"case_{p + 1:03d}.nii.gz"
        if not (pool / "labelsTr" / name).exists():
            _decathlon_case(pool, p, side, seed)
        for folder in ("imagesTr", "labelsTr"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            os.link(pool / folder / name, root / folder / name)


def build_dataset(
    case: str, root: Path, patients: int, source_size: int = 0, pool: Path | None = None
) -> tuple[str, str, dict[str, Any]]:
    """Collect, index and split ``case``'s dataset into ``root/store``; returns the store, dataset and datalist.

    ``source_size``: for ``segmentation-3d`` Decathlon-style volumes of that side through ``--source local``
    instead of the demo's 32³ ones; for ``segmentation`` the demo's lgg-style slices at that side, not 64²."""
    store = str(root / "store")
    if case == "3d":
        _nifti_volumes(root / "volumes", patients)
        collect = ["--source", "local", "--path", str(root / "volumes")]
    elif case == "segmentation-3d" and source_size:
        _decathlon_volumes(root / "volumes", patients, source_size, pool)
        collect = ["--source", "local", "--path", str(root / "volumes")]
    else:
        collect = ["--source", "demo", "--task", case, "--patients", str(patients)]
    if case == "segmentation" and source_size:  # lgg's real slices are 256² RGB: the demo's generator at that side
        from jobs.collect.sources import demo_segmentation

        demo_segmentation.SIZE = source_size
    dataset = f"bench-{case}"
    common = ["--dataset", dataset, "--store", store]
    _stage("collect", [*collect, *common])
    _stage("index", common)
    task = "classification" if case == "3d" else "segmentation"
    _stage("split", [*common, "--task", task])
    datalist = json.loads((Path(store) / "splits" / dataset / "datalist.json").read_text())
    return store, dataset, datalist


def _window(args: argparse.Namespace) -> tuple[float, float] | None:
    """``--window C,W``: ours maps it to [0, 1] (``TrainSettings.window``), the tutorial by ``ScaleIntensityRanged``."""
    if not args.window:
        return None
    centre, width = (float(v) for v in args.window.split(","))
    return centre, width


def _settings(case: str, store: str, dataset: str, args: argparse.Namespace, cache_dir: str) -> Any:
    from jobs.core.settings import CommonSettings
    from jobs.train.settings import TrainSettings

    segmentation = case != "3d"
    return TrainSettings(
        common=CommonSettings(store=store),
        dataset=dataset,
        task="segmentation" if segmentation else "classification",
        dims=2 if case == "segmentation" else 3,
        model="small-unet" if segmentation else args.model,
        patch_size=args.patch_size if segmentation else 0,
        window=_window(args),
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=0 if args.device == "cpu" else -1,
        amp=args.amp,
        device=args.device,
        cache_dir=cache_dir,
    )


def bench_ours(case: str, store: str, dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    from jobs.core.store import open_store
    from jobs.train.cache import label_values, load_images
    from jobs.train.data import read_split
    from jobs.train.loop import Trainer, pick_hardware
    from jobs.train.stage import preprocessing, segmentation_classes

    settings = _settings(case, store, dataset, args, str(Path(store).parent / "cache"))
    started = time.perf_counter()
    split = read_split(open_store(store), dataset, settings.task, settings.dims, settings.slices)
    prep = preprocessing(settings)
    sets, channels = load_images(
        open_store(store), split, prep, settings.cache_dir, workers=args.workers, max_unreadable=0
    )
    decode_s = time.perf_counter() - started
    classes = split.classes
    if settings.task == "segmentation":
        classes = segmentation_classes(label_values(settings.cache_dir, split, prep))
    hardware = pick_hardware(args.device, args.amp)
    trainer = Trainer(settings, sets, classes, channels, hardware)
    epochs = [trainer.train_epoch(e) for e in range(1, args.epochs + 1)]
    timed = epochs[1:]
    return {
        "items": len(sets["train"]),
        "decode_once_s": round(decode_s, 2),
        "epoch_s": round(float(np.mean([e["epoch_s"] for e in timed])), 3),
        "images_per_s": round(float(np.mean([e["images_per_s"] for e in timed])), 1),
        "data_wait_fraction": round(float(np.mean([e["data_wait_fraction"] for e in timed])), 4),
        "amp": hardware.describe()["amp"],
        "device": hardware.describe()["device_name"],
    }


def _tutorial_transforms(
    case: str, size: int, depth: int, window: tuple[float, float] | None = None, patch: int = 0
) -> Any:
    from monai.transforms import (
        AsDiscreted,
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        RandFlipd,
        RandGaussianNoised,
        RandRotated,
        RandSpatialCropd,
        RandZoomd,
        Resized,
        ScaleIntensityd,
        ScaleIntensityRanged,
    )

    spatial = (size, size) if case == "segmentation" else (depth, size, size)
    keys = ["image"] if case == "3d" else ["image", "label"]
    modes = ["area"] if case == "3d" else ["area", "nearest"]
    smooth = ["bilinear", "nearest"][: len(keys)]  # masks keep their values
    steps: list[Any] = [
        # TIFF slices through PIL (MONAI would otherwise try its DICOM reader on them); volumes by suffix
        LoadImaged(keys=keys, image_only=True, reader="PILReader" if case == "segmentation" else None),
        EnsureChannelFirstd(keys=keys),
    ]
    if window is None:
        steps.append(ScaleIntensityd(keys=keys))
    else:  # the spleen tutorial's fixed intensity range, as ours maps --window
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
        steps.append(ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    if case != "3d":
        steps.append(AsDiscreted(keys="label", threshold=0.5))  # 0/255 and 0/1 masks alike
    steps.append(Resized(keys=keys, spatial_size=spatial, mode=modes))
    if patch:  # one random patch per item, as ours crops (same batch size: no num_samples multiplication)
        steps.append(RandSpatialCropd(keys=keys, roi_size=(patch,) * len(spatial), random_size=False))
    steps += [
        RandRotated(keys=keys, range_x=np.radians(10), prob=1.0, keep_size=True, mode=smooth),
        RandFlipd(keys=keys, spatial_axis=len(spatial) - 1, prob=0.5),
        RandZoomd(keys=keys, min_zoom=0.9, max_zoom=1.1, prob=1.0, keep_size=True, mode=modes),
        RandGaussianNoised(keys="image", prob=0.5, std=0.02),
    ]
    return Compose(steps)


def bench_monai_tutorial(case: str, store: str, datalist: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    from jobs.ml.networks import build_network

    set_determinism(seed=42)
    root = Path(store)
    if case == "3d":
        data = [{"image": str(root / r["image"]), "label": r["label"]} for r in datalist["training"]]
    else:
        data = [{"image": str(root / r["image"]), "label": str(root / r["label"])} for r in datalist["training"]]
    transforms = _tutorial_transforms(case, args.image_size, args.image_size, _window(args), args.patch_size)
    loader = DataLoader(
        Dataset(data, transforms), batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True
    )
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    torch.manual_seed(42)
    dims = 2 if case == "segmentation" else 3
    channels = 3 if case == "segmentation" else 1  # lgg slices are RGB
    if case == "3d":
        model = build_network(args.model, channels, 2, dims).to(device)

        def loss_of(x: torch.Tensor, y: Any) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(model(x), torch.as_tensor(y).to(device))
    else:
        model = build_network("small-unet", channels, 2, dims).to(device)
        dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)

        def loss_of(x: torch.Tensor, y: Any) -> torch.Tensor:
            return dice_ce(model(x), y.as_tensor().to(device))

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    results = []
    for _ in range(args.epochs):
        model.train()
        seen, wait = 0, 0.0
        started = mark = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - mark
            x = batch["image"].as_tensor().float().to(device)
            loss = loss_of(x, batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(x)
            mark = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        results.append({"epoch_s": elapsed, "images_per_s": seen / elapsed, "data_wait_fraction": wait / elapsed})
    timed = results[1:]
    return {
        "items": len(data),
        "epoch_s": round(float(np.mean([e["epoch_s"] for e in timed])), 3),
        "images_per_s": round(float(np.mean([e["images_per_s"] for e in timed])), 1),
        "data_wait_fraction": round(float(np.mean([e["data_wait_fraction"] for e in timed])), 4),
    }


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_now_mib() -> dict[str, float]:
    """This process's resident memory now, anonymous (heap) and file-backed (mapped pages), from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def decode_rss(store: str, dataset: str, image_size: int, workers: int, task: str) -> dict[str, Any]:
    """In this (fresh) process: decode a 3-D split into a new cache; the peak RSS it added and the cache's size."""
    from jobs.core.store import open_store
    from jobs.ml.preprocess import Preprocessing
    from jobs.train.cache import load_images
    from jobs.train.data import read_split

    split = read_split(open_store(store), dataset, task, 3)
    prep = Preprocessing(image_size=image_size, dims=3)
    cache_dir = tempfile.mkdtemp(prefix="rss-cache-", dir=Path(store).parent)
    import monai  # noqa: F401  (loaded before the baseline: what the decode adds is what we measure)

    before = _peak_rss_mib()
    started = time.perf_counter()
    sets, _ = load_images(open_store(store), split, prep, cache_dir, workers=workers, max_unreadable=0)
    elapsed = time.perf_counter() - started
    on_disk = sum(f.stat().st_size for f in Path(cache_dir).rglob("*") if f.is_file())
    return {
        "volumes": sum(len(s) for s in sets.values()),
        "decode_s": round(elapsed, 2),
        "peak_rss_before_mib": round(before, 1),
        "peak_rss_added_mib": round(_peak_rss_mib() - before, 1),
        "rss_after_mib": _rss_now_mib(),
        "cache_on_disk_mib": round(on_disk / 2**20, 1),
    }


def bench_rss(root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Peak RSS of decoding the 3-D cache for each ``--rss-volumes`` size, each in a fresh child process: the
    volume demo's CT volumes, or with ``--source-size`` Decathlon-style volumes + label maps of that side."""
    rows = []
    case, task = ("segmentation-3d", "segmentation") if args.source_size else ("3d", "classification")
    trees = {"ours": str(Path(__file__).resolve().parent.parent)}
    if args.rss_before:  # another checkout's decode, measured on the same datasets
        trees = {"before": str(Path(args.rss_before).resolve()), **trees}
    for turn, n in enumerate(int(v) for v in args.rss_volumes.split(",")):
        store, dataset, _ = build_dataset(case, root / f"rss-{n}", n, args.source_size, root / "pool")
        order = list(trees.items())
        for tree, path in order[::-1] if turn % 2 else order:  # alternate who decodes first (page cache, writeback)
            child = subprocess.run(
                [sys.executable, __file__, "--decode-rss", store, dataset, str(args.image_size), str(args.workers),
                 task],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": path},
            )  # fmt: skip
            rows.append({"code": tree, **json.loads(child.stdout.strip().splitlines()[-1])})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        shutil.rmtree(root / f"rss-{n}")  # one dataset on disk at a time
    return rows


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """``--case 3d|segmentation|segmentation-3d|rss`` of ``bench/train_bench.py``."""
    report: dict[str, Any] = {"case": args.case, "config": {k: v for k, v in vars(args).items() if k != "output"}}
    report["torch_threads"] = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="irmsia-train-bench-") as tmp:
        if args.case == "rss":
            report["rss"] = bench_rss(Path(tmp), args)
            return report
        store, dataset, datalist = build_dataset(args.case, Path(tmp), args.volumes, args.source_size)
        report["ours"] = bench_ours(args.case, store, dataset, args)
        report["monai_tutorial"] = bench_monai_tutorial(args.case, store, datalist, args)
    report["ratio_epoch_time"] = round(report["monai_tutorial"]["epoch_s"] / report["ours"]["epoch_s"], 2)
    return report


if __name__ == "__main__" and sys.argv[1:2] == ["--decode-rss"]:
    _store, _dataset, _size, _workers, _task = sys.argv[2:7]
    print(json.dumps(decode_rss(_store, _dataset, int(_size), int(_workers), _task)))
