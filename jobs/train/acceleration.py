"""Opt-in speed-ups of the training loop, each behind one train option and off by default until measured to win.

- ``--compile``: ``torch.compile`` of the model's forward (``reduce-overhead`` also records CUDA graphs, which needs
  the static batch shape the loop's ``drop_last`` gives); a backend that fails to compile falls back to eager with
  a warning, and the compile time (first step) is logged and reported.
- ``--lr-base-batch``: the linear learning-rate scaling rule for bigger batches (``lr * batch / base``), used with
  the existing ``--warmup-epochs``.
- ``--device-cache``: the whole training split's float16 tensor on the training device when it fits, batches
  gathered there (no loader, no host-to-device copy); same index order, so the same batches bit for bit.
- ``--prefetch``: the next batch copied from pinned host memory to the GPU on a side stream while this one trains.

The Trainer calls these at narrow points (building the model, the optimiser's LR, the training batches); nothing
here changes what a default run computes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger("irmsia.train.acceleration")
# Headroom left free on the GPU for activations, the optimiser and cuDNN workspaces when caching the split there.
DEVICE_CACHE_MAX_FRACTION = 0.4


def scaled_lr(lr: float, batch_size: int, base_batch: int) -> float:
    """The linear scaling rule (Goyal et al. 2017): ``lr`` is for ``base_batch``; 0 means no scaling."""
    return lr if base_batch <= 0 else lr * batch_size / base_batch


@dataclass
class CompiledForward:
    """The model's forward, compiled on first call when asked; eager (the module itself) otherwise or on failure.

    The module stays the one the checkpoint saves (a compiled wrapper's ``state_dict`` keys carry ``_orig_mod.``).
    """

    model: nn.Module
    mode: str = "off"
    compile_s: float | None = None
    fallback: str | None = None
    _compiled: Callable[..., Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode != "off":
            try:
                self._compiled = torch.compile(self.model, mode=None if self.mode == "default" else self.mode)
            except Exception as exc:  # an unsupported platform/Python: train eagerly rather than not at all
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._compiled = None
        self.fallback = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        log.warning("torch.compile (mode %s) failed, training eagerly: %s", self.mode, self.fallback)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None:
            return self.model(x)
        if self.compile_s is not None:
            if self.mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()  # outputs of the last replay are no longer needed
            return self._compiled(x)
        started = time.perf_counter()
        try:
            out = self._compiled(x)  # compilation happens here, on the first batch
        except Exception as exc:  # inductor/codegen errors surface only now (no compiler, unsupported op)
            self._fail(exc)
            return self.model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        self.compile_s = time.perf_counter() - started
        log.info("torch.compile (mode %s): first step compiled in %.1f s", self.mode, self.compile_s)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "compile": self.mode,
            "compiled": self._compiled is not None,
            "compile_s": None if self.compile_s is None else round(self.compile_s, 2),
            "compile_fallback": self.fallback,
        }


# -- batches ---------------------------------------------------------------------------------------------------
def device_cache_fits(images: np.ndarray, device: torch.device) -> bool:
    """Whether the split's tensor takes at most ``DEVICE_CACHE_MAX_FRACTION`` of the device's free memory (CPU:
    always; the memory-mapped file is then read into RAM once)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return images.nbytes <= DEVICE_CACHE_MAX_FRACTION * free


class DeviceBatches:
    """Batches gathered from the split's tensor held on the device, in the order of ``sampler``'s index lists."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, sampler: Iterable[list[int]], device: torch.device):
        self.images = torch.from_numpy(np.array(images)).to(device)  # read the memory-mapped file once
        self.labels = torch.from_numpy(np.asarray(labels)).to(device)
        self.sampler = sampler
        self.device = device

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A DataLoader iterator draws its workers' base seed from the global generator; draw it too, so that the
        # dropout masks that follow (and so the trained weights) are those of the loader path.
        torch.empty((), dtype=torch.int64).random_()
        batches = [list(index) for index in self.sampler]
        # The epoch's whole order goes to the device in one copy: a small copy per batch would make the host
        # wait for the GPU every step and undo the point of keeping the data there.
        order = torch.as_tensor([i for index in batches for i in index], dtype=torch.int64).to(self.device)
        start = 0
        for index in batches:
            idx = order[start : start + len(index)]
            start += len(index)
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)


class PrefetchBatches:
    """Wraps a loader of pinned CPU batches: batch ``i + 1`` is copied on a side CUDA stream while ``i`` trains."""

    def __init__(self, loader: Any, device: torch.device) -> None:
        self.loader = loader
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stream = torch.cuda.Stream(self.device)

        def copy(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.cuda.stream(stream):
                return tuple(t.to(self.device, non_blocking=True) for t in batch)  # type: ignore[return-value]

        pending = None
        for batch in self.loader:
            ready = copy(batch)
            if pending is not None:
                yield self._hand_over(pending, stream)
            pending = ready
        if pending is not None:
            yield self._hand_over(pending, stream)

    @staticmethod
    def _hand_over(
        batch: tuple[torch.Tensor, torch.Tensor], stream: torch.cuda.Stream
    ) -> tuple[torch.Tensor, torch.Tensor]:
        current = torch.cuda.current_stream()
        current.wait_stream(stream)
        for t in batch:
            t.record_stream(current)  # the side stream's allocation is now used on the compute stream
        return batch


def training_batches(
    loader: Any, images: np.ndarray, labels: np.ndarray, device: torch.device, *, device_cache: str, prefetch: bool
) -> tuple[Any, dict[str, Any]]:
    """What the training epoch iterates: the loader itself, the device-resident split, or the prefetching loader;
    and a description for the run's performance summary."""
    if device_cache != "off":
        if device_cache == "on" or device_cache_fits(images, device):
            batches = DeviceBatches(images, labels, loader.batch_sampler or loader.sampler, device)
            log.info("training split cached on %s (%.1f MiB)", device, images.nbytes / 2**20)
            return batches, {"device_cache": True, "prefetch": False}
        log.info("training split (%.0f MiB) does not fit the device cache; loading batches", images.nbytes / 2**20)
    if prefetch and device.type == "cuda":
        return PrefetchBatches(loader, device), {"device_cache": False, "prefetch": True}
    return loader, {"device_cache": False, "prefetch": False}
