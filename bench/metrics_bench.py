"""What metrics cost a stage: counter updates, StageWriter bookkeeping, and pushes to a real Pushgateway.

Baselines are measured in the same run: a bare ``Store.put_bytes`` loop against ``StageWriter.put_bytes`` (which
also counts bytes in the stage registry), and a plain ``int += 1`` against a labelled counter's ``inc()``.
Run: ``PYTHONPATH=. python bench/metrics_bench.py`` (needs ``prometheus-pushgateway``; ``make services``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from jobs.core.manifest import StageWriter
from jobs.core.metrics import FAMILIES, begin_stage_metrics
from jobs.core.metrics_export import MetricsExport, MetricsTargets
from jobs.core.store import open_store
from tests.support.prometheus import pushgateway_binary, start_pushgateway
from tests.support.seaweedfs import free_port


def per_op(fn, n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls (best of 3)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def main() -> None:
    metrics = begin_stage_metrics("index", dataset="bench", workflow_id="bench")
    # -- counter update vs a plain integer -----------------------------------------------------------------
    box = [0]

    def plain() -> None:
        box[0] += 1

    inc = per_op(plain, 200_000)
    counter = per_op(metrics.items.inc, 200_000)
    print(f"counter inc: {counter * 1e9:.0f} ns/op vs int += 1 {inc * 1e9:.0f} ns/op (x{counter / inc:.1f})")

    # -- StageWriter (records + counts bytes) vs bare store writes ------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "store"))
        data = b"x" * 1024
        names = iter(range(10**9))
        bare = per_op(lambda: store.put_bytes(f"raw/b/{next(names)}", data), 500)
        writer = StageWriter(store, "index", "index/b/", {}, {})
        counted = per_op(lambda: writer.put_bytes(f"{next(names)}", data), 500)
    print(f"1 KiB put: StageWriter {counted * 1e6:.0f} us vs bare store {bare * 1e6:.0f} us (x{counted / bare:.2f})")

    # -- a full registry (every family of the stage) pushed to a real Pushgateway ----------------------------
    for spec in FAMILIES:
        if spec.stage in (None, "index"):
            getattr(metrics, spec.kind)(spec.name, **{label: "x" for label in spec.labels})
    if pushgateway_binary() is None:
        print("pushgateway: not installed (make services); push timings skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        gateway = start_pushgateway(Path(tmp) / "pg")
        try:
            export = MetricsExport(metrics, MetricsTargets(pushgateway=gateway.address))
            pushes = []
            for _ in range(30):
                start = time.perf_counter()
                assert export.push()
                pushes.append(time.perf_counter() - start)
        finally:
            gateway.stop()
    down = MetricsExport(metrics, MetricsTargets(pushgateway=f"127.0.0.1:{free_port()}"))
    start = time.perf_counter()
    assert not down.push()
    refused = time.perf_counter() - start
    print(
        f"push to Pushgateway: median {statistics.median(pushes) * 1e3:.1f} ms, max {max(pushes) * 1e3:.1f} ms; "
        f"to a stopped one: {refused * 1e3:.1f} ms (then the stage goes on)"
    )


if __name__ == "__main__":
    main()
