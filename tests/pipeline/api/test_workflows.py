"""The seed's three workflows, rewritten for ``pipeline.api`` (as ``docs/api.md`` shows them), run on real data
the tests make: a TCIA collection served by the local NBIA server, and the demo dataset.

1. Download a TCIA collection, scan it with a labels CSV, split it.
2. Two datasets: merge them, read their statistics, export the split lists.
3. A whole pipeline from Python, then train once more in a stage process, register, load the model and predict.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest

from jobs.core.errors import DataError, UsageError
from jobs.core.store import open_store
from pipeline.api import (
    DatasetManager,
    DemoCollector,
    IndexResult,
    SplitResult,
    StageFailed,
    TCIACollector,
    TrainingPipeline,
    TrainResult,
    dataset_name_for,
    list_models,
    load_model,
    model_versions,
    run_pipeline,
)
from tests.support.tcia_server import TciaServer

COLLECTION = "COVID-19-AR"


@pytest.fixture
def tcia(monkeypatch) -> Iterator[TciaServer]:
    server = TciaServer()
    for p in range(1, 7):
        server.add_series(COLLECTION, f"COVID-{p:03d}", f"1.2.{p}", f"1.2.{p}.1", "CT", images=3)
        server.add_series(COLLECTION, f"COVID-{p:03d}", f"1.2.{p}", f"1.2.{p}.2", "CR", images=2)
    with server:
        monkeypatch.setenv("IRMSIA_TCIA_URL", server.api_url)
        yield server


def test_workflow_1_tcia_download_scan_and_split(tmp_path, tcia):
    store = str(tmp_path / "store")
    labels = tmp_path / "labels.csv"
    labels.write_text("PatientID,label\n" + "".join(f"COVID-{p:03d},{'covid' if p % 2 else 'normal'}\n"
                                                     for p in range(1, 7)))  # fmt: skip
    # WHEN the collection's CT series of the first 4 patients are downloaded (the seed's call, with a store)
    collected = TCIACollector(store).download_collection(COLLECTION, max_patients=4, modality="CT", retries=2)
    # THEN the dataset is named after the collection and holds 4 patients' CT series, 3 images each
    assert collected.dataset == dataset_name_for(COLLECTION) == "covid-19-ar"
    assert collected.prefix == "raw/covid-19-ar/" and not collected.cached
    assert collected.summary["series"] == 4 and collected.summary["patients"] == 4
    # WHEN it is scanned with the labels CSV and split
    datasets = DatasetManager(store)
    index = datasets.scan_directory("covid-19-ar", labels=labels)
    split = datasets.create_train_val_test_split("covid-19-ar", ratios=(0.5, 0.25, 0.25), seed=1)
    # THEN every CT image is a row labelled by its patient, and the split keeps patients apart
    assert isinstance(index, IndexResult) and index.rows == 12 and index.classes == ["covid", "normal"]
    assert index.index_key == "index/covid-19-ar/index.parquet"
    assert isinstance(split, SplitResult) and sum(split.rows.values()) == 12 and sum(split.patients.values()) == 4
    # AND a second call is a cache hit that downloads nothing
    gets = len(tcia.log)
    again = TCIACollector(store).download_collection(COLLECTION, max_patients=4, modality="CT", retries=2)
    assert again.cached and again.content_sha256 == collected.content_sha256
    assert all("getImage" not in r.path for r in tcia.log[gets:])


def test_workflow_2_merge_statistics_and_export(tmp_path):
    store = str(tmp_path / "store")
    demo = DemoCollector(store)
    datasets = DatasetManager(store)
    # GIVEN two collected and indexed datasets
    for name, seed in (("site-a", 1), ("site-b", 2)):
        assert demo.generate(name, patients=6, seed=seed).files > 6
        datasets.scan_directory(name)
    # WHEN they are merged into one split
    merged = datasets.merge_datasets(["site-a", "site-b"], into="both", seed=3)
    # THEN the split holds every row of both, and its statistics say so per split and class
    rows = sum(datasets.get_dataset_statistics(n).images for n in ("site-a", "site-b"))
    assert merged.dataset == "both" and sum(merged.rows.values()) == rows
    stats = datasets.get_dataset_statistics("site-a")
    assert stats.patients == 6 and set(stats.classes) == {"normal", "nodule"} and stats.quarantined == 3
    assert stats.formats == {"dicom": stats.images}
    # AND the lists export into a folder, byte for byte what the store sealed
    files = datasets.export("both", tmp_path / "export")
    assert sorted(f.name for f in files) == sorted(
        ["train.csv", "val.csv", "test.csv", "train.txt", "val.txt", "test.txt", "datalist.json", "stats.json"]
    )
    exported = list(csv.DictReader(io.StringIO((tmp_path / "export" / "train.csv").read_text())))
    assert len(exported) == merged.rows["train"] and {r["dataset"] for r in exported} == {"site-a", "site-b"}
    assert json.loads((tmp_path / "export" / "stats.json").read_text())["datasets"] == ["site-a", "site-b"]
    # AND the datasets are listed with their sealed stages
    listed = {d.name: sorted(d.sealed) for d in datasets.list_datasets()}
    assert listed == {"both": ["split"], "site-a": ["collect", "index"], "site-b": ["collect", "index"]}


@pytest.mark.slow
def test_workflow_3_pipeline_train_register_and_load(tmp_path):
    store = str(tmp_path / "store")
    # WHEN the whole demo pipeline runs from Python, with quick training settings
    result = run_pipeline(store, profile="demo", model="small-cnn", epochs="1", image_size=32, batch_size=8,
                          model_name="demo-model")  # fmt: skip
    # THEN every stage ran in order and the run was recorded for irmsia status
    # (train-cv: the cross-validation's aggregate, with nothing to aggregate without --folds)
    assert [s.stage for s in result.stages] == ["collect", "index", "split", "train", "train-cv", "register"]
    assert result["register"].summary["version"] == 1
    assert len(list(open_store(store).keys("pipeline-runs/"))) == 1
    # WHEN the same data trains once more in a stage process with another seed, watched by an observer
    seen: list[str] = []

    class Watch:
        def started(self, stage, shown):
            seen.append(f"start {stage.name}")

        def output(self, stage, line):
            seen.append(line)

        def progress(self, stage, event):
            seen.append(f"progress {event['desc']} {event['state']}")

        def finished(self, stage, outcome):
            seen.append(f"end {stage.name} {outcome.exit_code}")

    training = TrainingPipeline("demo", store, mode="process", observer=Watch(), model="small-cnn", image_size=32,
                                batch_size=8, seed=7, device="cpu")  # fmt: skip
    run = training.train(num_epochs=1)
    # THEN it is a typed run with metrics, and the observer saw its epoch's progress and its end
    assert isinstance(run, TrainResult) and run.epochs_run == 1 and 0.0 <= run.metrics["val_accuracy"] <= 1.0
    assert "progress epoch 1/1 end" in seen and seen[-1] == "end train 0"
    # WHEN it is registered, THEN it is version 2; the champion stays the better one by val_auc
    version = training.register("demo-model", promote="never")
    assert version.version == 2 and list_models(store) == ["demo-model"]
    assert [v.version for v in model_versions("demo-model", store)] == [1, 2]
    # AND the champion loads, checked, and predicts a class of the demo for a demo image
    model = load_model("demo-model", "champion", store=store)
    import torch

    image = open_store(store).get_bytes(next(k for k in open_store(store).keys("raw/demo/nodule/")
                                             if not k.split("/")[-1].startswith("broken")))  # fmt: skip
    with torch.no_grad():
        logits = model.module(torch.from_numpy(model.preprocess(image))[None])
    assert model.version == 1 and logits.shape == (1, len(model.classes)) and model.classes == ["nodule", "normal"]
    # AND it carries the operating points chosen on val (uncalibrated: temperature 1)
    assert model.temperature == 1.0 and set(model.operating_points) == {"nodule", "normal"}
    assert "youden" in model.operating_points["nodule"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda s: DemoCollector(s).generate(patients=1), UsageError, "--patients 1: must be between 4 and 2000"),
        (lambda s: DemoCollector(s).generate(colour="red"), UsageError, "collect: unknown option 'colour'"),
        (lambda s: DatasetManager(s).scan_directory("never"), DataError, "run irmsia-collect first"),
        (
            lambda s: DatasetManager(s, mode="process").scan_directory("never"),
            StageFailed,
            r"index failed \(exit 3\): no _SUCCESS.json at .*run irmsia-collect first",
        ),
        (lambda s: DatasetManager(s, mode="thread"), UsageError, "mode 'thread': use one of inprocess, process"),
        (lambda s: run_pipeline(s, source="kaggle"), UsageError, "--source kaggle needs --dataset NAME"),
    ],
    ids=["bound", "unknown-option", "no-input", "no-input-process", "bad-mode", "real-source-without-dataset"],
)
def test_errors_are_the_stages_own(tmp_path, call, error, match):
    with pytest.raises(error, match=match) as caught:
        call(str(tmp_path / "store"))
    if error is StageFailed:
        assert caught.value.exit_code == 3
