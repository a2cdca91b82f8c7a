"""Data-parallel training (DistributedDataParallel) over the processes of one node or several.

``irmsia-train --nproc-per-node N`` starts N worker processes itself with torch's elastic launcher (standalone
rendezvous on localhost, like ``torchrun --standalone``); under ``torchrun`` (a Kubeflow ``PyTorchJob``, several
nodes) the environment already names each process (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``) and
``irmsia-train`` runs as that one process. Backends: NCCL for CUDA tensors, gloo for CPU tensors and the small
Python objects the ranks exchange.

Roles: rank 0 is the *leader*: it runs the stage as one process would (cache check, checkpoints, outputs, the
result file, metrics) and tells the others whether there is training to do. The others are *followers*: they read
the split, train their share of each batch and score their share of val/test, and never write to the store (they
get a store that refuses writes, ``ReadOnlyStore``), the result file or the metrics. On each node local rank 0
decodes the image cache while the node's other ranks wait (``local_first``), so no two processes build one entry.

``--batch-size`` is the *global* batch: each of W processes trains on ``batch_size / W`` images of it, so that the
optimiser sees the same batches, learning-rate schedule and step count as one process (see ``Trainer``).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from jobs.core.errors import IrmsiaError, UsageError
from jobs.core.store import ObjectInfo, Part, Store

log = logging.getLogger("irmsia.train.distributed")
T = TypeVar("T")

COLLECTIVE_TIMEOUT = datetime.timedelta(hours=12)
"""How long a rank waits in a collective: local rank 0 may decode a large dataset for hours while the others wait
(the train pod's activeDeadlineSeconds is 12 h); torch's default of 30 min would kill them first."""
TRAIN = "train"
CACHED = "cached"
FAILED = "failed"


class PeerFailed(IrmsiaError):
    """Another training process failed (its own error is in its log, and rank 0 reports it); fix that one and
    rerun."""


@dataclass
class World:
    """This process's place among the training processes (one process: rank 0 of 1, no process group)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    announced: str | None = field(default=None, repr=False)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    # -- collectives (no-ops for one process) ----------------------------------------------------------------
    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def sum_(self, tensor: Any) -> Any:
        """``tensor`` summed over the ranks, in place."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def share(self, count: int) -> tuple[int, int]:
        """This rank's contiguous share ``[start, stop)`` of ``count`` items (evaluation): the shares in rank
        order are the items in order, each once, so gathered predictions line up with one process's."""
        return count * self.rank // self.size, count * (self.rank + 1) // self.size

    # -- the leader's word -----------------------------------------------------------------------------------
    def announce(self, decision: str) -> None:
        """Rank 0 tells the followers what happens next (``train``, ``cached`` or ``failed``), once."""
        if self.distributed and self.leader and self.announced is None:
            self.announced = decision
            self.broadcast(decision)

    def await_leader(self) -> str:
        """A follower waits for rank 0's decision."""
        return str(self.broadcast(None))

    def local_first(self, work: Callable[[], T], what: str) -> T:
        """``work`` on local rank 0 first, then (after everyone knows it succeeded) on the node's other ranks:
        the decoded-image cache is built once per node and read by the rest."""
        if not self.distributed:
            return work()
        result: T | None = None
        error: BaseException | None = None
        if self.local_rank == 0:
            try:
                result = work()
            except BaseException as exc:  # every rank must reach the gather below, or the others wait forever
                error = exc
        failures = [f for f in self.gather(None if error is None else f"{type(error).__name__}: {error}") if f]
        if error is not None:
            raise error
        if failures:
            raise PeerFailed(f"{what} failed in another process ({failures[0]})")
        return result if self.local_rank == 0 else work()  # type: ignore[return-value]


def world_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> World:
    """The world torchrun (or ``launch``) describes in the environment; one process when it names none."""
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        return World(rank=int(env.get("RANK", "0")), local_rank=int(env.get("LOCAL_RANK", "0")), size=size)
    except ValueError as exc:
        raise UsageError(f"RANK/LOCAL_RANK/WORLD_SIZE: not integers ({exc}); start with torchrun") from exc


@dataclass
class ProcessGroup:
    """The process group of one run: joined on entry (backend by device), destroyed on exit."""

    world: World
    cuda: bool

    def __enter__(self) -> World:
        if not self.world.distributed:
            return self.world
        import torch
        import torch.distributed as dist

        if self.cuda:
            torch.cuda.set_device(self.world.local_rank)  # "cuda" below then means this rank's GPU
        else:  # the node's cores shared between its processes, not each process spinning up one thread per core
            from jobs.core.cpus import usable_cpus

            torch.set_num_threads(max(1, usable_cpus() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
        # gloo carries CPU tensors and the pickled objects; NCCL the CUDA tensors (gradients, metrics).
        backend = "cpu:gloo,cuda:nccl" if self.cuda else "gloo"
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
        log.info("process %d of %d (local rank %d) joined the %s group", self.world.rank, self.world.size,
                 self.world.local_rank, backend)  # fmt: skip
        return self.world

    def __exit__(self, *exc: object) -> None:
        if self.world.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def check_world(world: World, batch_size: int) -> None:
    """The global batch must split evenly between the processes."""
    if world.distributed and batch_size % world.size:
        raise UsageError(
            f"--batch-size {batch_size}: the global batch must divide by the {world.size} training processes; "
            f"use a multiple of {world.size}"
        )


# -- the followers' store --------------------------------------------------------------------------------------
class ReadOnlyStore(Store):
    """A view of a store that reads and refuses every write: what a follower gets, so that a code path that
    would write from rank > 0 fails loudly instead of racing rank 0."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.is_local = inner.is_local

    def _refuse(self, key: str) -> Any:
        raise RuntimeError(f"{key}: training process {os.environ.get('RANK')} tried to write; only rank 0 writes")

    def put_file(self, key: str, path: str | Path, sha256: str | None = None) -> ObjectInfo:
        return self._refuse(key)

    def move_file(self, key: str, path: str | Path, sha256: str | None = None, size: int | None = None) -> ObjectInfo:
        return self._refuse(key)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._refuse(key)

    def put_bytes(self, key: str, data: bytes, sha256: str | None = None) -> ObjectInfo:
        return self._refuse(key)

    def put_parts(self, key: str, parts: Sequence[Part], sha256: str | None = None) -> ObjectInfo:
        return self._refuse(key)

    def delete(self, key: str) -> None:
        self._refuse(key)

    def sweep_scratch(self) -> None:
        self._refuse("scratch")

    def open_read(self, key: str, verify: bool = True) -> BinaryIO:
        return self.inner.open_read(key, verify=verify)

    def get_file(self, key: str, path: str | Path, verify: bool = True) -> ObjectInfo:
        return self.inner.get_file(key, path, verify=verify)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)


# -- starting the processes ------------------------------------------------------------------------------------
def _worker(argv: list[str]) -> int:
    """One worker process of ``launch``: the stage as rank 0, a follower otherwise. A non-zero exit leaves the
    process with that code, so the launcher stops the other workers instead of leaving them in a collective, and
    reports the code (``os._exit``: torch's worker wrapper turns a ``SystemExit`` into status 1; the result file
    is written and the process group gone by now, so only the logs need flushing)."""
    from jobs.train.__main__ import run_process

    code = run_process(argv)
    if code:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def launch(argv: Sequence[str], nproc: int) -> int:
    """Run ``nproc`` worker processes on this node (elastic standalone rendezvous on a free local port) and return
    rank 0's exit code, or the first failed worker's."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"irmsia-train-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,  # a failed epoch is retried by the pod's retry and --resume auto, not by the launcher
        monitor_interval=0.5,
    )
    log.info("starting %d training processes on this node", nproc)
    try:
        results = elastic_launch(config, _worker)(list(argv))
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    return int(results.get(0, 0) or 0)
