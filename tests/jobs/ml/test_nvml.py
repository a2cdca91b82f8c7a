"""GPU metrics from NVML: real numbers on a GPU machine, nothing (and no error) elsewhere."""

from __future__ import annotations

import os
import shutil

import pytest
from prometheus_client import generate_latest

from jobs.core.metrics import StageMetrics
from jobs.ml import nvml

HAS_NVIDIA_DRIVER = shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0")


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test probes NVML again instead of reusing an earlier test's answer."""
    monkeypatch.setattr(nvml, "_unavailable", False)


@pytest.mark.skipif(HAS_NVIDIA_DRIVER, reason="this machine has an NVIDIA driver")
def test_without_a_driver_nothing_is_recorded():
    # GIVEN a machine without an NVIDIA driver, WHEN GPUs are sampled
    metrics = StageMetrics("train")
    samples = nvml.sample_gpus(metrics)
    # THEN there are no samples and no GPU series, and later calls do not probe again
    assert samples == []
    assert b"irmsia_gpu_" not in generate_latest(metrics.registry)
    assert nvml._unavailable is True


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_NVIDIA_DRIVER, reason="needs an NVIDIA GPU and driver")
def test_gpu_memory_and_utilisation_are_recorded():
    # GIVEN a machine with an NVIDIA GPU, WHEN GPUs are sampled
    metrics = StageMetrics("train")
    samples = nvml.sample_gpus(metrics)
    # THEN every GPU has plausible memory and utilisation, exported per GPU index
    assert samples, "NVML found no GPU although the driver is present"
    text = generate_latest(metrics.registry).decode()
    for gpu in samples:
        assert 0 <= gpu.memory_used_bytes <= gpu.memory_total_bytes and gpu.memory_total_bytes > 0
        assert 0.0 <= gpu.utilization <= 1.0
        assert f'irmsia_gpu_memory_used_bytes{{dataset="",gpu="{gpu.index}"' in text
        assert f'irmsia_gpu_utilization_ratio{{dataset="",gpu="{gpu.index}"' in text
