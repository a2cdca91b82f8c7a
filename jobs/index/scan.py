"""Inspect many objects across worker processes, yielding results in input order with a bounded number in flight.

Tasks go in batches to a ``SupervisedPool``: at most ``WINDOW_PER_WORKER`` batches per worker are outstanding,
so memory holds a fixed number of results whatever the dataset size, and the caller sees them in key order
(which keeps the output sorted and the dedup rule "first key wins" deterministic). A file that kills its
worker (a crash in a native decoder, the OOM killer) or makes it hang comes back as an ``Inspection`` with a
quarantine reason, like any other unusable file; the stage goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from jobs.index.inspection import Inspection, ObjectReader, Task, inspect
from jobs.index.supervisor import Failure, SupervisedPool

BATCH = 64
"""Tasks per worker message: amortises inter-process overhead, small enough to keep workers balanced."""
WINDOW_PER_WORKER = 3
DEADLINE_S = 300.0
"""Seconds one file may take beyond its reading time; far above any parse, and above the store's timeouts, so
that a stalled store fails the stage as transient (exit 75) before a file is blamed."""
READ_RATE = 4 << 20
"""Bytes per second of reading (hashing, header) a file's deadline allows on top of ``DEADLINE_S``."""
DECODE_RATE = 1 << 20
"""Bytes per second with ``--verify-pixels`` (decoding is slower than reading)."""
FRESH_WORKERS_FROM = 20_000
"""Tasks from which workers come from the fork server instead of forks of the stage. The stage holds ~1 KiB a
listed file (listing, collect manifest), which every forked worker maps and counts in its RSS (60 MiB at 10k
files, 138 MiB at 100k); fresh workers stay at 43 MiB. The server costs ~0.3 s and one more process (55 MiB RSS):
at 10k files 10 % of the scan and more memory in all (PSS summed 161 vs 115-130 MiB), at 100k none of the time
and less memory (253 vs 275 MiB) (``bench/index_bench.py --growth``, RESULTS.md)."""

_reader: ObjectReader | None = None
_verify = False


def _init_worker(store_uri: str, verify: bool) -> None:
    global _reader, _verify
    _reader = ObjectReader(store_uri)  # each process opens its own store (boto3 clients are not fork-safe)
    _verify = verify


def _inspect_one(task: Task) -> Inspection:
    assert _reader is not None
    return inspect(_reader, task, _verify)


def deadline_s(task: Task, verify: bool) -> float:
    """How long inspecting ``task`` may take before its worker is stopped and the file quarantined."""
    return DEADLINE_S + task.size / (DECODE_RATE if verify else READ_RATE)


def scan(store_uri: str, tasks: Sequence[Task], workers: int, verify: bool = False) -> Iterator[Inspection]:
    """Inspect every task in at most ``workers`` processes (fewer for few tasks)."""
    if not tasks:
        return
    workers = max(1, min(workers, -(-len(tasks) // BATCH)))
    pool: SupervisedPool[Task, Inspection] = SupervisedPool(
        _inspect_one,
        workers,
        initializer=_init_worker,
        initargs=(store_uri, verify),
        deadline_s=lambda task: deadline_s(task, verify),
        batch=BATCH,
        window=BATCH * WINDOW_PER_WORKER * workers,
        fresh=(__name__,) if len(tasks) >= FRESH_WORKERS_FROM else None,
    )
    for task, outcome in zip(tasks, pool.map(tasks), strict=True):
        if isinstance(outcome, Failure):
            kind = "inspection timed out" if outcome.reason.startswith("no result") else "inspection crashed"
            yield Inspection(task.key, None, task.size, reason=f"{kind}: {outcome.reason}")
        else:
            yield outcome
