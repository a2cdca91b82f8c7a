"""JSON log lines in pods carry stage, dataset, run id and workflow id on every line, and never secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence

import pytest

from jobs.core.entrypoint import stage_main
from jobs.core.errors import TransientError
from jobs.core.logs import redact, set_context
from jobs.core.manifest import StageWriter
from jobs.core.stage import StageResult
from jobs.core.store import open_store
from tests.support.seaweedfs import free_port
from tests.support.stages import CallableStage, DatasetSettings


def parse(argv: Sequence[str], env: Mapping[str, str]) -> DatasetSettings:
    return DatasetSettings.parse(argv, env)


def run(settings: DatasetSettings) -> StageResult:
    log = logging.getLogger("irmsia.train")
    log.info("epoch 1 done")
    set_context(model="densenet121")
    logging.getLogger("irmsia.manifest").warning("secret_key=abc123 must not leak")
    if settings.fail:
        raise TransientError("s3://bucket unreachable; rerun")
    writer = StageWriter(open_store(settings.common.store), "train", f"runs/{settings.run_id}/", {}, {})
    return StageResult(writer.commit(), False)


TRAIN_LIKE = CallableStage("train", parse, run)


@pytest.mark.parametrize("fail", [False, True])
def test_every_json_line_has_the_stage_context(monkeypatch, capsys, fail, tmp_path):
    # GIVEN a stage in a pod (JSON logs) with a workflow id, pushing metrics to a gateway that is down
    monkeypatch.setenv("IRMSIA_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("IRMSIA_WORKFLOW_ID", "irmsia-pipeline-x7k2p")
    monkeypatch.setenv("IRMSIA_PUSHGATEWAY", f"127.0.0.1:{free_port()}")
    argv = ["--log-format", "json", "--dataset", "chest", "--run-id", "r-42"] + (["--fail"] if fail else [])
    # WHEN it runs
    code = stage_main(TRAIN_LIKE, argv)
    # THEN every stderr line is a JSON object carrying stage, dataset, run id and workflow id
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == (75 if fail else 0)
    assert len(lines) >= 3  # the stage's line, the secret-looking one, the metrics warning (+ the error)
    for line in lines:
        assert (line["stage"], line["dataset"], line["run_id"], line["workflow_id"]) == (
            "train",
            "chest",
            "r-42",
            "irmsia-pipeline-x7k2p",
        )
        assert {"ts", "level", "logger", "msg"} <= set(line)
        assert "abc123" not in json.dumps(line)
    assert any(line["msg"] == "epoch 1 done" for line in lines)
    assert any(line.get("model") == "densenet121" for line in lines), "set_context adds fields to later lines"
    assert any("could not push metrics" in line["msg"] and line["level"] == "warning" for line in lines)
    if fail:
        assert lines[-1]["level"] == "error" and "unreachable" in lines[-1]["msg"]


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        # credentials in URLs: user and password, a bare token, a secret query value
        ("fetch http://user:hunter2@h/x.zip", "fetch http://h/x.zip"),
        ("fetch https://ghp_T0KEN@h/x.zip: 503", "fetch https://h/x.zip: 503"),
        ("GET https://h/x?X-Amz-Signature=abc", "GET https://h/x?X-Amz-Signature=***"),
        # secret-named fields
        ("KAGGLE_KEY=abc123 and password: hunter2", "KAGGLE_KEY=*** and password: ***"),
        ('{"aws_secret_access_key": "abc123"}', '{"aws_secret_access_key": "***"}'),
        # what only looks like one stays as written
        ("-p 'bad': use key=value, e.g. -p epochs=5", "-p 'bad': use key=value, e.g. -p epochs=5"),
        ("invalid store key 'raw/x': use a relative path", "invalid store key 'raw/x': use a relative path"),
    ],
)
def test_redact(text, redacted):
    assert redact(text) == redacted
