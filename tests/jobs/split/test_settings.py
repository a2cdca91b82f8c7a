"""Flags -> validated split settings; every bad flag is a usage error that names it."""

from __future__ import annotations

import pytest

from jobs.core.errors import UsageError
from jobs.split.settings import SplitSettings


def test_defaults_and_empty_strings_mean_unset():
    # GIVEN the arguments Argo passes (every flag, unset ones empty)
    argv = ["--dataset", "demo", "--ratios", "", "--seed", "", "--merge", "", "--split-from", "", "--min-per-class", ""]
    # WHEN parsed
    settings = SplitSettings.parse(argv, {"IRMSIA_STORE": "/tmp/s"})
    # THEN the defaults apply
    assert settings == SplitSettings(common=settings.common, dataset="demo")
    assert settings.ratios == (0.7, 0.15, 0.15) and settings.seed == 42 and settings.split_from == "stratified"
    assert settings.datasets == ("demo",) and settings.common.store == "/tmp/s"


def test_merge_is_sorted_and_replaces_the_input_datasets():
    settings = SplitSettings.parse(["--dataset", "both", "--merge", "b, a", "--ratios", "0.8,0.1,0.1"], {})
    assert settings.datasets == ("a", "b")
    assert settings.ratios == (0.8, 0.1, 0.1)
    assert settings.result_params()["datasets"] == ["a", "b"]


@pytest.mark.parametrize(
    "argv, match",
    [
        ([], "--dataset is required"),
        (["--dataset", ""], "--dataset is required"),
        (["--dataset", "Bad Name"], "--dataset 'Bad Name' is not a valid name"),
        (["--dataset", "d", "--ratios", "0.7,0.2"], "--ratios '0.7,0.2'"),
        (["--dataset", "d", "--ratios", "0.7,0.2,0.2"], "--ratios '0.7,0.2,0.2': expected 3 numbers .* sum to 1"),
        (["--dataset", "d", "--ratios", "a,b,c"], "--ratios 'a,b,c'"),
        (["--dataset", "d", "--ratios", "0,0.5,0.5"], "--ratios .*train fraction must be above 0"),
        (["--dataset", "d", "--seed", "x"], "--seed 'x': expected a whole number"),
        (["--dataset", "d", "--seed", "-1"], "--seed -1"),
        (["--dataset", "d", "--split-from", "random"], "--split-from 'random': use one of stratified, official"),
        (["--dataset", "d", "--min-per-class", "0"], "--min-per-class 0"),
        (["--dataset", "d", "--merge", "a,a"], "--merge 'a,a': a dataset is named twice"),
        (["--dataset", "d", "--merge", "a,B"], "--merge 'B' is not a valid name"),
        (["--dataset", "d", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(argv, match):
    with pytest.raises(UsageError, match=match):
        SplitSettings.parse(argv, {})
