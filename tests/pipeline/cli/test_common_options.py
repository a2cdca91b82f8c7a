"""Common options (``--store``, ``--log-format``) before or after the sub-command, and ``irmsia run`` refusing to
put a real download into the demo's dataset."""

from __future__ import annotations

import pytest

from jobs.core.errors import UsageError
from jobs.core.store import open_store
from jobs.register.__main__ import main as register_main
from pipeline.cli import build_parser, main, resolve_common
from pipeline.dag import PIPELINE
from pipeline.values import resolve_values
from tests.support.runs import seal_dataset, seal_run


@pytest.fixture
def registry_store(tmp_path):
    uri = str(tmp_path / "store")
    store = open_store(uri)
    seal_run(store, "r1", upstream=seal_dataset(store), metrics={"val_auc": 0.9})
    assert register_main(["--run", "r1", "--model-name", "m", "--store", uri, "--log-format", "text"]) == 0
    return uri


@pytest.mark.parametrize(
    "argv",
    [
        ["--store", "{s}", "registry", "list", "m"],
        ["registry", "--store", "{s}", "list", "m"],
        ["registry", "list", "m", "--store", "{s}"],
        ["registry", "list", "--store", "{s}", "m"],
        ["--store", "/elsewhere", "registry", "list", "m", "--store", "{s}"],  # the last one given wins
    ],
    ids=["before-command", "before-action", "after-action", "between", "last-wins"],
)
def test_store_is_accepted_anywhere_on_the_line(registry_store, capsys, argv):
    # WHEN the versions of a model are listed with --store in any place
    code = main([a.replace("{s}", registry_store) for a in argv])
    # THEN the command reads that store
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["1", "champion"]


@pytest.mark.parametrize("command", [["run"], ["status"], ["registry", "list"], ["datasets", "list"], ["menu"]])
def test_every_command_takes_the_common_options_after_itself(command):
    args = resolve_common(build_parser().parse_args([*command, "--store", "/s", "--log-format", "json"]), {})
    assert (args.store, args.log_format) == ("/s", "json")


def test_common_options_fall_back_to_the_environment_then_the_defaults():
    args = build_parser().parse_args(["status"])
    assert resolve_common(args, {"IRMSIA_STORE": "/env", "IRMSIA_LOG_FORMAT": "text"}).store == "/env"
    args = build_parser().parse_args(["status"])
    assert (resolve_common(args, {}).store, args.log_format) == ("./irmsia-data", "auto")


@pytest.mark.parametrize("source", ["kaggle", "tcia", "nih", "url", "local"])
def test_a_non_demo_source_needs_a_dataset_name(source):
    # GIVEN a real source and no --dataset: the default dataset is the demo's
    with pytest.raises(UsageError, match=f"--source {source} needs --dataset NAME"):
        resolve_values(PIPELINE, {"source": source})
    # AND with a name it resolves
    assert resolve_values(PIPELINE, {"source": source, "dataset": "mine"})["dataset"] == "mine"


def test_irmsia_run_refuses_a_kaggle_download_into_the_demo_dataset(tmp_path, capsys):
    code = main(["run", "--source", "kaggle", "--ref", "owner/slug", "--store", str(tmp_path / "s")])
    assert code == 2
    assert "irmsia run: error: --source kaggle needs --dataset NAME" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_the_demo_needs_no_dataset_and_bounds_its_patients():
    assert resolve_values(PIPELINE, {"source": "demo"})["dataset"] == "demo"
    from jobs.collect.settings import CollectSettings

    for bad in ("3", "2001"):
        with pytest.raises(UsageError, match=f"--patients {bad}: must be between 4 and 2000"):
            CollectSettings.parse(["--source", "demo", "--patients", bad], {})
