"""The settings every stage shares: the argument parser's one-line usage errors and the common flags."""

from __future__ import annotations

import pytest

from jobs.core.errors import UsageError
from jobs.core.settings import StageArgumentParser, add_common_arguments, common_settings, float_flag, int_flag


def _parser() -> StageArgumentParser:
    parser = StageArgumentParser(prog="irmsia-demo")
    parser.add_argument("--dataset", required=True)
    add_common_arguments(parser)
    return parser


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--dataset", "d", "--nope"], r"unrecognized arguments: --nope; see irmsia-demo --help$"),
        ([], r"required: --dataset; see irmsia-demo --help$"),
        (
            ["--dataset", "d", "--log-format", "yaml"],
            r"--log-format: invalid choice: 'yaml'.*; see irmsia-demo --help$",
        ),
    ],
)
def test_bad_flags_raise_usage_error_naming_the_flag(argv, match):
    # GIVEN a stage parser WHEN it reads bad flags THEN a UsageError (exit 2) names the flag and points to --help
    with pytest.raises(UsageError, match=match):
        _parser().parse_args(argv)


def test_flags_win_over_environment():
    # GIVEN both a flag and the environment WHEN common settings are built THEN the flag wins
    args = _parser().parse_args(["--dataset", "d", "--store", "/s", "--log-format", "json"])
    common = common_settings(args, {"IRMSIA_STORE": "/env", "IRMSIA_LOG_FORMAT": "text", "IRMSIA_WORKFLOW_ID": "wf"})
    assert (common.store, common.log_format, common.workflow_id) == ("/s", "json", "wf")


@pytest.mark.parametrize(
    ("parse", "value", "expected"),
    [(int_flag, " 7 ", 7), (int_flag, "", 3), (float_flag, "0.5", 0.5), (float_flag, " ", 3.0)],
)
def test_number_flags_parse_or_fall_back_to_the_default(parse, value, expected):
    assert parse(value, "--n", 3) == expected


@pytest.mark.parametrize(
    ("parse", "message"), [(int_flag, "expected a whole number"), (float_flag, "expected a number")]
)
def test_bad_number_flags_name_the_flag(parse, message):
    with pytest.raises(UsageError, match=rf"--n 'soon': {message}"):
        parse("soon", "--n", 3)
