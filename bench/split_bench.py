"""Benchmark the split stage at 10k, 100k and 1M index rows: wall time and peak RSS (issue 18).

Builds an index of N rows from the demo's real index (its columns and values; keys, patients, SOPInstanceUIDs and
content hashes made unique, four images a patient), seals it in a folder store as the index stage would, then runs
``irmsia-split`` in a fresh process and reports its wall time and peak RSS (``ru_maxrss`` of the child, measured
alone in a wrapper process). With ``--baseline`` (another checkout, e.g. main) each size is split by both, back to
back, and the ratio of the medians printed. One untimed split comes first and the order alternates each of the
``--repeat`` rounds: the first split over a new index ran 2.5-3 s slower at 1M rows than the next one (its outputs
were new files), whichever checkout ran it.
Target (issue 18): a split of 1M rows in at most 10 s, main RSS at most 1 GB at 100k.

    PYTHONPATH=$PWD python bench/split_bench.py --rows 10000 100000 1000000 --baseline /work/main
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from jobs.core.manifest import StageWriter  # noqa: E402
from jobs.core.store import open_store  # noqa: E402


def template_rows(workdir: Path) -> list[dict]:
    """The demo dataset's index rows, made by the real collect and index stages."""
    store = str(workdir / "template")
    env = {**os.environ, "IRMSIA_STORE": store, "IRMSIA_LOG_FORMAT": "json"}
    for argv in (["jobs.collect", "--source", "demo", "--dataset", "demo"], ["jobs.index", "--dataset", "demo"]):
        subprocess.run([sys.executable, "-m", *argv], env=env, check=True, capture_output=True)
    data = open_store(store).get_bytes("index/demo/index.parquet")
    return pq.read_table(io.BytesIO(data)).to_pylist()


def write_index(store_dir: Path, rows: list[dict], n: int) -> None:
    """An index of ``n`` rows cycling through ``rows``, each with its own key, patient (4 rows each), UID and hash.

    The UID and hash must be unique: rows sharing either are one image to split, which would collapse the index."""
    out = []
    for i in range(n):
        row = dict(rows[i % len(rows)])
        row["key"] = f"raw/big/{row.get('label')}/p{i // 4:07d}/img{i:08d}.dcm"
        row["patient_id"] = f"p{i // 4:07d}"
        if "sha256" in row:
            row["sha256"] = hashlib.sha256(str(i).encode()).hexdigest()
        if row.get("sop_uid"):
            row["sop_uid"] = f"2.25.{i}"
        out.append(row)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(out).sort_by("key"), buffer)  # the index stage writes rows sorted by key
    store = open_store(str(store_dir))
    writer = StageWriter(store, "index", "index/big/", {"bench": n}, {})
    writer.begin()
    writer.put_bytes("index.parquet", buffer.getvalue())
    writer.commit(summary={"rows": n})


_MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_split(store_dir: Path, code: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one split by the checkout ``code`` in a fresh process."""
    env = {**os.environ, "IRMSIA_STORE": str(store_dir), "IRMSIA_LOG_FORMAT": "json", "PYTHONPATH": str(code)}
    argv = [sys.executable, "-m", "jobs.split", "--dataset", "big", "--force"]
    # the checkout is the working directory too: "python -m" puts it first on sys.path, before PYTHONPATH
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv], env=env, cwd=code, check=True, capture_output=True, text=True
    )
    wall, peak = done.stdout.split()
    return float(wall), int(peak) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--baseline", type=Path, help="another checkout to split each index with too (e.g. main)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per size (the order alternates)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="split-bench-") as tmp:
        rows = template_rows(Path(tmp))
        for n in sorted(args.rows):
            store_dir = Path(tmp) / f"store-{n}"
            write_index(store_dir, rows, n)
            result: dict[str, object] = {"rows": n}
            named = (("baseline", args.baseline), ("this", ROOT))
            contenders = [(name, code.resolve()) for name, code in named if code is not None]
            run_split(store_dir, ROOT)  # untimed: the outputs exist before any timed split
            walls: dict[str, list[float]] = {name: [] for name, _ in contenders}
            peaks: dict[str, list[int]] = {name: [] for name, _ in contenders}
            for round_ in range(max(1, args.repeat)):
                for name, code in contenders if round_ % 2 == 0 else contenders[::-1]:
                    wall, rss = run_split(store_dir, code)
                    walls[name].append(wall)
                    peaks[name].append(rss)
            for name, _ in contenders:
                result[f"{name}_wall_s"] = round(statistics.median(walls[name]), 2)
                result[f"{name}_walls_s"] = [round(w, 2) for w in walls[name]]
                result[f"{name}_rss_mib"] = round(max(peaks[name]) / 2**20)
            if args.baseline:
                result["speedup"] = round(float(result["baseline_wall_s"]) / float(result["this_wall_s"]), 2)
            print(json.dumps(result), flush=True)
            shutil.rmtree(store_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
