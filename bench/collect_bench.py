"""Benchmark the collect stage's TCIA path against the loopback floor, in one run.

Starts a local NBIA v4 server (``tests/support/tcia_server.py``) serving M series ZIPs (default 24 series x 16
DICOM files of 256x256 16-bit, about 2 MiB per ZIP), then times, against that same server:

  (a) ours: ``python -m jobs.collect --source tcia`` into a fresh file store: list the series, download every
      ZIP (streamed, hashed), test every CRC, unpack safely, store each file with its SHA-256, seal the manifest;
  (b) the floor: one ``curl --parallel`` process fetching the same ZIPs to disk with the same parallelism (no
      testing, unpacking or storing).

Prints MB/s and the ratio floor_time / our_time (target >= 0.8), plus the cache-hit rerun time.
Run from the repository root:

    PYTHONPATH=$PWD python bench/collect_bench.py --series 24 --images 16 --workers 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.tcia_server import TciaServer  # noqa: E402

COLLECTION = "BENCH"


def build_server(series: int, images: int, size: int, compression: str = "deflated") -> TciaServer:
    method = zipfile.ZIP_DEFLATED if compression == "deflated" else zipfile.ZIP_STORED
    server = TciaServer()
    for s in range(series):
        server.add_series(COLLECTION, f"P{s // 2:04d}", f"1.2.9.{s // 2}", f"1.2.9.{s // 2}.{s}", "CT",
                          images=images, image_size=size, compression=method)  # fmt: skip
    return server


def time_floor(server: TciaServer, workers: int, out: Path) -> float:
    args = ["curl", "-sS", "--no-progress-meter", "--fail", "--parallel", "--parallel-max", str(workers)]
    for uid in sorted(server.zips):
        args += ["-o", str(out / f"{uid}.zip"), server.api_url + f"getImage?SeriesInstanceUID={uid}"]
    started = time.perf_counter()
    subprocess.run(args, check=True)
    return time.perf_counter() - started


def time_ours(server: TciaServer, workers: int, store: Path, extra: tuple[str, ...] = ()) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IRMSIA_TCIA_URL": server.api_url, "IRMSIA_LOG_FORMAT": "json"}
    args = [sys.executable, "-m", "jobs.collect", "--source", "tcia", "--collection", COLLECTION, "--dataset",
            "bench", "--store", str(store), "--workers", str(workers), *extra]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=24)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--compression",
        choices=("deflated", "stored"),
        default="deflated",
        help="how the server's ZIPs are compressed (ours must inflate deflated ones; curl does not)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is reported")
    args = parser.parse_args()

    print(f"building {args.series} series x {args.images} images ({args.image_size}x{args.image_size} 16-bit)...")
    server = build_server(args.series, args.images, args.image_size, args.compression)
    total = sum(len(z) for z in server.zips.values())
    files = args.series * args.images
    with server, tempfile.TemporaryDirectory(prefix="collect-bench-") as tmp:
        floor, ours = [], []
        for r in range(args.rounds):
            out = Path(tmp) / f"curl-{r}"
            out.mkdir()
            floor.append(time_floor(server, args.workers, out))
            shutil.rmtree(out)
            store = Path(tmp) / f"store-{r}"
            ours.append(time_ours(server, args.workers, store))
            if r < args.rounds - 1:
                shutil.rmtree(store)
        cached = time_ours(server, args.workers, Path(tmp) / f"store-{args.rounds - 1}")
    mb = total / 1e6
    best_floor, best_ours = min(floor), min(ours)
    print(
        f"data: {args.series} {args.compression} ZIPs, {mb:.1f} MB, {files} DICOM files; workers={args.workers};"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"(b) floor, curl --parallel to disk : {best_floor:6.2f} s  {mb / best_floor:7.1f} MB/s  (runs {floor})")
    print(f"(a) ours, irmsia-collect tcia      : {best_ours:6.2f} s  {mb / best_ours:7.1f} MB/s  (runs {ours})")
    print(f"    ours, rerun (cache hit)        : {cached:6.2f} s")
    print(f"ratio floor/ours = {best_floor / best_ours:.2f}  (target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
