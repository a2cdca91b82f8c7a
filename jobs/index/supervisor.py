"""A process pool that survives its workers: a task that kills or hangs its worker is reported, not fatal.

``ProcessPoolExecutor`` breaks for good when one worker dies (a segfault in a C decoder, the kernel's OOM
killer, ``os._exit`` in a library), failing every pending task, and it cannot stop a task that never returns.
Here each worker is a process with its own pipe; the parent knows which task each one is on and since when.
A worker that dies is replaced and its task tried once more on its own (a death from outside, such as
memory pressure, should not cost a file); dying again, or running past its deadline (the worker is killed),
makes the task a ``Failure``. An exception a task raises in the worker (storage unavailable...) is raised in
the parent as it is: per-item problems are the task function's to return as values.

Results come back in input order with at most ``window`` tasks in flight, so memory stays bounded. Workers
are forked where the platform allows (cheap, and they inherit the parent's imports); their stderr goes to
``/dev/null``, so what native code prints while failing (Rust panic messages, C library warnings) never
reaches the stage's stderr.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

STOP_GRACE_S = 5.0
"""How long stopped workers get to exit before they are killed."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A task its worker could not finish: the worker died on it (twice), or it ran past its deadline."""

    reason: str


class _Worker:
    """One worker process, its end of the pipe, and the tasks it holds (the first is the one it is on)."""

    def __init__(self, context: Any, target: Callable[..., None], args: tuple) -> None:
        parent, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        child.close()
        self.conn: Connection = parent
        self.held: deque[int] = deque()
        self.since = time.monotonic()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _death(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _serve(conn: Connection, initializer: Callable[..., None], initargs: tuple, fn: Callable[[Any], Any]) -> None:
    """The worker's loop: run each task of each batch, send one message per task, stop on ``None``."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        initializer(*initargs)
        while (batch := conn.recv()) is not None:
            for index, task in batch:
                try:
                    message = (index, True, fn(task))
                except Exception as exc:  # the parent raises it
                    message = (index, False, exc)
                try:
                    conn.send(message)
                except Exception:  # an unpicklable exception: its words still get through
                    conn.send((index, False, RuntimeError(f"{type(message[2]).__name__}: {message[2]}")))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass


class SupervisedPool(Generic[T, R]):
    """``workers`` processes running ``fn(task)`` after ``initializer(*initargs)``; see the module doc."""

    def __init__(
        self,
        fn: Callable[[T], R],
        workers: int,
        *,
        initializer: Callable[..., None],
        initargs: tuple = (),
        deadline_s: Callable[[T], float],
        batch: int = 16,
        window: int = 256,
    ) -> None:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._context = multiprocessing.get_context(method)
        self._args = (initializer, initargs, fn)
        self._workers_wanted = max(1, workers)
        self._deadline_s = deadline_s
        self._batch = max(1, batch)
        self._window = max(window, self._batch * self._workers_wanted)

    def map(self, tasks: Sequence[T]) -> Iterator[R | Failure]:
        """``fn(task)`` or a ``Failure`` for every task, in order."""
        workers: list[_Worker] = []
        try:
            yield from self._run(tasks, workers)
        finally:
            for worker in workers:
                with contextlib.suppress(OSError):  # already gone
                    worker.conn.send(None)
            end = time.monotonic() + STOP_GRACE_S
            for worker in workers:
                worker.process.join(max(0.0, end - time.monotonic()))
                worker.kill()

    def _start(self) -> _Worker:
        return _Worker(self._context, _serve, self._args)

    def _run(self, tasks: Sequence[T], workers: list[_Worker]) -> Iterator[R | Failure]:
        results: dict[int, R | Failure] = {}
        queue: deque[int] = deque()  # retries go first
        next_new, next_out = 0, 0
        died_once: set[int] = set()
        workers.extend(self._start() for _ in range(min(self._workers_wanted, len(tasks))))
        while next_out < len(tasks):
            # hand out work to idle workers, never past the window
            for worker in workers:
                if worker.held:
                    continue
                batch: list[int] = []
                if queue:
                    batch.append(queue.popleft())  # a retried task runs alone: a second death is its own
                else:
                    while len(batch) < self._batch and next_new < min(len(tasks), next_out + self._window):
                        batch.append(next_new)
                        next_new += 1
                if batch:
                    worker.conn.send([(i, tasks[i]) for i in batch])
                    worker.held.extend(batch)
                    worker.since = time.monotonic()
            while next_out in results:
                yield results.pop(next_out)
                next_out += 1
            busy = [w for w in workers if w.held]
            if not busy:
                continue
            now = time.monotonic()
            deadlines = {w: w.since + self._deadline_s(tasks[w.held[0]]) for w in busy}
            ready = wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy],
                timeout=max(0.0, min(deadlines.values()) - now),
            )
            for slot, worker in enumerate(workers):
                if not worker.held:
                    continue
                if worker.conn in ready or worker.process.sentinel in ready:
                    if self._drain(worker, results):
                        continue
                    if worker.held:  # it died on its current task; the rest of its batch goes back in line
                        index = worker.held.popleft()
                        if index in died_once:
                            results[index] = Failure(f"the worker inspecting it died twice ({_death(worker.process)})")
                        else:
                            died_once.add(index)
                            queue.append(index)
                elif time.monotonic() >= deadlines[worker]:
                    index = worker.held.popleft()
                    results[index] = Failure(f"no result within {self._deadline_s(tasks[index]):.0f} s; stopped")
                else:
                    continue
                queue.extend(worker.held)
                worker.held.clear()
                worker.kill()
                workers[slot] = self._start()
            queue = deque(sorted(queue))

    def _drain(self, worker: _Worker, results: dict[int, R | Failure]) -> bool:
        """Take every message the worker has sent; ``False`` if it is gone (dead, or its pipe closed)."""
        try:
            while worker.conn.poll():
                index, ok, value = worker.conn.recv()
                if not ok:
                    raise value
                results[index] = value
                worker.held.popleft()
                worker.since = time.monotonic()
        except (EOFError, OSError):
            return False
        return worker.process.is_alive()
