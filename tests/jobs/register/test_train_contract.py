"""The train -> register contract with the real train stage: what train seals, register takes and serves back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jobs.core.settings import CommonSettings
from jobs.core.store import open_store
from jobs.register.api import load_model
from jobs.register.verify import verify_registry
from jobs.train.settings import TrainSettings
from jobs.train.stage import run as train
from tests.jobs.register.conftest import register
from tests.support.synthetic_split import write_split


@pytest.mark.slow
def test_a_real_training_run_registers_and_serves(tmp_path):
    # GIVEN a run trained by the train stage on a tiny synthetic split
    store = open_store(str(tmp_path / "store"))
    write_split(store, "tiny")
    settings = TrainSettings(
        dataset="tiny", run_id="r1", model="small-cnn", epochs=1, image_size=32, batch_size=8, device="cpu",
        workers=0, cache_dir=str(tmp_path / "cache"), common=CommonSettings(store=store.uri, log_format="text"),
    )  # fmt: skip
    manifest, _ = train(settings)
    # WHEN it is registered
    assert register(store, "--run", "r1", "--model-name", "tiny-model", "--metric", "val_accuracy") == 0
    # THEN the bundle carries its lineage and metrics, verifies, and serves the trained weights
    meta = json.loads(store.get_bytes("registry/tiny-model/1/configs/metadata.json"))
    assert meta["irmsia"]["lineage"]["train_manifest_sha256"] == manifest.content_sha256
    assert meta["irmsia"]["lineage"]["split_manifest_sha256"] == manifest.inputs["splits/tiny/"]
    assert meta["irmsia"]["classes"] == ["nodule", "normal"]
    run_metrics = json.loads(store.get_bytes("runs/r1/metrics.json"))
    assert meta["irmsia"]["metric"]["value"] == run_metrics["val_accuracy"]
    assert verify_registry(store, "tiny-model").ok
    module, preprocessing = load_model(store, "tiny-model")
    key = next(o.key for o in store.list("raw/tiny/") if o.key.endswith((".dcm", ".png")))
    x = torch.from_numpy(preprocessing(store.get_bytes(key), key))[None]
    with torch.no_grad():
        logits = module(x).numpy()
    assert logits.shape == (1, 2) and np.isfinite(logits).all()
