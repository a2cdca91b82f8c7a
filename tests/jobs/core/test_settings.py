"""The options system: declared once, it gives the parser, conversion, bounds, environment fallbacks, the
cache-key parameters, the config-file reading and the option reference; every bad value is one usage error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jobs.core.errors import UsageError
from jobs.core.settings import StageSettings, option, option_reference, options_of


@dataclass(frozen=True, kw_only=True)
class DemoSettings(StageSettings):
    prog = "irmsia-demo"

    dataset: str = option(help="dataset name", result=True, parameter="dataset")
    epochs: int = option(10, above=0, maximum=1000, result=True, help="maximum epochs")
    rate: float = option(0.5, minimum=0.0, maximum=1.0, help="a fraction")
    mode: str = option("auto", choices=("auto", "on", "off"), result=True, help="a choice")
    tags: tuple[str, ...] = option((), help="comma-separated tags")
    augment: bool = option(True, result=True, help="a switch")
    limit: int | None = option(None, minimum=1, env="IRMSIA_DEMO_LIMIT", help="optional bound")
    token: str | None = option(None, flag=None, env="IRMSIA_DEMO_TOKEN", secret=True, help="a secret")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--dataset", "d", "--nope"], r"unrecognized arguments: --nope; see irmsia-demo --help$"),
        ([], r"--dataset is required"),
        (["--dataset", "d", "--log-format", "yaml"], r"--log-format 'yaml': use one of auto, text, json"),
        (["--dataset", "d", "--epochs", "0"], r"--epochs 0: must be greater than 0$"),
        (["--dataset", "d", "--epochs", "5000"], r"--epochs 5000: use at most 1000$"),
        (["--dataset", "d", "--epochs", "ten"], r"--epochs 'ten': expected a whole number$"),
        (["--dataset", "d", "--rate", "1.5"], r"--rate 1.5: must be between 0.0 and 1.0$"),
        (["--dataset", "d", "--mode", "maybe"], r"--mode 'maybe': use one of auto, on, off$"),
        (["--dataset", "d", "--augment", "perhaps"], r"--augment: 'perhaps' is not true or false$"),
        (["--dataset", "d", "--limit", "0"], r"--limit 0: use at least 1$"),
    ],
)
def test_bad_flags_raise_usage_error_naming_the_flag(argv, match):
    # GIVEN a stage's settings WHEN they read bad flags THEN a UsageError (exit 2) names the flag and the fix
    with pytest.raises(UsageError, match=match):
        DemoSettings.parse(argv, {})


def test_flags_win_over_environment_and_empty_means_unset():
    # GIVEN a flag and the environment both set, and the empty values Argo passes for unset parameters
    env = {"IRMSIA_STORE": "/env", "IRMSIA_LOG_FORMAT": "text", "IRMSIA_WORKFLOW_ID": "wf", "IRMSIA_DEMO_LIMIT": "7"}
    s = DemoSettings.parse(["--dataset", "d", "--store", "/s", "--log-format", "json", "--epochs", " "], env)
    # THEN the flag wins, the environment fills what no flag gave, an empty flag falls back to the default
    assert (s.common.store, s.common.log_format, s.common.workflow_id) == ("/s", "json", "wf")
    assert (s.epochs, s.limit) == (10, 7)


def test_types_and_switches():
    s = DemoSettings.parse(["--dataset", "d", "--tags", "a, b,", "--no-augment", "--rate", "0.25"], {})
    assert (s.tags, s.augment, s.rate) == (("a", "b"), False, 0.25)
    assert DemoSettings.parse(["--dataset", "d", "--augment"], {}).augment is True
    assert DemoSettings.parse(["--dataset", "d", "--augment=false"], {}).augment is False


def test_direct_construction_is_validated_too():
    with pytest.raises(UsageError, match="--epochs -1: must be greater than 0"):
        DemoSettings(dataset="d", epochs=-1)


def test_result_params_are_the_declared_ones_only():
    a = DemoSettings.parse(["--dataset", "d", "--rate", "0.1", "--limit", "3"], {})
    b = DemoSettings.parse(["--dataset", "d"], {})
    assert a.result_params() == b.result_params() == {"dataset": "d", "epochs": 10, "mode": "auto", "augment": True}


def test_secrets_stay_out_of_repr_and_flags():
    s = DemoSettings.parse(["--dataset", "d"], {"IRMSIA_DEMO_TOKEN": "hunter2"})
    assert s.token == "hunter2" and "hunter2" not in repr(s)
    with pytest.raises(UsageError, match="unrecognized arguments: --token"):
        DemoSettings.parse(["--dataset", "d", "--token", "x"], {})


def test_config_keys_accept_either_spelling_and_refuse_unknown_ones():
    assert DemoSettings.config_keys({"epochs": 3, "rate": 0.2}, "c") == {"epochs": 3, "rate": 0.2}
    with pytest.raises(UsageError, match="c: unknown key 'epochz'"):
        DemoSettings.config_keys({"epochz": 3}, "c")


def test_options_are_read_off_the_dataclass():
    opts = {o.name: o for o in options_of(DemoSettings)}
    assert opts["epochs"].flag == "--epochs" and opts["epochs"].default == 10 and opts["epochs"].result
    assert opts["dataset"].required and opts["dataset"].parameter == "dataset"
    assert opts["token"].flag is None and opts["token"].env == "IRMSIA_DEMO_TOKEN"
    table = option_reference(DemoSettings, "demo")
    assert "| `--epochs` |  | 10 | yes |" in table and "> 0" in table and "hunter2" not in table
