"""Benchmark the collect stage's TCIA path against the loopback floor, in one run.

Starts a local NBIA v4 server (``tests/support/tcia_server.py``) serving M series ZIPs (default 24 series x 16
DICOM files of 256x256 16-bit, about 2 MiB per ZIP), then times, against that same server:

  (a) ours: ``python -m jobs.collect --source tcia`` into a fresh file store: list the series, unpack every ZIP
      safely as it streams in (every CRC tested, every file's SHA-256 computed), check its central directory,
      move each file into the store with its SHA-256, seal the manifest;
  (b) the floor: one ``curl --parallel`` process fetching the same ZIPs to disk with the same parallelism (no
      testing, unpacking or storing);
  (c) a reference, not the target: (b) followed by ``unzip`` of every ZIP (``--workers`` at a time), i.e. stock
      tools producing the same member files with their CRCs tested (no SHA-256, no checksum records, no overlap
      of downloading and unpacking);
  (d) for scale, not a side: the CPU seconds of SHA-256 + CRC-32 over the same bytes on one core, in this
      process: work that (a) must do on top of (b)'s receiving and writing, and that (b) never does.
Ours also creates one file per DICOM member where (b) creates one per series; on many disks file creation, not
bytes, dominates.

Both sides write to the same temporary folder (one disk; ``--dir`` picks another, e.g. /dev/shm), run as child
processes of this script (process start included) with the same number of parallel transfers, each into a new
folder, in an order rotated every round; the best round of each is reported. Nothing is deleted until all rounds
are done (see the comment in ``main``).
Besides wall time it prints each side's CPU seconds (user + system of the child, from ``getrusage``), which is
steadier than wall time on a shared, loaded machine. Prints MB/s and the ratio floor_time / our_time (target
>= 0.8), plus the cache-hit rerun time.
``--source idc`` and ``--source dicomweb`` time the same two sides for the other network sources:

  idc:      a SeaweedFS S3 server laid out like IDC's buckets (``tests/support/idc_mirror.py``), filled with
            ``--series`` real index rows (series of 4-16 instances, 1-4 MB each, padded to the index's sizes);
            ours is ``irmsia-collect --source idc --manifest`` (listing, every object's MD5 checked, SHA-256
            computed, stored, sealed), the floor ``curl --parallel`` of the same object URLs;
  dicomweb: Debian's Orthanc (``tests/support/orthanc.py``, HTTP Basic) holding ``--series`` x ``--images`` copies
            of pydicom's CT_small.dcm; ours is ``irmsia-collect --source dicomweb --patient`` (QIDO-RS searches,
            one WADO-RS multipart retrieve per instance, SOP UID checked), the floor ``curl --parallel`` of the
            same WADO-RS URLs with the same Accept and Authorization headers (bodies left multipart).

``--cap MBPS --latency MS`` times the TCIA path against a realistic server instead: the same local NBIA server with
each connection's bodies capped at MBPS megabytes a second and MS milliseconds for every new connection and every
request (one round trip each), in the same rounds:

  ours:       ``python -m jobs.collect --source tcia`` as above (``--workers`` connections, kept alive), timed as a
              process and from its first request (the server's log) to its exit, as tcia_utils' call is;
  tcia_utils: ``tcia_utils.nbia.downloadSeries`` of the same series (the PyPI package, ``max_workers=--workers``,
              its base URL pointed at the local server), in a child process of ``--tcia-utils-python``; its
              ``downloadSeries`` call alone is timed (imports excluded, to its benefit). Install it in a venv of
              its own: it pins duckdb below the collect image's (through idc-index), so it is no extra of ours:
              ``python3.11 -m venv /tmp/tu && /tmp/tu/bin/pip install tcia_utils==3.3.5``;
  curl:       ``curl --parallel`` of the same ZIPs (a stock client against the same capped server);
  the bound:  (total bytes / cap + series x latency) / workers + latency: the least wall time any client needs
              with ``--workers`` capped connections and one request per series.
Prints the ratios bound/ours (target >= 0.9) and tcia_utils/ours (target >= 3), each side from its first request
(process to process as well).

Run from the repository root:

    PYTHONPATH=$PWD python bench/collect_bench.py --series 24 --images 16 --workers 4
    PYTHONPATH=$PWD python bench/collect_bench.py --source idc --series 24 --workers 4
    PYTHONPATH=$PWD python bench/collect_bench.py --source dicomweb --series 8 --images 32 --workers 4
    PYTHONPATH=$PWD python bench/collect_bench.py --cap 10 --latency 50 --series 48 --image-size 512 --workers 4 \
        --tcia-utils-python /tmp/tu/bin/python
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Timing:
    """One timed child process: wall seconds and its CPU seconds in user and system mode."""

    wall: float
    user: float
    system: float

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.user + other.user, self.system + other.system)


def timed(args: list[str], **kwargs) -> Timing:
    """Run a child process and time it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(args, check=True, **kwargs)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timing(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def time_floor(server: TciaServer, workers: int, out: Path) -> Timing:
    args = ["curl", "-sS", "--no-progress-meter", "--fail", "--parallel", "--parallel-max", str(workers)]
    for uid in sorted(server.zips):
        args += ["-o", str(out / f"{uid}.zip"), server.api_url + f"getImage?SeriesInstanceUID={uid}"]
    return timed(args)


def time_floor_unzip(server: TciaServer, workers: int, out: Path) -> Timing:
    download = time_floor(server, workers, out)
    unzip = ["xargs", "-0", "-P", str(workers), "-n", "1", "sh", "-c", 'unzip -q "$1" -d "${1%.zip}"', "sh"]
    zips = b"".join(bytes(p) + b"\0" for p in sorted(out.glob("*.zip")))
    return download + timed(unzip, input=zips)


def time_hashing(server: TciaServer) -> float:
    """CPU seconds of SHA-256 and CRC-32 over every ZIP's bytes, one core (this process), best of 3."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for data in server.zips.values():
            hashlib.sha256(data).digest()
            zlib.crc32(data)
        best = min(best, time.process_time() - started)
    return best


def python_env(root: Path, pycache: Path) -> dict[str, str]:
    """The environment of our child processes: compiled bytecode cached (as in an installed image, where ``.pyc``
    files exist), not recompiled on every start as ``PYTHONDONTWRITEBYTECODE`` in a dev shell would make it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(root), "PYTHONPYCACHEPREFIX": str(pycache)}


def warm_up(root: Path, pycache: Path) -> None:
    """Compile the collector's modules into the bytecode cache once, untimed."""
    code = "import jobs.collect.__main__, jobs.collect.stage, jobs.collect.sources.tcia"
    subprocess.run([sys.executable, "-c", code], check=True, env=python_env(root, pycache))


def time_ours(server: TciaServer, workers: int, store: Path, root: Path = ROOT) -> Timing:
    pycache = store.parent / "pycache"
    env = {**python_env(root, pycache), "IRMSIA_TCIA_URL": server.api_url, "IRMSIA_LOG_FORMAT": "json"}
    args = [sys.executable, "-m", "jobs.collect", "--source", "tcia", "--collection", COLLECTION, "--dataset",
            "bench", "--store", str(store), "--workers", str(workers)]  # fmt: skip
    return timed(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- a realistic server: capped connections with a round trip each, ours vs tcia_utils vs the bound -------------------
TCIA_UTILS_CHILD = """
import sys, time
from tcia_utils import nbia
base, out, workers, seconds, uids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
nbia.setApiUrl = lambda endpoint, api_url="": base  # its base-URL setting, pointed at the local server
started = time.perf_counter()
nbia.downloadSeries(uids, input_type="list", path=out, max_workers=workers)
open(seconds, "w").write(str(time.perf_counter() - started))
"""


def time_tcia_utils(python: str, server: TciaServer, workers: int, out: Path) -> tuple[Timing, float]:
    """tcia_utils' ``downloadSeries`` in a child process: (the child, the call alone); every file must be there."""
    seconds = out.with_name(out.name + ".seconds")
    args = [python, "-c", TCIA_UTILS_CHILD, server.api_url, str(out), str(workers), str(seconds),
            *sorted(server.zips)]  # fmt: skip
    child = timed(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    expected = sum(len(zipfile.ZipFile(io.BytesIO(z)).namelist()) for z in server.zips.values())
    got = sum(1 for p in out.rglob("*") if p.is_file())
    if got != expected:  # downloadSeries logs failures and carries on: a short result must not be timed
        raise SystemExit(f"tcia_utils wrote {got} files of {expected}")
    return child, float(seconds.read_text())


def bound_seconds(sizes: list[int], cap: float, latency: float, connections: int) -> float:
    """The least wall time of ``connections`` connections capped at ``cap`` bytes/s, one request per series, each
    paying one round trip, plus the round trip that opens them."""
    return (sum(sizes) / cap + len(sizes) * latency) / connections + latency


def run_capped(args, server: TciaServer) -> int:
    """``--cap``: ours, tcia_utils and curl against the capped server, rotated, best of ``--rounds``."""
    server.bandwidth, server.latency = args.cap * 1e6, args.latency / 1e3
    sizes = [len(z) for z in server.zips.values()]
    bound = bound_seconds(sizes, server.bandwidth, server.latency, args.workers)
    python = args.tcia_utils_python or sys.executable
    have_tcia_utils = subprocess.run([python, "-c", "import tcia_utils.nbia"], capture_output=True).returncode == 0
    if not have_tcia_utils:
        print(f"tcia_utils cannot be imported by {python} (see --tcia-utils-python): timing ours and curl only")
    ours: list[Timing] = []
    curl: list[Timing] = []
    theirs: list[Timing] = []
    calls: list[float] = []
    ours_requests: list[float] = []  # ours from its first request to its exit: interpreter start and imports left out

    def ours_side(out: Path) -> Timing:
        before = len(server.log)
        timing = time_ours(server, args.workers, out)
        ours_requests.append(time.monotonic() - server.log[before].at)
        return timing

    def tcia_utils_side(out: Path) -> Timing:
        child, call = time_tcia_utils(python, server, args.workers, out)
        calls.append(call)
        return child

    with server, tempfile.TemporaryDirectory(prefix="collect-bench-", dir=args.dir) as tmp:
        warm_up(ROOT, Path(tmp) / "pycache")
        runs: list[tuple[list[Timing], Callable[[Path], Timing]]] = [
            (ours, ours_side),
            (curl, lambda out: time_floor(server, args.workers, out)),
        ]
        if have_tcia_utils:
            runs.append((theirs, tcia_utils_side))
        loads = []
        for r in range(args.rounds):
            for i, (results, run) in enumerate(runs[r % len(runs) :] + runs[: r % len(runs)]):
                out = Path(tmp) / f"round{r}-side{i}"
                out.mkdir()
                results.append(run(out))
            loads.append(os.getloadavg()[0])
    mb = sum(sizes) / 1e6
    print(f"data: {len(sizes)} {args.compression} ZIPs, {mb:.1f} MB, {len(sizes) * args.images} DICOM files; "
          f"server: {args.cap:g} MB/s a connection, {args.latency:g} ms a round trip; workers={args.workers}; "
          f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"{'bound (cap x workers, a round trip a series)':<46} : {bound:6.2f} s  {mb / bound:7.1f} MB/s")
    sides = [("ours, irmsia-collect tcia (process)", ours), ("curl --parallel (process)", curl)]
    if theirs:
        sides.append(("tcia_utils downloadSeries (process)", theirs))
    for label, timings in sides:
        best = min(t.wall for t in timings)
        shown = ", ".join(f"{t.wall:.2f}" for t in timings)
        print(f"{label:<46} : {best:6.2f} s  {mb / best:7.1f} MB/s  CPU {min(t.cpu for t in timings):5.2f} s"
              f"  (runs: {shown})")  # fmt: skip
    best_ours, ours_run = min(t.wall for t in ours), min(ours_requests)
    print(f"{'ours, from its first request to its exit':<46} : {ours_run:6.2f} s  {mb / ours_run:7.1f} MB/s"
          f"  (runs: {', '.join(f'{c:.2f}' for c in ours_requests)})")  # fmt: skip
    if calls:
        print(f"{'tcia_utils downloadSeries (the call alone)':<46} : {min(calls):6.2f} s  {mb / min(calls):7.1f} MB/s"
              f"  (runs: {', '.join(f'{c:.2f}' for c in calls)})")  # fmt: skip
    print(f"ratio bound/ours = {bound / best_ours:.2f} process, {bound / ours_run:.2f} from the first request "
          f"(target >= 0.9); bound/curl = {bound / min(t.wall for t in curl):.2f}")  # fmt: skip
    if calls:
        print(f"ratio tcia_utils/ours = {min(calls) / ours_run:.2f} (each from its first request; target >= 3), "
              f"{min(t.wall for t in theirs) / best_ours:.2f} (process to process)")  # fmt: skip
    return 0


# -- the other network sources: IDC (S3) and DICOMweb (a PACS) -----------------------------------------------------
IDC_ROWS = """SELECT * FROM index WHERE analysis_result_id IS NULL AND instanceCount BETWEEN 4 AND 16
              AND series_size_MB BETWEEN 1 AND 4 AND CAST(round(series_size_MB * 1e6) AS BIGINT) % 2 = 0
              AND Modality IN ('CT', 'MR') ORDER BY collection_id, PatientID, SeriesInstanceUID LIMIT ?"""


def curl_parallel(urls: list[str], out: Path, workers: int, headers: tuple[str, ...] = ()) -> Timing:
    args = ["curl", "-sS", "--no-progress-meter", "--fail", "--parallel", "--parallel-max", str(workers)]
    for header in headers:
        args += ["-H", header]
    for i, url in enumerate(urls):
        args += ["-o", str(out / f"{i:06d}"), url]
    return timed(args)


def collect_child(args: list[str], env: dict[str, str], store: Path) -> Timing:
    pycache = store.parent / "pycache"
    env = {**python_env(ROOT, pycache), "IRMSIA_LOG_FORMAT": "json", **env}
    argv = [sys.executable, "-m", "jobs.collect", "--dataset", "bench", "--store", str(store), *args]
    return timed(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class Scenario:
    """One source's two sides against one server: the floor and ours (each given a fresh folder)."""

    label: str
    data: str
    bytes: int
    floor: Callable[[Path], Timing]
    ours: Callable[[Path], Timing]


def idc_scenario(args, tmp: Path, stack) -> Scenario:
    from jobs.collect.idc_index import open_index
    from tests.support.idc_mirror import start_idc_mirror

    rows = open_index().rows(IDC_ROWS, [args.series])
    mirror = start_idc_mirror(tmp / "seaweedfs")
    stack.callback(mirror.stop)
    files = mirror.fill(rows)
    urls = [f"{mirror.endpoint}/{key}" for key in mirror.objects]
    manifest = tmp / "series.txt"
    manifest.write_text("".join(r["SeriesInstanceUID"] + "\n" for r in rows))
    flags = ["--source", "idc", "--manifest", str(manifest), "--workers", str(args.workers)]
    count = sum(len(f) for f in files.values())
    return Scenario(
        label="irmsia-collect idc",
        data=f"{len(rows)} IDC series, {count} DICOM objects",
        bytes=sum(len(d) for d in mirror.objects.values()),
        floor=lambda out: curl_parallel(urls, out, args.workers),
        ours=lambda out: collect_child(flags, {"IRMSIA_IDC_ENDPOINT": mirror.endpoint}, out),
    )


def dicomweb_scenario(args, tmp: Path, stack) -> Scenario:
    import io

    import pydicom
    from pydicom.data import get_testdata_file

    from tests.support.orthanc import start_orthanc

    server, env = start_orthanc(tmp / "orthanc", "basic")
    stack.callback(server.stop)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    urls, total = [], 0
    for series in range(args.series):
        ct.SeriesInstanceUID = f"{ct.StudyInstanceUID}.{series + 1}"
        for image in range(args.images):
            ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = f"{ct.SeriesInstanceUID}.{image + 1}"
            buf = io.BytesIO()
            ct.save_as(buf, enforce_file_format=True)
            server.upload(buf.getvalue())
            total += len(buf.getvalue())
            urls.append(f"{server.dicomweb}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
                        f"/instances/{ct.SOPInstanceUID}")  # fmt: skip
    accept = 'Accept: multipart/related; type="application/dicom"; transfer-syntax=*'
    flags = ["--source", "dicomweb", "--dicomweb-url", server.dicomweb, "--patient", str(ct.PatientID),
             "--workers", str(args.workers)]  # fmt: skip
    return Scenario(
        label="irmsia-collect dicomweb",
        data=f"Orthanc: {args.series} series x {args.images} CT_small instances",
        bytes=total,
        floor=lambda out: curl_parallel(urls, out, args.workers, (accept, f"Authorization: {server.authorization}")),
        ours=lambda out: collect_child(flags, env, out),
    )


def run_scenario(args) -> int:
    """Floor and ours for ``--source idc|dicomweb``, alternating, best of ``--rounds``; then a cache-hit rerun."""
    import contextlib

    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="collect-bench-", dir=args.dir) as tmp:
        build = idc_scenario if args.source == "idc" else dicomweb_scenario
        scenario = build(args, Path(tmp), stack)
        warm_up(ROOT, Path(tmp) / "pycache")
        floor, ours, loads = [], [], []
        for r in range(args.rounds):
            sides = [(floor, scenario.floor), (ours, scenario.ours)]
            for i, (results, run) in enumerate(sides[r % 2 :] + sides[: r % 2]):
                out = Path(tmp) / f"round{r}-side{i}"
                out.mkdir()
                results.append(run(out))
            loads.append(os.getloadavg()[0])
        store = Path(tmp) / "cache-hit"
        scenario.ours(store)
        cached = scenario.ours(store)
    mb = scenario.bytes / 1e6
    print(f"data: {scenario.data}, {mb:.1f} MB; workers={args.workers}; load average {min(loads):.1f}-"
          f"{max(loads):.1f} on {os.cpu_count()} cores")  # fmt: skip
    for label, runs in (("(b) floor, curl --parallel", floor), (f"(a) ours, {scenario.label}", ours)):
        best, cpu = min(t.wall for t in runs), min(t.cpu for t in runs)
        shown = ", ".join(f"{t.wall:.2f}/{t.user:.2f}+{t.system:.2f}" for t in runs)
        print(f"{label:<34} : {best:6.2f} s  {mb / best:7.1f} MB/s  CPU {cpu:5.2f} s  (wall/user+sys runs: {shown})")
    print(f"{'    ours, rerun (cache hit)':<34} : {cached.wall:6.2f} s  CPU {cached.cpu:5.2f} s")
    best_floor, best_ours = min(t.wall for t in floor), min(t.wall for t in ours)
    print(f"ratio floor/ours = {best_floor / best_ours:.2f}; CPU ratio "
          f"{min(t.cpu for t in floor) / min(t.cpu for t in ours):.2f}")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("tcia", "idc", "dicomweb"), default="tcia", help="which source to time")
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
    parser.add_argument(
        "--dir",
        type=Path,
        help="where both sides write (default: the system temporary folder); e.g. /dev/shm to take the disk's "
        "file-creation costs out of the comparison",
    )
    parser.add_argument("--unzip", action="store_true", help="also time the reference (c): curl, then unzip")
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout of the repository (e.g. a git worktree of main) timed in the same rounds, for "
        "before/after numbers from one run",
    )
    parser.add_argument("--cap", type=float, help="TCIA only: cap each connection at this many MB/s (a remote server)")
    parser.add_argument("--latency", type=float, default=50.0, help="with --cap: milliseconds a round trip")
    parser.add_argument("--tcia-utils-python", help="with --cap: a Python that imports tcia_utils (its own venv)")
    args = parser.parse_args()
    if args.source != "tcia":
        return run_scenario(args)

    print(f"building {args.series} series x {args.images} images ({args.image_size}x{args.image_size} 16-bit)...")
    server = build_server(args.series, args.images, args.image_size, args.compression)
    if args.cap:
        return run_capped(args, server)
    total = sum(len(z) for z in server.zips.values())
    files = args.series * args.images
    with server, tempfile.TemporaryDirectory(prefix="collect-bench-", dir=args.dir) as tmp:
        floor: list[Timing] = []
        ours: list[Timing] = []
        before: list[Timing] = []
        unzipped: list[Timing] = []
        # Nothing is deleted until every round is done: on ext4 without a journal (this machine's disk) each file
        # created shortly after many deletions pays for a scan past the recently freed inodes, which would bill
        # the side creating many files (ours) for the previous round's cleanup.
        runs: list[tuple[list[Timing], Callable[[Path], Timing]]] = [
            (floor, lambda out: time_floor(server, args.workers, out)),
            (ours, lambda out: time_ours(server, args.workers, out)),
        ]
        if args.unzip:
            runs.append((unzipped, lambda out: time_floor_unzip(server, args.workers, out)))
        if args.before:
            runs.append((before, lambda out: time_ours(server, args.workers, out, root=args.before.resolve())))
        for root in (ROOT, *([args.before.resolve()] if args.before else [])):
            warm_up(root, Path(tmp) / "pycache")
        loads = []
        for r in range(args.rounds):
            for i, (results, run) in enumerate(runs[r % len(runs) :] + runs[: r % len(runs)]):  # rotate the order
                out = Path(tmp) / f"round{r}-side{i}"
                out.mkdir()
                results.append(run(out))
            loads.append(os.getloadavg()[0])
        store = Path(tmp) / "cache-hit"
        time_ours(server, args.workers, store)
        cached = time_ours(server, args.workers, store)
    mb = total / 1e6
    best_floor, best_ours = min(t.wall for t in floor), min(t.wall for t in ours)
    cpu_floor, cpu_ours = min(t.cpu for t in floor), min(t.cpu for t in ours)
    print(
        f"data: {args.series} {args.compression} ZIPs, {mb:.1f} MB, {files} DICOM files; workers={args.workers};"
        f" load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores"
    )
    sides = [("(b) floor, curl --parallel to disk", floor), ("(a) ours, irmsia-collect tcia     ", ours)]
    if unzipped:
        sides.append(("(c) reference, curl then unzip    ", unzipped))
    if before:
        sides.append(("(a0) ours before (--before)      ", before))
    for label, runs in sides:
        best, cpu, user = min(t.wall for t in runs), min(t.cpu for t in runs), min(t.user for t in runs)
        shown = ", ".join(f"{t.wall:.2f}/{t.user:.2f}+{t.system:.2f}" for t in runs)
        print(f"{label} : {best:6.2f} s  {mb / best:7.1f} MB/s  CPU {cpu:5.2f} s (user {user:4.2f})"
              f"  (wall/user+sys runs: {shown})")  # fmt: skip
    print(f"    ours, rerun (cache hit)        : {cached.wall:6.2f} s  CPU {cached.cpu:5.2f} s")
    hashing = time_hashing(server)
    print(f"(d) SHA-256 + CRC-32 alone, 1 core : {hashing:6.2f} s CPU"
          f" = {hashing / best_floor:.2f}x the floor's wall time")  # fmt: skip
    print(f"ratio floor/ours = {best_floor / best_ours:.2f}  (target >= 0.8); CPU ratio {cpu_floor / cpu_ours:.2f}")
    if unzipped:
        best_unzip, cpu_unzip = min(t.wall for t in unzipped), min(t.cpu for t in unzipped)
        print(f"ratio (c)/ours = {best_unzip / best_ours:.2f}; CPU ratio {cpu_unzip / cpu_ours:.2f}")
    if before:
        best_before, cpu_before = min(t.wall for t in before), min(t.cpu for t in before)
        print(f"ratio floor/before = {best_floor / best_before:.2f}; CPU ratio {cpu_floor / cpu_before:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
