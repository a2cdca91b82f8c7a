"""Train benchmark: our train loop vs the MONAI tutorial pattern, same data, model and batch size, same run.

(a) ours: images decoded once into the local tensor cache (``jobs.train.data``), batches gathered from the cached
    array, augmentation on the batch (``jobs.train.loop.Trainer``; AMP as ``--amp`` decides).
(b) the MONAI tutorial pattern: ``LoadImage`` + ``EnsureChannelFirst`` + ``ScaleIntensity`` + ``Resize`` + random
    rotate/flip/zoom/noise on every item every epoch, ``monai.data.Dataset`` (no cache), a plain shuffled
    ``DataLoader`` with ``--workers`` processes, fp32.

Both train the same network with AdamW for ``--epochs`` epochs; epochs 2.. are timed (epoch 1 of (a) comes after
the one-off decode, which is reported separately). Prints seconds per epoch, images/s, the data-wait fraction
(time blocked on the next batch / epoch time) and the ratio (b)/(a). Targets: ratio >= 3, data wait of (a) < 10 %.

    PYTHONPATH=. python bench/train_bench.py --images 400 --size 128 --image-size 64 --model small-cnn

``--case 3d`` and ``--case segmentation`` / ``segmentation-3d`` do the same for the other tasks on datasets the
real collect -> index -> split stages produce (``bench/task_cases.py``: NIfTI CT volumes for 3-D
classification, lgg-style TIFF slices + masks, Decathlon-style NIfTI label maps), against the tutorial's
``Dataset`` + ``LoadImaged`` per epoch; ``--case rss`` measures the peak RSS of decoding a 3-D dataset into the
cache against the number of volumes.

    PYTHONPATH=. python bench/train_bench.py --case 3d --volumes 48 --image-size 32

``--source-size`` makes the segmentation sources realistic (128³ Decathlon-style volumes, 256² lgg slices) and
``--window`` / ``--patch-size`` give both contenders the same fixed intensity range and random patch:

    PYTHONPATH=. python bench/train_bench.py --case segmentation-3d --source-size 128 --window 500,1000 --image-size 64
    PYTHONPATH=. python bench/train_bench.py --case rss --source-size 128 --image-size 128 --rss-volumes 16,32,64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jobs.core.cpus import openmp_defaults

# The OpenMP team irmsia-train sets up (jobs/train/__main__.py), before torch loads, for both contenders.
os.environ.update(openmp_defaults(os.environ))

import numpy as np
import torch

TASK_CASES = ("3d", "segmentation", "segmentation-3d")


def _write_dataset(root: Path, images: int, size: int) -> tuple[str, list[tuple[str, int]]]:
    """A sealed synthetic split of 16-bit DICOMs in a file store; returns the store path and (file, label) pairs."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from jobs.core.store import open_store
    from tests.support.synthetic_split import write_split

    store_path = str(root / "store")
    store = open_store(store_path)
    n_val = max(8, images // 10)
    write_split(store, "bench", counts={"train": images, "val": n_val, "test": 0}, size=size, fmt="dicom")
    datalist = json.loads(store.get_bytes("splits/bench/datalist.json"))
    return store_path, [(os.path.join(store_path, r["image"]), r["label"]) for r in datalist["training"]]


def _step(model, optimizer, x, y) -> None:
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bench_ours(store_path: str, args: argparse.Namespace) -> dict:
    from jobs.core.settings import CommonSettings
    from jobs.core.store import open_store
    from jobs.ml.preprocess import Preprocessing
    from jobs.train.cache import load_images
    from jobs.train.data import read_split
    from jobs.train.loop import Trainer, pick_hardware
    from jobs.train.settings import TrainSettings

    settings = TrainSettings(
        common=CommonSettings(store=store_path),
        dataset="bench",
        model=args.model,
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=0 if args.device == "cpu" else -1,
        amp=args.amp,
        device=args.device,
        cache_dir=str(Path(store_path).parent / "cache"),
    )
    store = open_store(store_path)
    started = time.perf_counter()
    split = read_split(store, "bench")
    prep = Preprocessing(image_size=args.image_size)
    sets, channels = load_images(store, split, prep, settings.cache_dir, workers=args.workers, max_unreadable=0)
    decode_s = time.perf_counter() - started
    hardware = pick_hardware(args.device, args.amp)
    trainer = Trainer(settings, sets, split.classes, channels, hardware)
    epochs = [trainer.train_epoch(e) for e in range(1, args.epochs + 1)]
    timed = epochs[1:]
    return {
        "decode_once_s": round(decode_s, 2),
        "epoch_s": round(float(np.mean([e["epoch_s"] for e in timed])), 3),
        "images_per_s": round(float(np.mean([e["images_per_s"] for e in timed])), 1),
        "data_wait_fraction": round(float(np.mean([e["data_wait_fraction"] for e in timed])), 4),
        "amp": hardware.describe()["amp"],
        "device": hardware.describe()["device_name"],
    }


def bench_monai_tutorial(files: list[tuple[str, int]], args: argparse.Namespace) -> dict:
    from monai.data import DataLoader, Dataset
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        RandFlipd,
        RandGaussianNoised,
        RandRotated,
        RandZoomd,
        Resized,
        ScaleIntensityd,
    )
    from monai.utils import set_determinism

    from jobs.ml.networks import build_network

    set_determinism(seed=42)
    transforms = Compose(
        [
            LoadImaged(keys="image", image_only=True),
            EnsureChannelFirstd(keys="image"),
            ScaleIntensityd(keys="image"),
            Resized(keys="image", spatial_size=(args.image_size, args.image_size)),
            RandRotated(keys="image", range_x=np.radians(10), prob=1.0, keep_size=True),
            RandFlipd(keys="image", spatial_axis=1, prob=0.5),
            RandZoomd(keys="image", min_zoom=0.9, max_zoom=1.1, prob=1.0, keep_size=True),
            RandGaussianNoised(keys="image", prob=0.5, std=0.02),
        ]
    )
    data = [{"image": f, "label": label} for f, label in files]
    loader = DataLoader(
        Dataset(data, transforms), batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True
    )
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    torch.manual_seed(42)
    model = build_network(args.model, 1, 2).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    results = []
    for _ in range(args.epochs):
        model.train()
        seen, wait = 0, 0.0
        started = mark = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - mark
            x = batch["image"].as_tensor().float().to(device)
            y = torch.as_tensor(batch["label"]).to(device)
            _step(model, optimizer, x, y)
            seen += len(y)
            mark = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        results.append({"epoch_s": elapsed, "images_per_s": seen / elapsed, "data_wait_fraction": wait / elapsed})
    timed = results[1:]
    return {
        "epoch_s": round(float(np.mean([e["epoch_s"] for e in timed])), 3),
        "images_per_s": round(float(np.mean([e["images_per_s"] for e in timed])), 1),
        "data_wait_fraction": round(float(np.mean([e["data_wait_fraction"] for e in timed])), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400, help="training images (16-bit DICOM)")
    parser.add_argument("--size", type=int, default=128, help="stored image size in pixels")
    parser.add_argument("--image-size", type=int, default=64, help="training input size")
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per contender; epochs 2.. are timed")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="decode/loader processes")
    parser.add_argument("--amp", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--output", help="write the figures as JSON here")
    parser.add_argument("--case", default="2d", choices=("2d", *TASK_CASES, "rss"), help="which benchmark")
    parser.add_argument("--volumes", type=int, default=48, help="--case 3d/segmentation*: patients of the dataset")
    parser.add_argument("--rss-volumes", default="24,48,96", help="--case rss: dataset sizes to decode")
    parser.add_argument(
        "--source-size", type=int, default=0, help="segmentation(-3d) / rss: side of the source slices / volumes"
    )
    parser.add_argument("--window", help="C,W: fixed intensity window (ours --window, tutorial ScaleIntensityRanged)")
    parser.add_argument("--patch-size", type=int, default=0, help="segmentation: one random patch of this side")
    parser.add_argument("--rss-before", help="--case rss: also decode with the jobs/ of this checkout (before/after)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is not timed)")
    if args.case != "2d":
        from bench.task_cases import run_case

        report = run_case(args)
        print(json.dumps(report, indent=2))
        if args.output:
            Path(args.output).write_text(json.dumps(report, indent=2))
        return 0
    with tempfile.TemporaryDirectory(prefix="irmsia-train-bench-") as tmp:
        store_path, files = _write_dataset(Path(tmp), args.images, args.size)
        ours = bench_ours(store_path, args)
        tutorial = bench_monai_tutorial(files, args)
    ratio = tutorial["epoch_s"] / ours["epoch_s"]
    report = {
        "config": {k: v for k, v in vars(args).items() if k != "output"},
        "torch_threads": torch.get_num_threads(),
        "ours": ours,
        "monai_tutorial": tutorial,
        "ratio_epoch_time": round(ratio, 2),
    }
    print(json.dumps(report, indent=2))
    print(
        f"\nours {ours['epoch_s']:.3f} s/epoch ({ours['images_per_s']:.0f} img/s, data wait "
        f"{100 * ours['data_wait_fraction']:.1f} %, one-off decode {ours['decode_once_s']:.1f} s) vs MONAI tutorial "
        f"{tutorial['epoch_s']:.3f} s/epoch ({tutorial['images_per_s']:.0f} img/s, data wait "
        f"{100 * tutorial['data_wait_fraction']:.1f} %): {ratio:.1f}x (target >= 3x; data wait < 10 %)"
    )
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
