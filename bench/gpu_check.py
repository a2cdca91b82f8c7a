"""GPU check: a short training run on CUDA with and without AMP; prints images/s and GPU utilisation.

Needs only this repository plus torch, monai, numpy and pydicom (images are written at the training size, so no
resize library is needed). ``bench/gpu_check.sh`` runs it; ``--out DIR`` also writes ``gpu_check.json``.
Utilisation comes from ``nvidia-smi`` sampled every 200 ms during the timed epochs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as irmsia-train does, before torch loads

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


class UtilisationSampler:
    """``nvidia-smi`` in the background: GPU utilisation % and memory MiB every 200 ms."""

    def __init__(self) -> None:
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "200",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )

    def stop(self) -> dict:
        if self.proc is None:
            return {"gpu_util_mean_pct": None, "gpu_util_max_pct": None, "gpu_mem_max_mib": None}
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        rows = [line.split(",") for line in out.strip().splitlines() if line.count(",") == 1]
        util = [float(u) for u, _ in rows if u.strip().replace(".", "").isdigit()]
        mem = [float(m) for _, m in rows if m.strip().replace(".", "").isdigit()]
        return {
            "gpu_util_mean_pct": round(float(np.mean(util)), 1) if util else None,
            "gpu_util_max_pct": max(util) if util else None,
            "gpu_mem_max_mib": max(mem) if mem else None,
            "samples": len(util),
        }


def run_case(store_path: str, cache_dir: str, model: str, args: argparse.Namespace, amp: str) -> dict:
    from jobs.core.settings import CommonSettings
    from jobs.core.store import open_store
    from jobs.ml.preprocess import Preprocessing
    from jobs.train.cache import load_images
    from jobs.train.data import read_split
    from jobs.train.loop import Trainer, pick_hardware
    from jobs.train.settings import TrainSettings

    settings = TrainSettings(
        common=CommonSettings(store=store_path),
        dataset="gpucheck",
        model=model,
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        amp=amp,
        device=args.device,
        cache_dir=cache_dir,
    )
    store = open_store(store_path)
    split = read_split(store, "gpucheck")
    sets, channels = load_images(
        store,
        split,
        Preprocessing(image_size=args.image_size),
        cache_dir,
        workers=len(os.sched_getaffinity(0)),
        max_unreadable=0,
    )
    hardware = pick_hardware(args.device, amp)
    trainer = Trainer(settings, sets, split.classes, channels, hardware)
    trainer.train_epoch(1)  # warm-up: cudnn autotuning, worker start
    sampler = UtilisationSampler()
    epochs_stats = [trainer.train_epoch(e) for e in range(2, args.epochs + 1)]
    util = sampler.stop()
    val = trainer.evaluate("val")
    return {
        "model": model,
        "amp": hardware.describe()["amp"],
        "images_per_s": round(float(np.mean([e["images_per_s"] for e in epochs_stats])), 1),
        "data_wait_fraction": round(float(np.mean([e["data_wait_fraction"] for e in epochs_stats])), 4),
        "epoch_s": round(float(np.mean([e["epoch_s"] for e in epochs_stats])), 3),
        "val_accuracy": val["accuracy"],
        "peak_torch_mem_mib": round(torch.cuda.max_memory_allocated() / 2**20) if hardware.cuda else None,
        **util,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="epoch 1 warms up; the rest are timed")
    parser.add_argument("--models", default="resnet18,densenet121")
    parser.add_argument("--out", default=os.environ.get("OUT") or None)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu only to dry-run the script")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch", file=sys.stderr)
        return 2
    from jobs.core.store import open_store
    from tests.support.synthetic_split import write_split

    report: dict = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "config": vars(args),
        "cases": [],
    }
    with tempfile.TemporaryDirectory(prefix="irmsia-gpu-check-") as tmp:
        started = time.perf_counter()
        store = open_store(f"{tmp}/store")
        n_val = max(64, args.images // 8)
        write_split(
            store,
            "gpucheck",
            counts={"train": args.images, "val": n_val, "test": 0},
            size=args.image_size,
            fmt="dicom",
        )
        report["dataset_s"] = round(time.perf_counter() - started, 1)
        print(f"dataset written in {report['dataset_s']} s", flush=True)
        for model in args.models.split(","):
            for amp in ("auto", "off"):
                case = run_case(f"{tmp}/store", f"{tmp}/cache", model, args, amp)
                case["elapsed_s"] = round(time.perf_counter() - started, 1)
                report["cases"].append(case)
                _save(report, args.out)  # after every case: a run cut short still reports what it measured
                print(
                    f"{model:<12} amp {case['amp']:<4} {case['images_per_s']:8.0f} img/s  "
                    f"GPU util mean {case['gpu_util_mean_pct']}% max {case['gpu_util_max_pct']}%  "
                    f"data wait {100 * case['data_wait_fraction']:.1f}%  val acc {case['val_accuracy']:.3f}",
                    flush=True,
                )
    for model in args.models.split(","):
        pair = {c["amp"]: c for c in report["cases"] if c["model"] == model}
        if "fp16" in pair and "off" in pair:
            speedup = pair["fp16"]["images_per_s"] / pair["off"]["images_per_s"]
            report[f"{model}_amp_speedup"] = round(speedup, 2)
            print(f"{model}: AMP speed-up {speedup:.2f}x")
    _save(report, args.out)
    print(json.dumps(report, indent=2))
    return 0


def _save(report: dict, out: str | None) -> None:
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "gpu_check.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
