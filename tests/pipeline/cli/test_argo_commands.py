"""``irmsia submit`` and ``irmsia templates apply`` against a local Argo Server speaking its REST API; every request
body is checked against Argo v4.1.2's swagger.json."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pytest

from pipeline.argo.workflow import build_workflow
from pipeline.argo.workflow_template import build_workflow_template
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.profiles import PROFILES
from tests.support.argo_schema import REPO_ROOT
from tests.support.argo_server import LocalArgoServer
from tests.support.argo_swagger import SWAGGER, request_errors

CONFIG = str(REPO_ROOT / "irmsia.yaml")


@pytest.fixture
def token() -> str:
    return "tok-" + secrets.token_hex(16)


@pytest.fixture
def argo(token: str) -> Iterator[LocalArgoServer]:
    """The server with the pipeline's WorkflowTemplate applied in namespaces irmsia and team."""
    server = LocalArgoServer(token)
    template = build_workflow_template(load_config(CONFIG)).build().model_dump(by_alias=True, exclude_none=True)
    for namespace in ("irmsia", "team"):
        server.add("workflow-templates", namespace, template)
    try:
        yield server
        # every body irmsia sent is one the Argo Server's API describes, field for field
        if SWAGGER.exists():
            for request in server.state.requests:
                if request.body is not None:
                    assert request_errors(request.method, request.path, request.body) == [], request.path
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
    del argo.state.objects[("workflow-templates", "irmsia", "irmsia-pipeline")]  # a namespace never applied
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


def test_submit_without_the_template_says_to_apply_it(argo, token, capsys, caplog):
    # GIVEN a namespace where the WorkflowTemplate was never applied
    argv = ["submit", "--argo-server", argo.url, "--token", token, "--namespace", "empty", "--config", CONFIG]
    # WHEN a run is submitted THEN the server's NotFound becomes one line saying what to do
    code, output = _run(argv, capsys, caplog)
    assert code == 1
    assert "WorkflowTemplate irmsia-pipeline not found in namespace empty" in output and "apply it first" in output
    assert "Traceback" not in output


def test_submit_needs_no_configuration_file_with_a_namespace(argo, token, tmp_path, monkeypatch, capsys, caplog):
    # GIVEN a folder without irmsia.yaml
    monkeypatch.chdir(tmp_path)
    # WHEN a run is submitted naming its namespace
    code, output = _run(["submit", "--argo-server", argo.url, "--token", token, "--namespace", "team"], capsys, caplog)
    # THEN it is created there
    assert code == 0, output
    assert [r.path for r in argo.state.requests] == ["/api/v1/workflows/team"]


def test_submit_without_namespace_or_configuration_names_both(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    code, output = _run(["submit", "--argo-server", "http://127.0.0.1:9"], capsys, caplog)
    assert code == 2 and "irmsia.yaml: no such file" in output


@pytest.mark.parametrize(
    ("parameter", "match"),
    [("source=bogus", "-p source=bogus: use one of demo, local, url, tcia, kaggle, nih"),
     ("target=deploy", "-p target=deploy: use one of collect, index, split, train, train-fold, train-cv, register"),
     ("split_from=random", "use one of stratified, official")],
)  # fmt: skip
def test_submit_checks_choices_the_server_does_not(parameter, match, capsys, caplog):
    # Argo's server merges a submitted parameter over the template's without its enum: it would accept these
    code, output = _run(["submit", "--argo-server", "http://127.0.0.1:9", "--config", CONFIG, "-p", parameter],
                        capsys, caplog)  # fmt: skip
    assert code == 2 and match in output


def test_server_rejects_what_argo_rejects(argo, token):
    import requests

    headers = {"Authorization": f"Bearer {token}"}
    template = build_workflow_template(load_config(CONFIG)).build().model_dump(by_alias=True, exclude_none=True)
    template["metadata"]["name"] = "broken"
    template["spec"]["arguments"]["parameters"][0]["value"] = "bogus"  # source, whose enum lacks it
    # WHEN a template with a default outside its enum, and a run of a missing template, are posted
    bad_enum = requests.post(f"{argo.url}/api/v1/workflow-templates/irmsia", json={"template": template},
                             headers=headers, timeout=10)  # fmt: skip
    workflow = build_workflow("irmsia", {}).build().model_dump(by_alias=True, exclude_none=True)
    workflow["spec"]["workflowTemplateRef"]["name"] = "nope"
    missing = requests.post(f"{argo.url}/api/v1/workflows/irmsia", json={"workflow": workflow}, headers=headers,
                            timeout=10)  # fmt: skip
    # THEN each gets Argo's code and message, and nothing is stored
    assert (bad_enum.status_code, bad_enum.json()["code"]) == (400, 3)
    assert (
        bad_enum.json()["message"] == "spec.arguments.source.value should be present in spec.arguments.source.enum list"
    )
    assert (missing.status_code, missing.json()) == (
        404,
        {"code": 5, "message": 'workflowtemplate.argoproj.io "nope" not found'},
    )
    assert ("workflow-templates", "irmsia", "broken") not in argo.state.objects
    argo.state.requests.clear()  # hand-made bodies, not irmsia's


def test_submit_with_a_profile_sends_its_values_and_flags_win(argo, token, monkeypatch, capsys, caplog):
    # GIVEN the demo profile and one -p that overrides it
    monkeypatch.setenv("ARGO_TOKEN", token)
    argv = ["submit", "--argo-server", argo.url, "--config", CONFIG, "--profile", "demo", "-p", "epochs=2"]
    # WHEN submitted
    assert _run(argv, capsys, caplog)[0] == 0
    # THEN the workflow carries the profile's values, with the flag's value where both give one
    (request,) = argo.state.requests
    sent = {p["name"]: p["value"] for p in request.body["workflow"]["spec"]["arguments"]["parameters"]}
    assert sent == {**PROFILES["demo"], "epochs": "2"}


def test_submit_of_a_real_source_needs_a_dataset_name(argo, token, monkeypatch, capsys, caplog):
    # GIVEN a Kaggle run submitted without a dataset (the template's default dataset is the demo's)
    monkeypatch.setenv("ARGO_TOKEN", token)
    argv = ["submit", "--argo-server", argo.url, "--config", CONFIG, "-p", "source=kaggle", "-p", "ref=a/b"]
    # THEN it is refused before anything reaches the server, as irmsia run refuses it
    code, output = _run(argv, capsys, caplog)
    assert code == 2 and "--source kaggle needs --dataset NAME" in output
    assert not argo.state.requests


def test_submit_spec_applies_its_template_then_runs_it(argo, token, monkeypatch, capsys, caplog):
    # GIVEN a pipeline spec and the token in ARGO_TOKEN
    monkeypatch.setenv("ARGO_TOKEN", token)
    spec = str(REPO_ROOT / "examples/demo-merged.yaml")
    argv = ["submit", "--argo-server", argo.url, "--config", CONFIG, "--spec", spec]
    # WHEN it is submitted twice
    first, output1 = _run(argv, capsys, caplog)
    second, output2 = _run([*argv, "-p", "run_id=mine"], capsys, caplog)
    # THEN its template was created, then updated, and each run refers to it (bodies checked against swagger.json)
    assert (first, second) == (0, 0), output1 + output2
    assert "created WorkflowTemplate irmsia/irmsia-demo-merged" in output1
    assert "updated WorkflowTemplate irmsia/irmsia-demo-merged" in output2
    stored = argo.state.objects[("workflow-templates", "irmsia", "irmsia-demo-merged")]
    assert {"collect-demo-a", "collect-demo-b"} <= {t["name"] for t in stored["spec"]["templates"]}
    runs = [r.body["workflow"] for r in argo.state.requests if r.path == "/api/v1/workflows/irmsia"]
    assert [r["spec"]["workflowTemplateRef"] for r in runs] == [{"name": "irmsia-demo-merged"}] * 2
    assert runs[1]["spec"]["arguments"]["parameters"] == [{"name": "run_id", "value": "mine"}]
    # AND a parameter the spec's DAG does not have is refused before anything is sent
    count = len(argo.state.requests)
    code, output = _run([*argv, "-p", "epochs=3"], capsys, caplog)
    assert code == 2 and "-p epochs: not a workflow parameter; use one of run_id, cv_id, target" in output
    assert len(argo.state.requests) == count
