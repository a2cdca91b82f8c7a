"""``irmsia-register --quantize int8``: the INT8 ONNX model of a really trained run, checked against fp32 on val."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jobs.core.errors import DataError
from jobs.core.settings import CommonSettings
from jobs.core.store import Store, open_store
from jobs.register import quantize
from jobs.register import registry as model_registry
from jobs.register.api import load_model
from jobs.register.keys import MODEL_INT8, MODEL_ONNX
from jobs.register.verify import verify_registry
from jobs.train.settings import TrainSettings
from jobs.train.stage import run as train
from pipeline.api import load_model as api_load_model
from tests.jobs.register.conftest import register
from tests.support.runs import predictions_of, seal_run
from tests.support.synthetic_split import write_split

META = "registry/{name}/{version}/configs/metadata.json"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store holding run ``r1``: the small CNN trained by the train stage on a tiny synthetic split."""
    tmp = tmp_path_factory.mktemp("int8")
    store = open_store(str(tmp / "store"))
    write_split(store, "tiny", counts={"train": 48, "val": 24, "test": 8})
    settings = TrainSettings(
        dataset="tiny", run_id="r1", model="small-cnn", epochs=6, lr=0.01, augment=False, image_size=32,
        batch_size=8, device="cpu", workers=0, cache_dir=str(tmp / "cache"),
        common=CommonSettings(store=store.uri, log_format="text"),
    )  # fmt: skip
    train(settings)
    return store


def _meta(store: Store, name: str, version: int = 1) -> dict:
    return json.loads(store.get_bytes(META.format(name=name, version=version)))


def _files(store: Store, name: str, version: int = 1) -> set[str]:
    return set(model_registry.show(store, name, version)["files"])


@pytest.mark.slow
def test_int8_model_is_smaller_agrees_with_fp32_and_is_recorded(trained):
    # WHEN the trained run is registered with --quantize int8
    assert register(trained, "--run", "r1", "--model-name", "q", "--quantize", "int8", "--metric", "val_accuracy") == 0
    # THEN the int8 file is in the sealed bundle, beside model.onnx, and recorded as kept
    assert {MODEL_ONNX, MODEL_INT8} <= _files(trained, "q")
    meta = _meta(trained, "q")
    q = meta["irmsia"]["quantization"]
    assert q["kept"] is True and q["file"] == MODEL_INT8
    assert meta["irmsia"]["model_files"][MODEL_INT8] == model_registry.show(trained, "q")["files"][MODEL_INT8]["sha256"]
    # its size is what the sealed files say, and int8 weights make it well under half of fp32
    files = model_registry.show(trained, "q")["files"]
    assert q["size_bytes"] == {"fp32": files[MODEL_ONNX]["size"], "int8": files[MODEL_INT8]["size"]}
    assert q["size_ratio"] < 0.5
    # fp32 ONNX on val reproduces the run's own val accuracy (same items, same preprocessing; the train cache keeps
    # float16 inputs, so one image may flip), and int8 agrees with fp32 on nearly every image
    val = q["val"]
    run_metrics = json.loads(trained.get_bytes("runs/r1/metrics.json"))
    assert val["images"] == 24
    assert abs(val["fp32"]["accuracy"] - run_metrics["val_accuracy"]) <= 1 / 24 + 1e-9
    assert val["fp32"]["accuracy"] >= 0.75, "the trained model must be worth quantizing for this test to mean much"
    assert val["top1_agreement"] >= 0.9
    assert val["drop"] <= q["max_drop"] == 0.02
    assert q["latency_ms"]["fp32"] > 0 and q["latency_ms"]["int8"] > 0
    # the card and irmsia registry show carry the same numbers
    card = trained.get_bytes("registry/q/1/docs/README.md").decode()
    assert "## INT8 model" in card and f"kept as `{MODEL_INT8}`" in card
    assert str(q["size_bytes"]["int8"]) in card and f"{q['latency_ms']['int8']:.4f}" in card
    assert f"top-1 agreement {val['top1_agreement']:.4f}" in card
    assert model_registry.show(trained, "q")["quantization"] == q
    # the int8 file is hash-checked by verify and serves predictions that agree with the fp32 module
    assert verify_registry(trained, "q").ok
    fp32, prep = load_model(trained, "q", 1)
    int8, _ = load_model(trained, "q", 1, precision="int8")
    keys = [o.key for o in trained.list("raw/tiny/") if o.key.endswith((".dcm", ".png"))][:16]
    x = torch.from_numpy(np.stack([prep(trained.get_bytes(k), k) for k in keys]))
    with torch.no_grad():
        agree = (fp32(x).argmax(1) == int8(x).argmax(1)).float().mean().item()
    assert agree >= 0.9
    # the Python API passes the precision through
    assert isinstance(api_load_model("q", 1, store=trained, precision="int8").module(x[:1]), torch.Tensor)
    # a rerun is the same version (the ledger's cache), still intact
    assert register(trained, "--run", "r1", "--model-name", "q", "--quantize", "int8", "--metric", "val_accuracy") == 0
    assert [v.version for v in model_registry.list_versions(trained, "q")] == [1]
    assert _meta(trained, "q") == meta and verify_registry(trained, "q").ok


@pytest.mark.slow
def test_int8_that_scores_worse_than_the_tolerance_is_dropped_with_its_reason(trained, monkeypatch):
    # GIVEN a calibration that fits the activation ranges to images 1000 times too bright: every real activation
    # falls into the lowest int8 step, so the int8 model answers the same for every image
    monkeypatch.setattr(quantize, "calibration_images", lambda images: images[:8] * 1000.0)
    # WHEN the run is registered with --quantize int8
    assert register(trained, "--run", "r1", "--model-name", "bad", "--quantize", "int8") == 0
    # THEN the fp32 version is registered, the int8 file is not, and the card and metadata say why
    q = _meta(trained, "bad")["irmsia"]["quantization"]
    assert q["kept"] is False and q["file"] is None
    assert q["val"]["drop"] > 0.02 and "more than --quantize-max-drop" in q["reason"]
    assert MODEL_INT8 not in _files(trained, "bad") and MODEL_ONNX in _files(trained, "bad")
    assert MODEL_INT8 not in _meta(trained, "bad")["irmsia"]["model_files"]
    assert "not kept: the bundle serves fp32 only" in trained.get_bytes("registry/bad/1/docs/README.md").decode()
    assert verify_registry(trained, "bad").ok
    with pytest.raises(DataError, match="has no int8 model"):
        load_model(trained, "bad", 1, precision="int8")


def test_a_run_whose_val_images_cannot_be_read_registers_fp32_with_the_reason(store, upstream):
    # GIVEN a run whose predictions.json names val images that are not in the store
    seal_run(store, "r", upstream=upstream, predictions=predictions_of(1.0, n=4))
    # WHEN it is registered with --quantize int8
    assert register(store, "--run", "r", "--model-name", "m", "--quantize", "int8") == 0
    # THEN the version is registered without an int8 file, and the metadata names the unreadable item
    q = _meta(store, "m")["irmsia"]["quantization"]
    assert q["kept"] is False and "val item raw/demo/val/0000.dcm cannot be read" in q["reason"]
    assert MODEL_INT8 not in _files(store, "m")
    assert verify_registry(store, "m").ok


def test_a_task_the_int8_check_cannot_score_is_recorded_as_not_supported(store, upstream):
    seal_run(store, "seg", upstream=upstream, config={"task": "segmentation"}, metrics={"val_dice": 0.7})
    assert register(store, "--run", "seg", "--model-name", "m", "--quantize", "int8") == 0
    q = _meta(store, "m")["irmsia"]["quantization"]
    assert q["kept"] is False and q["reason"].startswith("not supported for task segmentation")
    assert "not supported for task segmentation" in store.get_bytes("registry/m/1/docs/README.md").decode()


def test_without_predictions_there_is_nothing_to_check_int8_on(store, run_id):
    assert register(store, "--run", run_id, "--model-name", "m", "--quantize", "int8") == 0
    q = _meta(store, "m")["irmsia"]["quantization"]
    assert q["kept"] is False and "no predictions.json" in q["reason"]


def test_without_quantize_nothing_is_recorded(store, run_id):
    assert register(store, "--run", run_id, "--model-name", "m") == 0
    assert "quantization" not in _meta(store, "m")["irmsia"]
    assert model_registry.show(store, "m")["quantization"] is None


@pytest.mark.parametrize("args", [["--quantize", "int4"], ["--quantize-max-drop", "-1"], ["--quantize-max-drop", "2"]])
def test_bad_quantize_options_are_usage_errors(store, run_id, args):
    assert register(store, "--run", run_id, "--model-name", "m", *args) == 2
    assert not list(store.list("registry/"))


def test_asking_int8_of_a_run_registered_without_it_is_the_cache_hit_and_says_how_to_get_it(store, run_id, capsys):
    assert register(store, "--run", run_id, "--model-name", "m") == 0
    assert register(store, "--run", run_id, "--model-name", "m", "--quantize", "int8") == 0
    assert [v.version for v in model_registry.list_versions(store, "m")] == [1]
    assert "registered with --quantize none, not int8; pass --force" in capsys.readouterr().err
