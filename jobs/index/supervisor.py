"""A process pool that survives its workers: a task that kills or hangs its worker is reported, not fatal.

``ProcessPoolExecutor`` breaks for good when one worker dies (a segfault in a C decoder, the kernel's OOM
killer, ``os._exit`` in a library), failing every pending task, and it cannot stop a task that never returns.
Here each worker is a process with its own pipe and two shared slots that say which task it is on and since
when, so the parent always knows whom to blame. A worker that dies is replaced and its task tried once more
on its own (a death from outside, such as memory pressure, should not cost a file); dying again, or running
past its deadline (the worker is killed), makes the task a ``Failure``. The other tasks the worker held go
back in line. An exception a task raises in the worker (storage unavailable...) is raised in the parent as it
is: per-item problems are the task function's to return as values.

Results travel in chunks (up to ``CHUNK`` results or ``FLUSH_S`` seconds of work per message), so the parent
wakes a few times per batch, not once per task. They come back in input order with at most ``window`` tasks
in flight, so memory stays bounded. Workers are forked where the platform allows (cheap, and they inherit the
parent's imports), or, for a parent whose heap is large (``fresh``), forked from multiprocessing's fork server:
a fresh interpreter that imports the named modules once, so the workers never map the parent's heap and their RSS does
not grow with it. Their stderr goes to ``/dev/null``, so what native code prints while failing (Rust panic
messages, C library warnings) never reaches the stage's stderr.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
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
CHUNK = 32
"""Results per message at most."""
DEATH_REPORT_S = 1.0
"""How long a worker whose pipe closed gets to report its exit status before it is called dead without one."""
FLUSH_S = 0.05
"""A worker sends what it has once this much time has passed since its last message."""
_IDLE = -1


@dataclass(frozen=True, slots=True)
class Failure:
    """A task its worker could not finish: the worker died on it (twice), or it ran past its deadline."""

    reason: str


class _Worker:
    """One worker process, its pipe, the tasks it holds, and the shared slots naming its current task."""

    def __init__(self, context: Any, args: tuple) -> None:
        parent, child = context.Pipe()
        self.current = context.Value("q", _IDLE, lock=False)  # the index of the task it is running
        self.started = context.Value("d", 0.0, lock=False)  # when it started it (time.monotonic, system-wide)
        self.process = context.Process(target=_serve, args=(child, self.current, self.started, *args), daemon=True)
        # A forked worker shares the parent's heap (the listing, the collect manifest: ~1 KiB a file) until it
        # writes to it; its cyclic GC would, by marking every inherited object, and copy all of it. Frozen objects
        # are never traversed, so the worker's private memory stays its own work whatever the dataset's size.
        gc.freeze()
        try:
            self.process.start()
        finally:
            gc.unfreeze()
        child.close()
        self.conn: Connection = parent
        self.held: list[int] = []
        self.since = time.monotonic()

    def on(self) -> int | None:
        """The held task it is running now, if it has started one."""
        index = self.current.value
        return index if index in self.held else None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _death(process: multiprocessing.process.BaseProcess) -> str:
    # Its pipe closes as it dies; the exit status follows a moment later (through the fork server, for a fresh one)
    process.join(DEATH_REPORT_S)
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _serve(
    conn: Connection,
    current: Any,
    started: Any,
    initializer: Callable[..., None],
    initargs: tuple,
    fn: Callable[[Any], Any],
) -> None:
    """The worker's loop: run each task of each batch, send results in chunks, stop on ``None``."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    faulthandler.disable()  # its dump of a crash would go to a descriptor of its own; the parent reports deaths
    try:
        initializer(*initargs)
        while (batch := conn.recv()) is not None:
            done: list[tuple[int, Any]] = []
            sent = time.monotonic()
            for index, task in batch:
                started.value = time.monotonic()
                current.value = index
                try:
                    done.append((index, fn(task)))
                except Exception as exc:  # the parent raises it
                    conn.send(done)
                    _send_error(conn, exc)
                    done = []
                    break
                if len(done) >= CHUNK or time.monotonic() - sent >= FLUSH_S:
                    conn.send(done)
                    done, sent = [], time.monotonic()
            current.value = _IDLE
            if done:
                conn.send(done)
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass


def _send_error(conn: Connection, exc: Exception) -> None:
    try:
        conn.send(exc)
    except Exception:  # an unpicklable exception: its words still get through
        conn.send(RuntimeError(f"{type(exc).__name__}: {exc}"))


def _current(worker: _Worker) -> int:
    """The task a worker is on: what its shared slot says, else the first it holds."""
    on = worker.on()
    return on if on is not None else worker.held[0]


class SupervisedPool(Generic[T, R]):
    """``workers`` processes running ``fn(task)`` after ``initializer(*initargs)``; see the module doc.

    ``fresh`` (module names) starts them from the fork server, those modules already imported there: one
    interpreter start per process (~0.5 s) and one more process holding its imports, for parents whose heap is
    much larger than that.
    """

    def __init__(  # noqa: PLR0913 - the function, then the pool's keyword-only options
        self,
        fn: Callable[[T], R],
        workers: int,
        *,
        initializer: Callable[..., None],
        initargs: tuple = (),
        deadline_s: Callable[[T], float],
        batch: int = 16,
        window: int = 256,
        fresh: Sequence[str] | None = None,
    ) -> None:
        methods = multiprocessing.get_all_start_methods()
        self._context: Any
        if fresh is not None and "forkserver" in methods:
            # ``fn`` and ``initializer`` then travel pickled, by reference: they must be module-level functions
            self._context = multiprocessing.get_context("forkserver")
            self._context.set_forkserver_preload(list(fresh))  # read when the server starts (once a process)
        else:
            self._context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
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

    def _deadline(self, worker: _Worker, tasks: Sequence[T]) -> float:
        index = worker.on()
        if index is not None:
            return worker.started.value + self._deadline_s(tasks[index])
        return worker.since + FLUSH_S + self._deadline_s(tasks[worker.held[0]])  # about to start it

    # One event loop: results, deaths and deadlines of every worker are handled where they are noticed.
    def _run(self, tasks: Sequence[T], workers: list[_Worker]) -> Iterator[R | Failure]:  # noqa: C901, PLR0912
        results: dict[int, R | Failure] = {}
        retry: deque[int] = deque()  # tasks whose worker went away; each runs alone
        next_new, next_out = 0, 0
        died_once: set[int] = set()
        workers.extend(_Worker(self._context, self._args) for _ in range(min(self._workers_wanted, len(tasks))))
        while next_out < len(tasks):
            # hand out work to idle workers, never past the window
            for worker in workers:
                if worker.held:
                    continue
                if retry:
                    batch = [retry.popleft()]
                else:
                    stop = min(len(tasks), next_out + self._window, next_new + self._batch)
                    batch, next_new = list(range(next_new, max(next_new, stop))), max(next_new, stop)
                if batch:
                    worker.conn.send([(i, tasks[i]) for i in batch])
                    worker.held, worker.since = batch, time.monotonic()
            while next_out in results:
                yield results.pop(next_out)
                next_out += 1
            busy = [w for w in workers if w.held]
            if not busy:
                continue
            deadlines = {id(w): self._deadline(w, tasks) for w in busy}
            ready = wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy],
                timeout=max(0.0, min(deadlines.values()) - time.monotonic()),
            )
            for slot, worker in enumerate(workers):
                if not worker.held:
                    continue
                if worker.conn in ready or worker.process.sentinel in ready:
                    if self._drain(worker, results):
                        continue
                    if worker.held:  # it died on a task: which one, its shared slot says
                        index = _current(worker)
                        if index in died_once:
                            results[index] = Failure(f"the worker inspecting it died twice ({_death(worker.process)})")
                        else:
                            died_once.add(index)
                            retry.append(index)
                elif time.monotonic() >= deadlines[id(worker)]:
                    index = _current(worker)
                    results[index] = Failure(f"no result within {self._deadline_s(tasks[index]):.0f} s; stopped")
                else:
                    continue
                retry = deque(sorted({*retry, *worker.held} - results.keys()))  # the rest of its batch, again
                worker.held = []
                worker.kill()
                workers[slot] = _Worker(self._context, self._args)

    def _drain(self, worker: _Worker, results: dict[int, R | Failure]) -> bool:
        """Take every message the worker has sent; ``False`` if it is gone (dead, or its pipe closed)."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if isinstance(message, BaseException):
                    raise message
                for index, value in message:
                    results[index] = value
                held = set(worker.held) - {index for index, _ in message}
                worker.held = [i for i in worker.held if i in held]
                worker.since = time.monotonic()
        except (EOFError, OSError):
            return False
        return worker.process.is_alive()
