"""Benchmark the index stage against the read+hash floor and the seed's naive loop, in one run.

Generates N DICOM files (default 2,000 x 512x512 16-bit, about 0.5 MB each) in a file store with a
collect manifest, then times, on a warm page cache:

  (a) our index stage (``jobs.index.stage.run``, ``--force``) in a fresh process;
  (b) the floor: read every file and SHA-256 it with hashlib, one process per core, no parsing;
  (c) the seed's naive approach: one process, ``pydicom.dcmread`` with pixel access + ``sha256(open().read())``.

Prints files/s and the ratios a/b (target >= 0.6) and a/c (target >= 3.5), then the index process's peak RSS
at N and 5N files (it must not grow with the number of files). Run from the repository root:

    PYTHONPATH=$PWD python bench/index_bench.py --n 2000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.core.cpus import usable_cpus  # noqa: E402
from jobs.core.manifest import StageWriter  # noqa: E402
from jobs.core.store import open_store  # noqa: E402
from tests.support.dicom_files import dicom_bytes  # noqa: E402

# Runs the stage in a fresh interpreter and reports the time of run() alone, the process wall time and peak RSS.
_STAGE_DRIVER = """
import json, resource, sys, time
def cpu(who):
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime
t0 = time.perf_counter()
from jobs.index.settings import IndexSettings
from jobs.index.stage import run
import os, jobs.index.scan
if os.environ.get("BENCH_FRESH_FROM"):  # --fresh-from: where workers stop being forks of the stage
    jobs.index.scan.FRESH_WORKERS_FROM = int(os.environ["BENCH_FRESH_FROM"])
settings = IndexSettings.parse(sys.argv[1:], {})
peak = {"pss_kb": 0, "uss_kb": 0, "rss_kb": 0, "server_rss_kb": 0, "total_pss_kb": 0}
def rollup(pid):
    try:
        fields = dict(line.split()[:2] for line in open(f"/proc/{pid}/smaps_rollup") if ":" in line)
    except (OSError, ValueError):
        return None
    uss = int(fields.get("Private_Clean:", 0)) + int(fields.get("Private_Dirty:", 0))
    return {"pss_kb": int(fields.get("Pss:", 0)), "uss_kb": uss, "rss_kb": int(fields.get("Rss:", 0))}
def sample():  # every 50 ms from smaps_rollup: the workers' largest sizes, the fork server's, and all PSS summed
    import multiprocessing, multiprocessing.forkserver, os
    while not done.is_set():
        total = rollup(os.getpid())["pss_kb"]
        for child in multiprocessing.active_children():
            if (sizes := rollup(child.pid)) is None:
                continue
            total += sizes["pss_kb"]
            for key, value in sizes.items():
                peak[key] = max(peak[key], value)
        server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)  # fresh workers' parent
        if server and (sizes := rollup(server)) is not None:
            total += sizes["pss_kb"]
            peak["server_rss_kb"] = max(peak["server_rss_kb"], sizes["rss_kb"])
        peak["total_pss_kb"] = max(peak["total_pss_kb"], total)
        done.wait(0.05)
import threading
done = threading.Event()
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
t1, c1 = time.perf_counter(), cpu(resource.RUSAGE_SELF)
manifest, cached = run(settings)
t2 = time.perf_counter()
done.set()
sampler.join()
cpu_run = cpu(resource.RUSAGE_SELF) - c1 + cpu(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "run_s": t2 - t1, "cpu_s": cpu_run, "import_s": t1 - t0, "rows": manifest.summary["rows"], "cached": cached,
    "rss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "rss_workers_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "workers_sampled_kb": peak,
}))
"""


def generate(store_dir: Path, dataset: str, n: int, size: int) -> list[Path]:
    """N distinct 16-bit DICOM files in two class folders, sealed with a collect manifest."""
    store = open_store(str(store_dir))
    writer = StageWriter(store, "collect", f"raw/{dataset}/", {"source": "bench", "n": n, "size": size}, {})
    writer.begin()
    paths = []
    for i in range(n):
        rel = f"{'AB'[i % 2]}/p{i // 4:05d}/img{i:06d}.dcm"
        writer.put_bytes(rel, dicom_bytes(f"p{i // 4:05d}", rows=size, columns=size, seed=i))
        paths.append(store_dir / "raw" / dataset / rel)
    writer.commit({"source": "bench", "files": n})
    return paths


def _hash_file(path: Path) -> str:
    with open(path, "rb", buffering=0) as fh:
        digest = hashlib.sha256()
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def floor(paths: list[Path], workers: int) -> tuple[float, float]:
    """(b) read + hashlib SHA-256, one process per core: (wall seconds, CPU seconds of the workers)."""
    cpu0 = _cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    pool = multiprocessing.get_context("fork").Pool(workers)
    for _ in pool.imap_unordered(_hash_file, paths, chunksize=16):
        pass
    pool.close()
    pool.join()  # reaped workers' CPU time shows in RUSAGE_CHILDREN
    return time.perf_counter() - start, _cpu(resource.RUSAGE_CHILDREN) - cpu0


def naive(paths: list[Path]) -> tuple[float, float]:
    """(c) the seed's loop: dcmread with pixel access, then hash the whole file read at once."""
    import pydicom

    cpu0 = _cpu(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for path in paths:
        ds = pydicom.dcmread(path)
        _ = ds.pixel_array
        _ = ds.PatientID
        with open(path, "rb") as fh:
            hashlib.sha256(fh.read()).hexdigest()
    return time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu0


def stage(store_dir: Path, dataset: str, workers: int, fresh_from: int | None = None) -> dict:
    """(a) our index stage, --force, in a fresh process (workers fresh from ``fresh_from`` files, if given)."""
    argv = ["--dataset", dataset, "--store", str(store_dir), "--force", "--workers", str(workers)]
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _STAGE_DRIVER, *argv],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "IRMSIA_LOG_FORMAT": "json",
            **({} if fresh_from is None else {"BENCH_FRESH_FROM": str(fresh_from)}),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def memory_run(store_dir: Path, count: int, size: int, workers: int, fresh_from: list[int | None]) -> None:
    """Index ``count`` new files of ``size``² and print the peak memory of the stage process and of its workers.

    A forked worker's RSS counts the pages it shares with the stage process (the listing, the collect manifest);
    from ``scan.FRESH_WORKERS_FROM`` files on, workers come from the fork server and do not. Private (USS) and
    proportional (PSS) sizes are printed too, and the PSS of every process summed: what the pod really holds."""
    name = f"rss{count}"
    t0 = time.perf_counter()
    made_now = not (store_dir / "raw" / name / "_SUCCESS.json").exists()  # else a --workdir of an earlier run's
    if made_now:
        generate(store_dir, name, count, size)
    made = f"made in {time.perf_counter() - t0:.0f}s" if made_now else "reused"
    for threshold in fresh_from:
        r = stage(store_dir, name, workers, threshold)
        w = r["workers_sampled_kb"]
        server = f", fork server RSS {w['server_rss_kb'] / 1024:.0f} MiB" if w["server_rss_kb"] else " (forked)"
        print(
            f"{count:7d} files ({size}x{size}, {made}): index {r['run_s']:.1f}s, main process peak RSS "
            f"{r['rss_self_kb'] / 1024:.0f} MiB; largest worker sampled RSS {w['rss_kb'] / 1024:.0f} / "
            f"PSS {w['pss_kb'] / 1024:.0f} / USS {w['uss_kb'] / 1024:.0f} MiB{server}; "
            f"all processes' PSS {w['total_pss_kb'] / 1024:.0f} MiB",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="files (default 2000)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512: ~0.5 MB files)")
    parser.add_argument("--rss-size", type=int, default=128, help="image side for the N vs 5N memory runs")
    parser.add_argument("--workers", type=int, default=0, help="processes for (a) and (b); 0 = one per core")
    parser.add_argument("--repeat", type=int, default=2, help="timed repetitions; the best is reported")
    parser.add_argument("--skip-naive", action="store_true", help="skip (c) (slow on big N)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the N vs 5N memory runs")
    parser.add_argument(
        "--growth",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="only the memory runs, at these file counts (e.g. 10000 100000), --rss-size files",
    )
    parser.add_argument("--workdir", default=None, help="where to generate files (default: a temp folder)")
    parser.add_argument(
        "--fresh-from",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="memory runs once per N, workers fresh from N files (e.g. 1 and 10000000: fresh and forked A/B)",
    )
    args = parser.parse_args(argv)
    workers = args.workers or usable_cpus()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="irmsia-index-bench-"))
    try:
        if args.growth:
            for count in args.growth:
                memory_run(work / "store", count, args.rss_size, workers, args.fresh_from or [None])
            return 0
        t0 = time.perf_counter()
        paths = generate(work / "store", "bench", args.n, args.size)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"generated {args.n} files ({mb:.0f} MB) in {time.perf_counter() - t0:.1f}s; {workers} workers")
        floor(paths, workers)  # warm the page cache: every timing below reads from memory
        # Interleave the repetitions so every method sees the same (shared, noisy) machine; keep each one's best.
        floors, runs, naives = [], [], []
        for _ in range(args.repeat):
            floors.append(floor(paths, workers))
            runs.append(stage(work / "store", "bench", workers))
            if not args.skip_naive:
                naives.append(naive(paths))
        tb, cb = min(floors)
        best = min(runs, key=lambda r: r["run_s"])
        ta, ca, ta_proc = best["run_s"], best["cpu_s"], min(r["process_s"] for r in runs)
        assert best["rows"] == args.n, best
        n = args.n
        print(
            f"(a) index stage run():     {n / ta:8.0f} files/s  ({ta:.2f}s wall, {ca:.2f} CPU-s; "
            f"process incl. start-up {ta_proc:.2f}s)"
        )
        print(f"(b) read+hash floor:       {n / tb:8.0f} files/s  ({tb:.2f}s wall, {cb:.2f} CPU-s)")
        print(
            f"a/b = {tb / ta:.2f} wall  (target >= 0.6; with process start-up {tb / ta_proc:.2f}); "
            f"CPU-s per file b/a = {cb / ca:.2f}"
        )
        if naives:
            tc, cc = min(naives)
            print(f"(c) naive dcmread+pixels:  {n / tc:8.0f} files/s  ({tc:.2f}s wall, {cc:.2f} CPU-s)")
            print(
                f"a/c = {tc / ta:.2f} wall  (target >= 3.5; with process start-up {tc / ta_proc:.2f}); "
                f"on {workers} idle cores, from CPU-s: {workers * cc / ca:.2f}"
            )
        if not args.skip_rss:
            for count in (n, 5 * n):
                memory_run(work / "store", count, args.rss_size, workers, args.fresh_from or [None])
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
