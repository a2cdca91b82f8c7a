"""stage_main maps the contract's errors to exit codes, prints one line, and hands results to the runner."""

from __future__ import annotations

import json

import pytest

from jobs.core.entrypoint import stage_main
from jobs.core.errors import DataError, TransientError, UsageError
from jobs.core.manifest import StageWriter
from jobs.core.settings import CommonSettings
from jobs.core.stage import StageResult
from jobs.core.store import open_store
from tests.support.stages import CallableStage, DatasetSettings


def _parse(argv, env):
    if argv and argv[0] == "--bad":
        raise UsageError("--bad is not a flag; use --good")
    return DatasetSettings(common=CommonSettings(log_format="text"))


def stage_main_of(name, argv, parse, run):
    return stage_main(CallableStage(name, parse, run), argv)


@pytest.mark.parametrize(
    ("error", "code"),
    [(UsageError("--ratios '1,2': fix it"), 2), (DataError("raw/x.dcm: truncated"), 3),
     (TransientError("s3 down"), 75), (RuntimeError("bug"), 1), (KeyboardInterrupt(), 130)],
)  # fmt: skip
def test_errors_become_exit_codes_and_one_line(error, code, capsys):
    # GIVEN a stage whose run raises
    def run(settings):
        raise error

    # WHEN main runs it
    rc = stage_main_of("index", [], _parse, run)
    # THEN the exit code follows the contract and stderr ends with one error line naming the stage
    assert rc == code
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("irmsia-index: error: ")


def test_usage_error_in_settings_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
    assert stage_main_of("split", ["--bad"], _parse, lambda s: None) == 2
    assert "irmsia-split: error: --bad is not a flag; use --good" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env_format", "json_line"),
    [
        (["--log-format", "json"], "text", True),
        (["--log-format=text"], "json", False),
        (["--log-format", "json", "--log-format", "text"], "json", False),  # the last one wins, as in argparse
        (["--log-format", "yaml"], "json", True),  # not a format: the environment decides
    ],
)
def test_usage_error_in_settings_honours_log_format_flag(argv, env_format, json_line, capsys, monkeypatch):
    # GIVEN settings that fail to parse, with --log-format on the command line and another in the environment
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", env_format)

    def parse(argv, env):
        raise UsageError("--ratios '1': expected 3 numbers")

    # WHEN the stage starts THEN exit 2, and the one error line is in the format the flag asked for
    assert stage_main_of("split", argv, parse, lambda s: None) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    if json_line:
        assert json.loads(last)["msg"] == "--ratios '1': expected 3 numbers"
    else:
        assert last == "irmsia-split: error: --ratios '1': expected 3 numbers"


def test_json_log_format_reports_errors_as_json(monkeypatch, capsys):
    def parse(argv, env):
        return DatasetSettings(common=CommonSettings(log_format="json"))

    def run(settings):
        raise DataError("index/x: empty")

    assert stage_main_of("split", [], parse, run) == 3
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["level"] == "error" and line["msg"] == "index/x: empty"
    assert line["stage"] == "split" and line["dataset"] == "d"


def test_result_file_receives_manifest_summary(tmp_path, monkeypatch):
    # GIVEN a stage that seals one output
    store = open_store(str(tmp_path / "store"))
    result_file = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result_file))

    def run(settings):
        writer = StageWriter(store, "index", "index/d/", {"p": 1}, {})
        writer.put_bytes("a.txt", b"a")
        return StageResult(writer.commit(summary={"rows": 1}), False)

    # WHEN it succeeds
    assert stage_main_of("index", [], _parse, run) == 0
    # THEN the orchestrator gets the prefix, cache flag and summary
    result = json.loads(result_file.read_text())
    assert result["prefix"] == "index/d/" and result["cached"] is False and result["summary"] == {"rows": 1}
    assert len(result["content_sha256"]) == 64


def test_result_file_is_written_when_the_stage_fails(tmp_path, monkeypatch):
    # GIVEN a stage that fails on bad data, run where an orchestrator waits for its result file
    result_file = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result_file))

    def run(settings):
        raise DataError("raw/x.dcm: truncated; replace it")

    # WHEN it runs
    assert stage_main_of("index", [], _parse, run) == 3
    # THEN the result file holds the exit code and the one-line error (Argo's output parameter always exists)
    result = json.loads(result_file.read_text())
    assert result["exit_code"] == 3 and result["error_kind"] == "DataError"
    assert result["error"] == "raw/x.dcm: truncated; replace it" and result["stage"] == "index"


def test_result_file_is_written_for_a_usage_error(tmp_path, monkeypatch):
    result_file = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result_file))
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
    assert stage_main_of("split", ["--bad"], _parse, lambda s: None) == 2
    assert json.loads(result_file.read_text())["exit_code"] == 2
