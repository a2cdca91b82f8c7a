"""docs/troubleshooting.md quotes the stages' real messages: each scenario marked *tested* is triggered here and
its one-line error must match the quoted line (``…`` stands for the parts that vary: paths, hashes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobs.collect.settings import CollectSettings
from jobs.core.errors import IrmsiaError
from jobs.core.store import open_store
from pipeline.api import DatasetManager, TrainingPipeline
from pipeline.cli import main

DOC = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()


def _quoted(prefix: str) -> re.Pattern[str]:
    """The quoted line of the doc that starts with ``prefix``, as a pattern (``…`` matches anything)."""
    lines = [line for line in DOC.splitlines() if line.startswith(prefix)]
    assert lines, f"docs/troubleshooting.md quotes no line starting {prefix!r}"
    parts = [re.escape(p) for p in lines[0].split("…")]
    return re.compile("^" + ".*?".join(parts) + "$")


def _error(call) -> str:
    with pytest.raises(IrmsiaError) as caught:
        call()
    return str(caught.value)


def test_kaggle_not_configured(tmp_path):
    env = {"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(tmp_path)}
    message = _error(lambda: CollectSettings.parse(["--source", "kaggle", "--dataset", "x", "--ref", "a/b"], env))
    assert _quoted("irmsia-collect: error: --source kaggle needs").match(f"irmsia-collect: error: {message}")


def test_a_real_source_needs_a_dataset(tmp_path, capsys):
    assert main(["run", "--source", "kaggle", "--ref", "a/b", "--store", str(tmp_path)]) == 2
    assert _quoted("irmsia run: error: --source kaggle").match(capsys.readouterr().err.strip())


def test_an_earlier_stage_has_not_run(tmp_path):
    store = tmp_path / "irmsia-data"
    message = _error(lambda: TrainingPipeline("demo", str(store), model="small-cnn").train(1))
    assert _quoted("irmsia-train: error: no _SUCCESS.json").match(f"irmsia-train: error: {message}")


def test_a_stored_file_changed_after_it_was_sealed(tmp_path):
    uri = str(tmp_path / "store")
    datasets = DatasetManager(uri)
    datasets.collect("demo", "demo", patients=4)
    datasets.scan_directory("demo")
    open_store(uri).put_bytes("index/demo/index.parquet", b"not the sealed index")
    message = _error(lambda: datasets.create_train_val_test_split("demo"))
    assert _quoted("irmsia-split: error: index/demo/index.parquet").match(f"irmsia-split: error: {message}")


def test_a_value_out_of_bounds():
    message = _error(lambda: CollectSettings.parse(["--source", "demo", "--patients", "1"], {}))
    assert _quoted("irmsia-collect: error: --patients").match(f"irmsia-collect: error: {message}")


def test_a_name_that_is_not_allowed(tmp_path, capsys):
    assert main(["run", "--dataset", "Chest X-Ray", "--store", str(tmp_path)]) == 2
    assert _quoted("irmsia run: error: --dataset").match(capsys.readouterr().err.strip())


def test_no_gpu_where_one_was_asked_for():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    from jobs.train.loop import pick_hardware

    message = _error(lambda: pick_hardware("cuda", "auto"))
    assert _quoted("irmsia-train: error: --device cuda").match(f"irmsia-train: error: {message}")
