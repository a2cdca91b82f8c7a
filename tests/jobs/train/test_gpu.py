"""On a CUDA machine the stage trains on the GPU with fp16 autocast, channels_last, and records the device."""

from __future__ import annotations

import pytest
import torch

from jobs.core.store import open_store
from jobs.train.stage import run
from tests.support.synthetic_split import write_split

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_trains_on_cuda_with_amp_and_reports_the_device(tmp_path, fast_settings):
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    write_split(store, "tiny", counts={"train": 64, "val": 16, "test": 16})
    manifest, _ = run(fast_settings(store_uri, run_id="gpu", device="auto", workers=-1, epochs=3))
    perf = manifest.summary["performance"]
    assert perf["device"] == "cuda" and perf["amp"] == "fp16" and perf["channels_last"] is True
    assert perf["device_name"] == torch.cuda.get_device_name(0)
    assert manifest.summary["device"].startswith("cuda")
    assert perf["images_per_s"] > 0
