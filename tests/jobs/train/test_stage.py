"""The train stage end to end on a tiny synthetic split: artefacts, manifest, cache hit, both store backends."""

from __future__ import annotations

import io
import json

import torch

from jobs.core.manifest import read_manifest
from jobs.core.settings import CommonSettings
from jobs.core.store import open_store
from jobs.ml.networks import build_network
from jobs.train.stage import run
from tests.support.synthetic_split import write_split

ARTEFACTS = {
    "best_model.pt",
    "last_model.pt",
    "checkpoints/last.pt",
    "metrics.json",
    "history.json",
    "config.json",
    "training_curves.png",
    "confusion_matrix.png",
    "predictions.json",
    "report.html",
}


def test_run_writes_every_artefact_and_a_rerun_is_a_cache_hit(store_uri, fast_settings):
    # GIVEN a sealed tiny split on either backend
    store = open_store(store_uri)
    write_split(store, "tiny")
    settings = fast_settings(store_uri, run_id="r1")
    # WHEN the stage runs
    manifest, cached = run(settings)
    # THEN every artefact is listed in the manifest, and the model loads into the network config.json names
    assert not cached
    names = {o.key.removeprefix("runs/r1/") for o in manifest.outputs}
    assert names == ARTEFACTS
    config = json.loads(store.get_bytes("runs/r1/config.json"))
    assert (config["model"], config["in_channels"], config["num_classes"]) == ("small-cnn", 1, 2)
    assert config["classes"] == ["nodule", "normal"]
    assert config["preprocessing"]["image_size"] == 32
    net = build_network(config["model"], config["in_channels"], config["num_classes"])
    net.load_state_dict(torch.load(io.BytesIO(store.get_bytes("runs/r1/best_model.pt")), weights_only=True))
    metrics = json.loads(store.get_bytes("runs/r1/metrics.json"))
    for split in ("val", "test"):
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
            assert 0.0 <= metrics[f"{split}_{name}"] <= 1.0
        assert sum(map(sum, metrics["details"][split]["confusion_matrix"])) == 12
    assert manifest.summary["epochs_run"] == 2
    assert manifest.inputs == {"splits/tiny/": read_manifest(store, "splits/tiny/").content_sha256}
    # WHEN it runs again with the same inputs THEN it is a cache hit with the same manifest
    again, cached = run(settings)
    assert cached and again.content_sha256 == manifest.content_sha256


def test_forced_rerun_on_cpu_reproduces_every_output_byte_for_byte(tmp_path, fast_settings):
    # GIVEN a finished run on the CPU
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    write_split(store, "tiny")
    first, _ = run(fast_settings(store_uri, run_id="r1"))
    # WHEN it is recomputed with --force
    forced = CommonSettings(store=store_uri, log_format="text", force=True)
    second, cached = run(fast_settings(store_uri, run_id="r1", common=forced))
    # THEN every sealed output is identical, so the run keeps its identity for register's cache,
    # while the timings (which differ) are only in the manifest's summary
    assert not cached
    assert second.outputs == first.outputs
    assert second.content_sha256 == first.content_sha256
    assert second.summary["performance"]["images_per_s"] > 0
    assert "performance" not in json.loads(store.get_bytes("runs/r1/metrics.json"))
