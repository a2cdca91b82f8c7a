"""Estimate the Argo workflow of a 10,000-series TCIA dataset: node count and node-status bytes (issue 18).

The DAG is the spec pipeline's (``pipeline.spec``, ``sharded: true``) for one TCIA dataset; its index is planned by
our own planner (``jobs.core.shards.shard_count`` with ``jobs.index.shards.INDEX_LIMITS``) over a synthetic listing
of ``--series`` series of ``--files-per-series`` files of ``--file-bytes`` each. Collect is NOT sharded yet (one
task); ``--collect-shards`` adds what a per-batch collect fan-out of that many parts would cost, planned with the
batch limits given (``--series-per-shard``, ``--bytes-per-shard``), as the same plan -> parts -> gather shape.
The estimate is ``pipeline.argo.size.estimate``: the ``NodeStatus`` objects Argo would keep, measured as JSON.

    PYTHONPATH=$PWD python bench/workflow_size.py --series 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.core.shards import ShardLimits, shard_count  # noqa: E402
from jobs.index.shards import INDEX_LIMITS  # noqa: E402
from pipeline.argo.size import NODE_LIMIT, STATUS_LIMIT_BYTES, estimate  # noqa: E402
from pipeline.dag import SHARD, Pipeline  # noqa: E402
from pipeline.spec import parse_spec, spec_pipeline  # noqa: E402


def tcia_pipeline(collect_sharded: bool) -> Pipeline:
    spec = parse_spec(
        {
            "name": "tcia-10k",
            "sharded": True,
            "datasets": [{"name": "lidc", "source": "tcia", "collection": "LIDC-IDRI", "modality": "CT"}],
            "register": {"model_name": "lidc-classifier"},
        }
    )
    pipeline = spec_pipeline(spec)
    if not collect_sharded:
        return pipeline
    # what a collect fan-out would add: plan -> parts -> gather, the gather keeping the task name index waits for
    collect = pipeline.stage("collect-lidc")
    plan = replace(collect, name="collect-plan-lidc", args=(*collect.args, "--shard", "plan"))
    part = replace(collect, name="collect-part-lidc", args=(*collect.args, "--shard", "{" + SHARD + "}"),
                   depends=(plan.name,), fan_out=plan.name)  # fmt: skip
    gather = replace(collect, args=(*collect.args, "--shard", "gather"), depends=(part.name,))
    rest = tuple(s for s in pipeline.stages if s.name != collect.name)
    return Pipeline(name=pipeline.name, parameters=pipeline.parameters, stages=(plan, part, gather, *rest))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--files-per-series", type=int, default=120, help="CT slices per series (LIDC: ~120)")
    parser.add_argument("--file-bytes", type=int, default=525_000, help="bytes per slice (512x512 16-bit + header)")
    parser.add_argument("--series-per-shard", type=int, default=200)
    parser.add_argument("--bytes-per-shard", type=int, default=8 << 30)
    args = parser.parse_args()

    started = time.perf_counter()
    files = [args.file_bytes] * (args.series * args.files_per_series)
    index_shards = shard_count(files, INDEX_LIMITS)
    series_bytes = [args.file_bytes * args.files_per_series] * args.series
    collect_limits = ShardLimits(max_items=args.series_per_shard, max_bytes=args.bytes_per_shard, max_shards=1000)
    collect_shards = shard_count(series_bytes, collect_limits)
    rows = {}
    for label, sharded in (("index sharded, collect one task", False), ("index and collect sharded", True)):
        pipeline = tcia_pipeline(sharded)
        counts = {"index-part-lidc": index_shards, "collect-part-lidc": collect_shards}
        # a plan's result lists its shards ("12/64", 8 bytes each) besides its ~230-byte summary
        sizes = {"index-plan-lidc": 230 + 8 * index_shards, "collect-plan-lidc": 230 + 8 * collect_shards}
        size = estimate(pipeline, counts, sizes)
        rows[label] = {"nodes": size.nodes, "status_bytes": size.status_bytes, "within_limits": size.within_limits}
    report = {
        "series": args.series,
        "files": len(files),
        "bytes": sum(files),
        "index_shards": index_shards,
        "index_limits": vars(INDEX_LIMITS),
        "collect_shards": collect_shards,
        "collect_limits": {"max_items": args.series_per_shard, "max_bytes": args.bytes_per_shard},
        "limits": {"status_bytes": STATUS_LIMIT_BYTES, "nodes": NODE_LIMIT},
        "workflows": rows,
        "planning_s": round(time.perf_counter() - started, 3),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
