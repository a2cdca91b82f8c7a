"""``irmsia submit`` and ``irmsia templates apply`` against a local Argo Server speaking its REST API."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pytest

from pipeline.argo.workflow import build_workflow
from pipeline.cli import main
from tests.support.argo_schema import REPO_ROOT
from tests.support.argo_server import LocalArgoServer

CONFIG = str(REPO_ROOT / "irmsia.yaml")


@pytest.fixture
def token() -> str:
    return "tok-" + secrets.token_hex(16)


@pytest.fixture
def argo(token: str) -> Iterator[LocalArgoServer]:
    server = LocalArgoServer(token)
    try:
        yield server
    finally:
        server.stop()


def _run(argv: list[str], capsys, caplog) -> tuple[int, str]:
    with caplog.at_level(logging.DEBUG):
        code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err + caplog.text


def test_submit_posts_the_expected_workflow_with_bearer_token(argo, token, monkeypatch, capsys, caplog):
    # GIVEN the token in ARGO_TOKEN (not on the command line)
    monkeypatch.setenv("ARGO_TOKEN", token)
    # WHEN a run is submitted with two parameters
    argv = ["submit", "--argo-server", argo.url, "--config", CONFIG, "-p", "dataset=chest", "-p", "epochs=5"]
    code, output = _run(argv, capsys, caplog)
    # THEN the server got exactly the Workflow built from the template, authenticated as Bearer
    assert code == 0
    (request,) = argo.state.requests
    assert (request.method, request.path) == ("POST", "/api/v1/workflows/irmsia")
    assert request.headers["Authorization"] == f"Bearer {token}"
    expected = build_workflow("irmsia", {"dataset": "chest", "epochs": "5"}).build()
    assert request.body == {"namespace": "irmsia", "workflow": expected.model_dump(by_alias=True, exclude_none=True)}
    assert request.body["workflow"]["spec"]["workflowTemplateRef"] == {"name": "irmsia-pipeline"}
    # AND the created name is printed, and the token is nowhere in the output or logs
    assert "irmsia-pipeline-00001" in output
    assert token not in output


def test_submit_wait_follows_the_run_to_its_final_phase(argo, token, capsys, caplog, monkeypatch):
    monkeypatch.setattr("pipeline.argo.submit.time.sleep", lambda s: None)
    argo.state.phases = ["Pending", "Running", "Failed"]
    argv = ["submit", "--argo-server", argo.url, "--token", token, "--namespace", "team", "--config", CONFIG, "--wait"]
    code, output = _run(argv, capsys, caplog)
    assert code == 1
    assert "team/irmsia-pipeline-00001: Failed" in output
    assert [r.method for r in argo.state.requests] == ["POST", "GET", "GET", "GET"]
    assert token not in output


def test_rejected_token_is_reported_without_the_token(argo, capsys, caplog):
    bad = "bad-" + secrets.token_hex(16)
    code, output = _run(["submit", "--argo-server", argo.url, "--token", bad, "--config", CONFIG], capsys, caplog)
    assert code == 1
    assert "401" in output and "token not valid" in output
    assert bad not in output


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["-p", "epochs"], "use key=value"),
        (["-p", "epoch=5"], "-p epoch: not a workflow parameter"),
        (["--argo-server", "localhost:2746"], "use an http:// or https:// URL"),
    ],
)
def test_bad_submit_arguments_exit_2(argv, match, capsys, caplog):
    base = ["submit", "--argo-server", "http://127.0.0.1:9", "--config", CONFIG]
    code, output = _run(base + argv, capsys, caplog)
    assert code == 2
    assert match in output


def test_unreachable_server_is_transient(capsys, caplog, token):
    code, output = _run(
        ["submit", "--argo-server", "http://127.0.0.1:9", "--token", token, "--config", CONFIG], capsys, caplog
    )
    assert code == 75
    assert "cannot reach the Argo Server" in output and token not in output


def test_templates_apply_creates_then_updates(argo, token, monkeypatch, capsys, caplog):
    monkeypatch.setenv("ARGO_TOKEN", token)
    argv = ["templates", "apply", "--argo-server", argo.url, "--config", CONFIG]
    # WHEN applied twice
    first, output1 = _run(argv, capsys, caplog)
    second, output2 = _run(argv, capsys, caplog)
    # THEN the first creates the template and both schedules, the second updates them at their resourceVersion
    assert (first, second) == (0, 0)
    assert "WorkflowTemplate irmsia-pipeline: created" in output1
    assert "CronWorkflow irmsia-nightly-refresh: updated" in output2
    writes = [(r.method, r.path) for r in argo.state.requests if r.method != "GET"]
    assert writes == [
        ("POST", "/api/v1/workflow-templates/irmsia"),
        ("POST", "/api/v1/cron-workflows/irmsia"),
        ("POST", "/api/v1/cron-workflows/irmsia"),
        ("PUT", "/api/v1/workflow-templates/irmsia/irmsia-pipeline"),
        ("PUT", "/api/v1/cron-workflows/irmsia/irmsia-nightly-refresh"),
        ("PUT", "/api/v1/cron-workflows/irmsia/irmsia-weekly-retrain"),
    ]
    stored = argo.state.objects[("workflow-templates", "irmsia", "irmsia-pipeline")]
    assert stored["spec"]["serviceAccountName"] == "irmsia-pipeline"
    assert token not in output1 + output2
