"""Inspect many objects across processes, yielding results in input order with a bounded number in flight.

Batches of tasks go to a process pool; at most ``WINDOW_PER_WORKER`` batches per worker are outstanding, so
memory holds a fixed number of results whatever the dataset size, and the caller sees them in key order
(which keeps the output sorted and the dedup rule "first key wins" deterministic).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from jobs.index.inspection import Inspection, ObjectReader, Task, inspect

BATCH = 64
"""Tasks per pool submission: amortises inter-process overhead, small enough to keep workers balanced."""
WINDOW_PER_WORKER = 3

_reader: ObjectReader | None = None
_verify = False


def _init_worker(store_uri: str, verify: bool) -> None:
    global _reader, _verify
    _reader = ObjectReader(store_uri)  # each process opens its own store (boto3 clients are not fork-safe)
    _verify = verify


def _inspect_batch(tasks: Sequence[Task]) -> list[Inspection]:
    assert _reader is not None
    return [inspect(_reader, task, _verify) for task in tasks]


def scan(store_uri: str, tasks: Sequence[Task], workers: int, verify: bool = False) -> Iterator[Inspection]:
    """Inspect every task; ``workers <= 1`` runs in this process (no pool start-up for tiny inputs)."""
    if workers <= 1 or len(tasks) <= BATCH:
        reader = ObjectReader(store_uri)
        for task in tasks:
            yield inspect(reader, task, verify)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    batches = (tasks[i : i + BATCH] for i in range(0, len(tasks), BATCH))
    pending: deque[Future[list[Inspection]]] = deque()
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(store_uri, verify),
    ) as pool:
        try:
            for batch in batches:
                pending.append(pool.submit(_inspect_batch, batch))
                if len(pending) >= workers * WINDOW_PER_WORKER:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
