"""Pipeline specs (``pipeline.spec``): each key checked by the option it sets, the DAG's fan-out and join, and the
examples we ship."""

from __future__ import annotations

import logging

import pytest
import yaml

from jobs.collect.sources import SOURCES, options_types
from jobs.core.errors import UsageError
from jobs.core.settings import options_of
from pipeline.cli import main
from pipeline.spec import load_spec, parse_spec, spec_pipeline
from tests.support.argo_schema import REPO_ROOT

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
TWO = {
    "name": "two",
    "datasets": [{"name": "a", "source": "demo", "seed": 1}, {"name": "b", "source": "demo", "seed": 2}],
    "split": {"merge_as": "ab"},
    "register": {"model_name": "ab-classifier"},
}


def _with(path: str, value) -> dict:
    """``TWO`` with the value at ``path`` (``datasets.0.seed``) set, or removed when ``value`` is ``...``."""
    spec = yaml.safe_load(yaml.safe_dump(TWO))
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    key = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return spec


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_load_and_fan_out_per_dataset(path):
    # GIVEN an example spec
    spec = load_spec(path)
    # WHEN it becomes a DAG
    pipeline = spec_pipeline(spec)
    # THEN each dataset has its own collect and index, independent of the others, joined at the merged split
    names = [d.name for d in spec.datasets]
    assert len(names) >= 2
    for name in names:
        assert pipeline.stage(f"collect-{name}").depends == ()
        assert pipeline.stage(f"index-{name}").depends == (f"collect-{name}",)
        assert pipeline.stage(f"collect-{name}").stage == "collect"
    assert set(pipeline.stage("split").depends) == {f"index-{n}" for n in names}
    split_args = list(pipeline.stage("split").args)
    assert split_args[split_args.index("--merge") + 1] == ",".join(sorted(names))
    assert [s.name for s in pipeline.order()][-5:] == ["split", "train", "train-fold", "train-cv", "register"]


def test_the_offline_example_merges_two_demo_datasets_with_different_seeds():
    spec = load_spec(REPO_ROOT / "examples/demo-merged.yaml")
    assert {d.source for d in spec.datasets} == {"demo"}
    assert len({d.collect.values["seed"] for d in spec.datasets}) == 2


def test_the_real_example_has_pneumonia_covid_radiography_and_a_tcia_collection():
    spec = load_spec(REPO_ROOT / "examples/thoracic.yaml")
    refs = {d.collect.values.get("ref") or d.collect.values.get("collection") for d in spec.datasets}
    assert "paultimothymooney/chest-xray-pneumonia" in refs
    assert "tawsifurrahman/covid19-radiography-database" in refs
    assert "tcia" in {d.source for d in spec.datasets}


def test_stage_arguments_are_the_spec_values_as_flags():
    pipeline = spec_pipeline(parse_spec(_with("train", {"epochs": 3, "image-size": 32, "lr": 0.01})))
    assert pipeline.stage("collect-a").args == ("--source", "demo", "--dataset", "a", "--seed", "1")
    train = list(pipeline.stage("train").args)
    assert train[:8] == ["--dataset", "ab", "--epochs", "3", "--image-size", "32", "--lr", "0.01"]
    assert train[-4:] == ["--run-id", "{run_id}", "--resume", "auto"]
    assert pipeline.stage("register").args[:2] == ("--run", "{run_id}")
    assert pipeline.handed_on(pipeline.stage("register")) == {"run_id": "train", "cv_id": "train-cv"}


def test_one_dataset_needs_no_merge():
    spec = parse_spec({"name": "one", "datasets": [{"name": "a", "source": "demo"}],
                       "register": {"model_name": "m"}})  # fmt: skip
    assert spec_pipeline(spec).stage("split").args == ("--dataset", "a")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (_with("trian", {}), r"spec: unknown keys \['trian'\]"),
        (_with("datasets.0.modality", "CT"), r"spec\.datasets\[0\]\.modality: unknown key"),
        (_with("datasets.1.seed", "x"), r"spec\.datasets\[1\]\.seed: --seed 'x': expected a whole number"),
        (_with("datasets.1.patients", 1), r"spec\.datasets\[1\]\.patients: --patients 1: must be between"),
        (_with("datasets.0.source", "ftp"), r"spec\.datasets\[0\]\.source 'ftp': use one of"),
        (_with("datasets.0.name", "B"), r"spec\.datasets\[0\]\.name 'B' is not a valid name"),
        (_with("datasets.1.name", "a"), r"spec\.datasets: \['a'\] named more than once"),
        (_with("datasets.0.name", ...), r"spec\.datasets\[0\]\.name: required"),
        (_with("datasets.0.index", {"layout": "nope"}), r"spec\.datasets\[0\]\.index\.layout: --layout 'nope'"),
        (_with("datasets.0.dataset", "x"), r"spec\.datasets\[0\]\.dataset: unknown key"),
        (_with("split.merge_as", ...), r"spec\.split\.merge_as: required with several datasets"),
        (_with("split.merge_as", "a"), r"spec\.split\.merge_as 'a': a dataset has that name"),
        (_with("split.ratios", [0.5, 0.5, 0.5]), r"spec\.split\.ratios: --ratios"),
        (_with("split.seed", -1), r"spec\.split\.seed: --seed -1: use at least 0"),
        (_with("train.epochs", 0), r"spec\.train\.epochs: --epochs 0: must be greater than 0"),
        (_with("train.dataset", "x"), r"spec\.train\.dataset: unknown key"),
        (_with("index.shard", "plan"), r"spec\.index\.shard: unknown key"),
        (_with("register.model_name", ...), r"spec\.register: --model-name is required"),
        (_with("name", "Thoracic"), r"spec\.name 'irmsia-Thoracic' is not a DNS-1123 label"),
        (_with("datasets", []), r"spec\.datasets: required, a list"),
        (_with("sharded", "yes"), r"spec\.sharded: expected true or false"),
    ],
)  # fmt: skip
def test_a_bad_key_or_value_is_a_usage_error_naming_its_path(spec, match):
    with pytest.raises(UsageError, match=match):
        parse_spec(spec)


@pytest.mark.parametrize("source", SOURCES)
def test_each_source_accepts_its_own_options_and_no_other_sources(source):
    # GIVEN the options each source declares (its own option group), and one that only another source has
    own = {o.name for o in options_of(options_types()[source])}
    foreign = next(o.name for s, g in options_types().items() if s != source for o in options_of(g)
                   if o.flag and o.name not in own)  # fmt: skip
    # WHEN a dataset of this source sets the foreign one
    spec = _with("datasets.0", {"name": "a", "source": source, foreign: "x"})
    # THEN it is rejected naming the key, and the valid keys listed are the source's own flags
    with pytest.raises(UsageError, match=rf"spec\.datasets\[0\]\.{foreign}: unknown key; valid keys: ") as raised:
        parse_spec(spec)
    listed = set(str(raised.value).split("valid keys: ")[1].split(", "))
    assert {o.name for o in options_of(options_types()[source]) if o.flag} <= listed


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("https://user:secret@example.org/x.zip", "holds credentials"),
        ("https://example.org/x.zip?token=abc", "holds credentials"),
        ("https://example.org/{run_id}.zip", "braces are not allowed"),
    ],
)
def test_a_value_that_would_leak_or_change_once_rendered_is_refused(value, match):
    spec = _with("datasets.0", {"name": "a", "source": "url", "url": value})
    with pytest.raises(UsageError, match=rf"spec\.datasets\[0\]\.url.*{match}"):
        parse_spec(spec)


def test_credentials_come_from_the_environment_not_the_spec(monkeypatch):
    # GIVEN no Kaggle credentials anywhere
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", "/nonexistent")
    # THEN a Kaggle dataset in a spec still checks (the stage reads them where it runs)
    spec = _with("datasets.0", {"name": "a", "source": "kaggle", "ref": "owner/slug"})
    assert spec_pipeline(parse_spec(spec)).stage("collect-a").args[-2:] == ("--ref", "owner/slug")


@pytest.mark.parametrize("command", ["run", "render"])
def test_the_cli_exits_2_naming_the_file_and_key(command, tmp_path, capsys, caplog):
    # GIVEN a spec file with a bad value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with("train.epochs", 0)), encoding="utf-8")
    # WHEN it is run or rendered
    with caplog.at_level(logging.DEBUG):
        code = main([command, "--spec", str(path), "--store", str(tmp_path / "store")])
    # THEN exit 2, with the file and key path in the one-line error, and nothing was written
    assert code == 2
    assert f"{path}.train.epochs: --epochs 0" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_run_spec_refuses_parameter_flags(tmp_path, capsys):
    code = main(["run", "--spec", str(REPO_ROOT / "examples/demo-merged.yaml"), "--epochs", "3",
                 "--store", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "--epochs do not apply to a spec" in capsys.readouterr().err
