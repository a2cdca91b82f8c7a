"""The fuzz part of the fault campaign (issue 13, item 7), as a table: index the seeded corpus of malformed DICOM
files in a fresh process, header-only and with ``--verify-pixels``, then decode every accepted row with train's
own decode (``jobs.train.data``), and print, per mode: exit code, rows, quarantined files by kind, stderr lines
that are not the stage's own log records, and accepted rows train cannot decode (those whose damage lies only
inside compressed frames counted apart: no header check can see it). Run from the repository root:

    PYTHONPATH=$PWD python bench/index_fuzz.py [--seed 13] [--count 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from jobs.core.store import open_store  # noqa: E402
from jobs.ml.preprocess import Preprocessing  # noqa: E402
from jobs.train.cache import _decode_one  # noqa: E402
from tests.jobs.index.conftest import put_raw  # noqa: E402
from tests.support.dicom_fuzz import SEED, corpus_digest, fuzz_corpus  # noqa: E402


def _foreign_lines(err: str) -> int:
    """stderr lines that are not the stage's own JSON log records without a traceback."""
    count = 0
    for line in err.splitlines():
        try:
            record = json.loads(line)
            ok = record["logger"].startswith("irmsia") and "exc" not in record
        except (ValueError, KeyError, AttributeError):
            ok = not line.strip()
        count += not ok
    return count


def _mode(store_uri: str, workers: int, verify: bool, frames_damaged: set[str]) -> dict:
    argv = ["--dataset", "fuzz", "--store", store_uri, "--workers", str(workers), "--force"]
    env = {**os.environ, "IRMSIA_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.index", *argv, *(["--verify-pixels"] if verify else [])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    result = {"exit": done.returncode, "seconds": time.perf_counter() - start, "foreign": _foreign_lines(done.stderr)}
    if done.returncode != 0:
        result["last"] = done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else ""
        return result
    store = open_store(store_uri)
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/fuzz/index.parquet"))).to_pylist()
    listed = csv.DictReader(io.StringIO(store.get_bytes("index/fuzz/quarantine.csv").decode()))
    kinds = Counter(
        "duplicate" if r["reason"].startswith("duplicate of ") else r["reason"].split(":", 1)[0].split(" (", 1)[0]
        for r in listed
    )
    prep = Preprocessing(image_size=32).to_dict()
    failed = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in rows:
            try:
                array, _ = _decode_one((store_uri, row["key"], None, prep, row["sha256"]))
            except BaseException:  # a decoder's Rust panic escapes train's handler
                array = None
            if array is None:
                failed.append(row["key"])
    result.update(
        rows=len(rows),
        kinds=kinds,
        train_fails=sum(k not in frames_damaged for k in failed),
        train_fails_frames=sum(k in frames_damaged for k in failed),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    files = fuzz_corpus(args.seed, args.count)
    frames_damaged = {f"raw/fuzz/{f.family}/{f.name}" for f in files if f.frames_damaged}
    print(f"corpus: {len(files)} files, seed {args.seed}, sha256 {corpus_digest(files)[:16]}…")
    with tempfile.TemporaryDirectory(prefix="irmsia-fuzz-") as tmp:
        store_uri = str(Path(tmp) / "store")
        put_raw(open_store(store_uri), "fuzz", {f"{f.family}/{f.name}": f.data for f in files})
        results = {name: _mode(store_uri, args.workers, verify, frames_damaged) for name, verify in
                   (("header-only", False), ("--verify-pixels", True))}  # fmt: skip
    print("\n| mode | exit | s | rows | quarantined | foreign stderr lines | rows train cannot decode |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if r["exit"] != 0:
            print(f"| {name} | {r['exit']} | {r['seconds']:.1f} | - | - | {r['foreign']} | - ({r['last']}) |")
            continue
        fails = f"{r['train_fails']} (+{r['train_fails_frames']} damaged inside compressed frames)"
        quarantined = sum(r["kinds"].values())
        print(f"| {name} | 0 | {r['seconds']:.1f} | {r['rows']} | {quarantined} | {r['foreign']} | {fails} |")
    for name, r in results.items():
        if r["exit"] == 0:
            print(f"\n{name} quarantine kinds: " + ", ".join(f"{k} {n}" for k, n in r["kinds"].most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
