"""SHA-256 of every file ``irmsia-split`` writes, over varied cases, to prove a rewrite byte-identical (issue 18).

Builds indexes once with the real collect and index stages from the demo sources (classification, multilabel,
segmentation, segmentation-3d, volume), plus variants of the demo's real index sealed directly (a second dataset
sharing images with the first, duplicated images, unlabelled rows, official splits), then runs ``irmsia-split``
from the checkout ``--code`` names over about twenty cases (tasks, ``--merge``, ``--folds``, official splits, rare
classes, errors) and records per case the exit code, the error line, the SHA-256 of every output file and the
manifest's outputs, summary and cache key (its timestamps left out). ``--check`` compares against a recorded file.

    PYTHONPATH=$PWD python bench/split_digests.py --code /work/main --store /tmp/digests --out /tmp/main.json
    PYTHONPATH=$PWD python bench/split_digests.py --code . --store /tmp/digests --check /tmp/main.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from jobs.core.manifest import StageWriter  # noqa: E402
from jobs.core.store import open_store  # noqa: E402

DEMOS = {"demo": "classification", "demo-ml": "multilabel", "demo-seg": "segmentation",
         "demo-seg3d": "segmentation-3d", "demo-vol": "volume"}  # fmt: skip
"""Dataset name -> the demo source's ``--task``."""

CASES: dict[str, list[str]] = {
    "classification": ["--dataset", "demo"],
    "classification-seed-ratios": ["--dataset", "demo", "--seed", "7", "--ratios", "0.6,0.2,0.2"],
    "classification-folds": ["--dataset", "demo", "--folds", "5"],
    "classification-rare": ["--dataset", "demo", "--min-per-class", "30"],
    "classification-no-val": ["--dataset", "demo", "--ratios", "0.8,0,0.2"],
    "multilabel": ["--dataset", "demo-ml", "--task", "multilabel"],
    "multilabel-folds-rare": ["--dataset", "demo-ml", "--task", "multilabel", "--folds", "3", "--min-per-class", "8"],
    "multilabel-as-classes": ["--dataset", "demo-ml", "--seed", "3"],
    "segmentation": ["--dataset", "demo-seg", "--task", "segmentation"],
    "segmentation-3d-folds": ["--dataset", "demo-seg3d", "--task", "segmentation", "--folds", "2"],
    "volume": ["--dataset", "demo-vol"],
    "volume-folds": ["--dataset", "demo-vol", "--folds", "4"],
    "merge": ["--dataset", "both", "--merge", "demo,demo-b"],
    "merge-folds": ["--dataset", "both", "--merge", "demo-b,demo,demo-ml", "--folds", "3"],
    "duplicates": ["--dataset", "demo-dup"],
    "unlabelled": ["--dataset", "demo-unl", "--folds", "2"],
    "official-carve-val": ["--dataset", "demo-off", "--split-from", "official"],
    "official-with-val": ["--dataset", "demo-off3", "--split-from", "official", "--folds", "3"],
    "official-multilabel": ["--dataset", "demo-mloff", "--task", "multilabel", "--split-from", "official"],
    "official-multilabel-val": ["--dataset", "demo-mloff3", "--task", "multilabel", "--split-from", "official"],
    "error-no-official": ["--dataset", "demo", "--split-from", "official"],
    "error-no-masks": ["--dataset", "demo", "--task", "segmentation"],
    "error-mixed-official": ["--dataset", "demo-offbad", "--split-from", "official"],
    "error-all-unlabelled": ["--dataset", "demo-none"],
}


def _env(store: Path, code: Path) -> dict[str, str]:
    return {**os.environ, "IRMSIA_STORE": str(store), "IRMSIA_LOG_FORMAT": "json", "PYTHONPATH": str(code)}


def _seal(store: Path, dataset: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table.sort_by("key"), buffer)
    writer = StageWriter(open_store(str(store)), "index", f"index/{dataset}/", {"dataset": dataset}, {})
    writer.begin()
    writer.put_bytes("index.parquet", buffer.getvalue())
    writer.commit(summary={"rows": table.num_rows})


def _variant(table: pa.Table, dataset: str, edit: Any) -> pa.Table:
    rows = table.to_pylist()
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        row["key"] = row["key"].replace("raw/demo", f"raw/{dataset}", 1)
        row["dataset"] = dataset
        out.extend(edit(i, row))
    return pa.Table.from_pylist(out, schema=table.schema)


def build(store: Path) -> None:
    """The indexes every case reads (skipped when ``store`` already has them)."""
    if (store / "index" / "demo-none" / "_SUCCESS.json").exists():
        return
    env = _env(store, ROOT)
    for dataset, task in DEMOS.items():
        for argv in (["jobs.collect", "--source", "demo", "--task", task, "--dataset", dataset],
                     ["jobs.index", "--dataset", dataset]):  # fmt: skip
            subprocess.run([sys.executable, "-m", *argv], env=env, check=True, capture_output=True)
    read = lambda name: pq.read_table(store / "index" / name / "index.parquet")  # noqa: E731
    demo, ml = read("demo"), read("demo-ml")

    def shared(i: int, row: dict) -> list[dict]:  # every third image also in demo; some grouped by study
        if i % 3:
            row["sop_uid"] = f"2.25.{i}"
            row["sha256"] = hashlib.sha256(row["key"].encode()).hexdigest()
        if i % 5 == 0:
            row["group_by"] = "study_uid"
            row["patient_id"] = row["study_uid"]
        return [row]

    def duplicated(i: int, row: dict) -> list[dict]:  # copies: by UID (lossy), by content, across patients
        rows = [row]
        if i % 4 == 0:
            rows.append({**row, "key": row["key"].replace(".dcm", "_copy.dcm"), "lossy_compression": True,
                         "sha256": hashlib.sha256(row["key"].encode()).hexdigest()})  # fmt: skip
        if i % 7 == 0:
            rows.append({**row, "key": row["key"].replace(".dcm", "_b.dcm"), "sop_uid": f"2.25.{i}",
                         "patient_id": f"Q{i % 3}"})  # fmt: skip
        return rows

    def unlabelled(i: int, row: dict) -> list[dict]:
        if i % 6 == 1 or i % 11 == 0:
            row["label"] = None if i % 2 else ""
        return [row]

    def official(splits: tuple[str, ...]) -> Any:
        def edit(_: int, row: dict) -> list[dict]:  # by patient: three splits by hash, two by the last digit
            digest = int(hashlib.sha256(row["patient_id"].encode()).hexdigest(), 16)
            row["official_split"] = splits[digest % 5 % 3 if len(splits) == 3 else int(row["patient_id"][-1] in "27")]
            return [row]

        return edit

    def mixed(i: int, row: dict) -> list[dict]:
        row["official_split"] = ("train", "test")[i % 2]
        return [row]

    def none(_: int, row: dict) -> list[dict]:
        row["label"] = None
        return [row]

    two, three = ("train", "test"), ("train", "val", "test")
    variants = {"demo-b": (demo, shared), "demo-dup": (demo, duplicated), "demo-unl": (demo, unlabelled),
                "demo-off": (demo, official(two)), "demo-off3": (demo, official(three)),
                "demo-mloff": (ml, official(two)), "demo-mloff3": (ml, official(three)),
                "demo-offbad": (demo, mixed), "demo-none": (demo, none)}  # fmt: skip
    for dataset, (table, edit) in variants.items():
        _seal(store, dataset, _variant(table, dataset, edit))


def _error(stderr: str) -> str | None:
    for line in reversed(stderr.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            return line
        if record.get("level") in ("ERROR", "error", "CRITICAL"):
            return str(record.get("message") or record.get("msg"))
    return None


def run_case(store: Path, code: Path, argv: list[str]) -> dict[str, Any]:
    """One split: exit code, error message, SHA-256 per output file, the manifest less its timestamps."""
    dataset = argv[argv.index("--dataset") + 1]
    done = subprocess.run([sys.executable, "-m", "jobs.split", *argv, "--force"], env=_env(store, code),
                          capture_output=True, text=True)  # fmt: skip
    result: dict[str, Any] = {"rc": done.returncode, "error": _error(done.stderr) if done.returncode else None}
    folder = store / "splits" / dataset
    if done.returncode == 0:
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
        files.pop("_SUCCESS.json")
        manifest = json.loads((folder / "_SUCCESS.json").read_text())
        result["files"] = files
        result["manifest"] = {k: manifest[k] for k in ("cache_key", "outputs", "summary", "params", "inputs")}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose jobs.split runs")
    parser.add_argument("--store", type=Path, required=True, help="folder store (built once, then reused)")
    parser.add_argument("--out", type=Path, help="write the digests here")
    parser.add_argument("--check", type=Path, help="compare against digests recorded before")
    args = parser.parse_args()
    build(args.store)
    results = {}
    for name, argv in CASES.items():
        results[name] = run_case(args.store, args.code.resolve(), argv)
        print(name, results[name]["rc"], len(results[name].get("files", {})), "files", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.check:
        expected = json.loads(args.check.read_text())
        differ = [name for name in CASES if results[name] != expected.get(name)]
        for name in differ:
            for field in sorted(set(results[name]) | set(expected.get(name, {}))):
                if results[name].get(field) != expected.get(name, {}).get(field):
                    print(f"DIFFERS {name}.{field}: {results[name].get(field)!r:.300} != "
                          f"{expected.get(name, {}).get(field)!r:.300}")  # fmt: skip
        print(f"{len(CASES) - len(differ)} of {len(CASES)} cases identical")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
