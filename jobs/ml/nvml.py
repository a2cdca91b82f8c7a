"""GPU memory and utilisation from NVML (``nvidia-ml-py``), when a driver is present.

Training calls ``sample_gpus(metrics)`` once per epoch; on machines without the package, the driver or a GPU it
records nothing and returns an empty list, so CPU runs and tests need no special case.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from jobs.core.metrics import StageMetrics

log = logging.getLogger("irmsia.nvml")
_unavailable = False


@dataclass(frozen=True, kw_only=True)
class GpuSample:
    """One GPU at one moment: its index, memory in use and utilisation (0-1) over the driver's last period."""

    index: int
    memory_used_bytes: int
    memory_total_bytes: int
    utilization: float


def read_gpus() -> list[GpuSample]:
    """Every GPU NVML sees, or ``[]`` without NVML (checked once per process, then remembered)."""
    global _unavailable
    if _unavailable:
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # ImportError, or NVMLError when there is no driver
        _unavailable = True
        log.debug("NVML unavailable (%s): no GPU metrics", exc)
        return []
    samples = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            samples.append(
                GpuSample(
                    index=i,
                    memory_used_bytes=int(memory.used),
                    memory_total_bytes=int(memory.total),
                    utilization=rates.gpu / 100.0,
                )
            )
    except Exception as exc:  # a GPU that fell off the bus must not end a training run
        log.warning("reading GPU metrics from NVML failed (%s); continuing without them", exc)
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return samples


def sample_gpus(metrics: StageMetrics) -> list[GpuSample]:
    """Set ``irmsia_gpu_memory_used_bytes`` and ``irmsia_gpu_utilization_ratio`` for every GPU; return the samples."""
    samples = read_gpus()
    for gpu in samples:
        metrics.gauge("irmsia_gpu_memory_used_bytes", gpu=gpu.index).set(gpu.memory_used_bytes)
        metrics.gauge("irmsia_gpu_utilization_ratio", gpu=gpu.index).set(gpu.utilization)
    return samples
