"""``irmsia status --explain STAGE``: which parameter, input hash or code version makes a stage rerun, checked
against real sealed outputs of the demo's collect, index and split stages."""

from __future__ import annotations

import json

import pytest

from jobs.core.store import open_store
from jobs.register.__main__ import main as register_main
from pipeline.api import DatasetManager
from pipeline.cli import main
from pipeline.dag import PIPELINE
from pipeline.explain import explain, explain_register
from pipeline.values import resolve_values
from tests.support.runs import seal_dataset, seal_run


@pytest.fixture
def sealed(tmp_path):
    """collect (demo, 4 patients), index and split of ``demo``, sealed by the stages themselves."""
    uri = str(tmp_path / "store")
    datasets = DatasetManager(uri)
    datasets.collect("demo", "demo", patients=4)
    datasets.scan_directory("demo")
    datasets.create_train_val_test_split("demo")
    return uri


def _verdicts(found):
    return {e.stage: e.verdict for e in found}


def _values(**given):
    # the demo as it was collected: 4 patients is the collect option the DAG does not pass, so collect differs
    return resolve_values(PIPELINE, {k: str(v) for k, v in given.items()})


def test_nothing_changed_is_a_cache_hit_all_the_way(sealed):
    found = explain("split", _values(), sealed)
    # the DAG collects 48 patients by default; this store has 4: collect reruns, the rest may follow it
    assert _verdicts(found) == {"collect": "rerun", "index": "rerun if upstream output changes",
                                "split": "rerun if upstream output changes"}  # fmt: skip
    assert [str(c) for c in found[0].changes] == ["parameter patients: 4 -> 48"]


@pytest.fixture
def sealed_defaults(tmp_path):
    uri = str(tmp_path / "store")
    datasets = DatasetManager(uri)
    datasets.collect("demo", "demo")
    datasets.scan_directory("demo")
    datasets.create_train_val_test_split("demo")
    return uri


@pytest.mark.slow
def test_the_explanation_names_what_changed(sealed_defaults, monkeypatch):
    uri = sealed_defaults
    # GIVEN the DAG's own defaults were sealed: everything is a cache hit
    assert set(_verdicts(explain("split", _values(), uri)).values()) == {"cache hit"}
    # WHEN a parameter changes, THEN only that stage reruns, naming the parameter and both values
    found = explain("split", _values(seed=7), uri)
    assert _verdicts(found) == {"collect": "cache hit", "index": "cache hit", "split": "rerun"}
    assert [str(c) for c in found[-1].changes] == ["parameter seed: 42 -> 7"]
    # WHEN the code version changes, THEN every stage reruns and says so
    sealed_version = json.loads(open_store(uri).get_bytes("raw/demo/_SUCCESS.json"))["code_version"]
    monkeypatch.setattr("jobs.core.manifest.__version__", "99.0.0")
    found = explain("index", _values(), uri)
    assert {str(c) for e in found for c in e.changes} == {f"code version {sealed_version} -> 99.0.0"}
    monkeypatch.undo()
    # WHEN a sealed output disappears, THEN the stage reruns to restore it
    open_store(uri).delete("splits/demo/train.csv")
    (change,) = explain("split", _values(), uri)[-1].changes
    assert str(change).startswith("1 sealed outputs missing or resized, e.g. splits/demo/train.csv")


@pytest.mark.slow
def test_a_changed_input_is_named_by_its_prefix_and_hashes(sealed):
    # GIVEN the raw dataset was collected again with other contents
    before = json.loads(open_store(sealed).get_bytes("raw/demo/_SUCCESS.json"))["content_sha256"]
    DatasetManager(sealed).collect("demo", "demo", patients=6)
    after = json.loads(open_store(sealed).get_bytes("raw/demo/_SUCCESS.json"))["content_sha256"]
    # WHEN index is explained, THEN its input raw/demo/ is the change, old hash -> new hash
    index = explain("index", _values(), sealed)[-1]
    assert index.verdict == "rerun"
    (change,) = index.changes
    assert (change.kind, change.name, change.before, change.after) == ("input", "raw/demo/", before, after)
    assert str(change) == f"input raw/demo/: {before[:12]}… -> {after[:12]}…"


def test_an_empty_store_says_what_must_run_first(tmp_path):
    found = explain("split", _values(), str(tmp_path / "store"))
    assert _verdicts(found) == {"collect": "rerun", "index": "cannot tell", "split": "cannot tell"}
    assert str(found[0].changes[0]).startswith("no sealed output at raw/demo/")
    assert "run irmsia-collect first" in str(found[1].changes[0]) and "(collect must run first)" in str(
        found[1].changes[0]
    )


def test_force_reruns_everything(sealed):
    assert {e.verdict for e in explain("index", _values(), sealed, force=True)} == {"rerun"}


def test_register_is_a_cache_hit_for_a_run_already_registered(tmp_path):
    uri = str(tmp_path / "store")
    store = open_store(uri)
    seal_run(store, "r1", upstream=seal_dataset(store), metrics={"val_auc": 0.9})
    assert register_main(["--run", "r1", "--model-name", "m", "--store", uri, "--log-format", "text"]) == 0
    settings = PIPELINE.stage("register")
    from jobs.register.settings import RegisterSettings

    registered = RegisterSettings.parse(["--run", "r1", "--model-name", "m"], {})
    assert explain_register(registered, store).verdict == "cache hit"
    other = explain_register(RegisterSettings.parse(["--run", "r1", "--model-name", "other"], {}), store)
    assert other.verdict == "rerun" and "is not registered as other yet" in str(other.changes[0])
    assert settings.name == "register"


def test_the_cli_prints_each_stage_and_its_reasons(sealed, capsys):
    assert main(["status", "--explain", "split", "--store", sealed, "--seed", "7"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "collect (raw/demo/): rerun" and out[1] == "  - parameter patients: 4 -> 48"
    # split's own change is named even though collect runs before it
    assert out[-2:] == ["split (splits/demo/): rerun", "  - parameter seed: 42 -> 7"]
    assert main(["status", "--explain", "split", "--store", sealed, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in data["stages"]] == ["collect", "index", "split"]
    assert data["stages"][0]["changes"][0] == {"kind": "parameter", "name": "patients", "before": 4, "after": 48,
                                               "text": "parameter patients: 4 -> 48"}  # fmt: skip


def test_explaining_register_leaves_out_the_fold_trainings_and_their_aggregate(tmp_path):
    # one cache per fold, known only once split has listed the folds: not explained, and nothing breaks on them
    found = explain("register", _values(), str(tmp_path / "store"))
    assert list(_verdicts(found)) == ["collect", "index", "split", "train", "register"]
