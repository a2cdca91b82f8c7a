"""Settings: flags over the YAML config over defaults; every bad value is a usage error naming it."""

from __future__ import annotations

import pytest

from jobs.core.errors import UsageError
from jobs.train.settings import TrainSettings

ENV: dict[str, str] = {}


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return str(path)


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path):
    # GIVEN a config file setting epochs, model, lr and augment=false (kebab and snake keys both accepted)
    cfg = _write(tmp_path, "model: resnet18\nepochs: 7\nimage-size: 96\nlr: 0.01\naugment: false\n")
    # WHEN the command line also gives --epochs
    s = TrainSettings.parse(["--dataset", "demo", "--config", cfg, "--epochs", "3"], ENV)
    # THEN the flag wins, the file sets the rest, defaults fill the gaps
    assert s.epochs == 3
    assert (s.model, s.image_size, s.lr, s.augment) == ("resnet18", 96, 0.01, False)
    assert s.batch_size == 32
    # AND a boolean flag overrides a boolean from the file
    assert TrainSettings.parse(["--dataset", "demo", "--config", cfg, "--augment"], ENV).augment is True


def test_the_example_config_parses(tmp_path):
    from pathlib import Path

    import jobs.train

    example = Path(jobs.train.__file__).with_name("training_config.example.yaml")
    s = TrainSettings.parse(["--dataset", "demo", "--config", str(example)], ENV)
    assert s.model in ("densenet121", "small-cnn", "resnet18")


def test_empty_flags_mean_unset_and_env_sets_the_cache_dir():
    s = TrainSettings.parse(["--dataset", "demo", "--run-id", "", "--model", ""], {"IRMSIA_CACHE_DIR": "/x/cache"})
    assert s.run_id is None and s.model == "densenet121" and s.cache_dir == "/x/cache"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("epochz: 3\n", "unknown key 'epochz'"),
        ("- just\n- a list\n", "expected a mapping"),
        ("epochs: [unclosed\n", "not valid YAML"),
        ("augment: maybe\n", "augment: 'maybe' is not true or false"),
        ("epochs: many\n", "--epochs 'many': expected a whole number"),
    ],
)
def test_bad_config_files_name_the_key(tmp_path, config, match):
    cfg = _write(tmp_path, config)
    with pytest.raises(UsageError, match=match):
        TrainSettings.parse(["--dataset", "demo", "--config", cfg], ENV)


def test_missing_config_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read it"):
        TrainSettings.parse(["--dataset", "demo", "--config", str(tmp_path / "nope.yaml")], ENV)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([], "--dataset is required"),
        (["--dataset", "Bad Name"], "--dataset 'Bad Name' is not a valid name"),
        (["--dataset", "d", "--model", "vgg99"], "--model 'vgg99' is not a known network; choose one of: densenet121"),
        (["--dataset", "d", "--model", "resnet18", "--image-size", "16"], "--image-size 16 is too small for resnet18"),
        (["--dataset", "d", "--image-size", "4096"], "--image-size 4096: use at most 2048"),
        (["--dataset", "d", "--epochs", "0"], "--epochs 0: must be greater than 0"),
        (["--dataset", "d", "--batch-size", "x"], "--batch-size 'x': expected a whole number"),
        (["--dataset", "d", "--monitor", "f2"], "--monitor 'f2': use one of loss"),
        (["--dataset", "d", "--amp", "maybe"], "--amp 'maybe'"),
        (["--dataset", "d", "--flip-prob", "1.5"], "--flip-prob 1.5: must be between 0.0 and 1.0"),
        (["--dataset", "d", "--percentiles", "5"], "--percentiles '5': expected two numbers"),
        (["--dataset", "d", "--percentiles", "90,10"], "need 0 <= low < high <= 100"),
        (["--dataset", "d", "--max-unreadable", "2"], "--max-unreadable 2.0"),
        (["--dataset", "d", "--no-such-flag"], "unrecognized arguments: --no-such-flag; see irmsia-train --help"),
        (["--dataset", "d", "--epochs"], "argument --epochs: expected one argument; see irmsia-train --help"),
        (
            ["--dataset", "d", "--resume", "maybe"],
            "--resume 'maybe': use --resume \\(required\\), --resume auto or --no-resume",
        ),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(argv, match, capsys):
    with pytest.raises(UsageError, match=match):
        TrainSettings.parse(argv, ENV)


def test_result_params_exclude_what_does_not_change_the_result():
    a = TrainSettings.parse(["--dataset", "d", "--workers", "3", "--cache-dir", "/a", "--resume"], ENV)
    b = TrainSettings.parse(["--dataset", "d", "--run-id", "other"], ENV)
    assert a.result_params() == b.result_params()
    assert TrainSettings.parse(["--dataset", "d", "--lr", "0.1"], ENV).result_params() != b.result_params()


@pytest.mark.parametrize(
    ("argv", "config", "mode"),
    [
        ([], None, "off"),
        (["--resume"], None, "required"),
        (["--resume", "auto"], None, "auto"),
        (["--resume", ""], None, "off"),  # Argo passes every argument; empty means not set
        ([], "resume: true\n", "required"),
        ([], "resume: auto\n", "auto"),
        (["--no-resume"], "resume: auto\n", "off"),
    ],
)
def test_resume_modes(tmp_path, argv, config, mode):
    # GIVEN --resume spelled on the command line and/or in the config file
    extra = ["--config", _write(tmp_path, config)] if config else []
    # WHEN parsed THEN the mode is the flag's, else the file's, else off
    assert TrainSettings.parse(["--dataset", "d", *extra, *argv], ENV).resume == mode
