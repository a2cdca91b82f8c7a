"""Register settings: every flag validated once, with the contract's usage error naming the flag."""

from __future__ import annotations

import pytest

from jobs.core.errors import UsageError
from jobs.register.settings import RegisterSettings

BASE = ["--run", "run-1", "--model-name", "demo-classifier"]


def test_defaults_and_environment():
    s = RegisterSettings.parse(
        BASE, {"IRMSIA_STORE": "/tmp/s", "IRMSIA_IMAGE": "ghcr.io/x/register:1", "MLFLOW_TRACKING_URI": ""}
    )
    assert (s.run_id, s.model_name, s.promote, s.metric) == ("run-1", "demo-classifier", "auto", "auto")
    assert s.common.store == "/tmp/s" and s.image == "ghcr.io/x/register:1" and s.mlflow_tracking_uri is None


def test_empty_values_mean_unset():
    s = RegisterSettings.parse([*BASE, "--promote", "", "--metric", "", "--description", ""], {})
    assert (s.promote, s.metric, s.description) == ("auto", "auto", "")


INVALID = [
    (["--model-name", "demo-classifier"], "--run"),
    (["--run", "run-1"], "--model-name"),
    (["--run", "Run 1", "--model-name", "m"], "--run 'Run 1'"),
    (["--run", "r", "--model-name", "my_model"], "DNS-1123"),
    (["--run", "r", "--model-name=-m"], "DNS-1123"),
    (["--run", "r", "--model-name", "m" * 64], "DNS-1123"),
    ([*BASE, "--promote", "maybe"], "--promote 'maybe'"),
    ([*BASE, "--log-format", "xml"], "log-format"),
]


@pytest.mark.parametrize(("argv", "message"), INVALID)
def test_invalid_settings_are_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        RegisterSettings.parse(argv, {})
