"""The local runner and the Argo template run each stage with the same command and arguments.

Locally a stage runs as ``python -I -m <module> <argv>``; in Argo as ``<console script> <args>`` with
``{{workflow.parameters.x}}`` substituted. Both come from ``pipeline.dag``; this proves nothing diverges.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from pipeline.argo.workflow_template import build_workflow_template
from pipeline.config import DeploymentConfig
from pipeline.dag import PIPELINE
from pipeline.runner import ProcessExecutor
from tests.support.argo_expressions import replace
from tests.support.argo_schema import REPO_ROOT

# Distinct, non-default values so that a swapped or missing parameter shows.
VALUES = {p.name: f"v-{p.name}-{i}" for i, p in enumerate(PIPELINE.parameters)} | {"shard": "v-shard"}


def _console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["project"]["scripts"]


def _argo_substitute(arg: str, values: dict[str, str]) -> str:
    # a template input is the value an earlier task hands on, which is the workflow parameter when the run gives one
    return re.sub(r"\{\{(?:workflow|inputs)\.parameters\.([a-z][a-z0-9_]*)\}\}", lambda m: values[m.group(1)], arg)


@pytest.mark.parametrize("stage", PIPELINE.stages, ids=lambda s: s.name)
def test_local_and_argo_commands_are_identical(stage):
    # GIVEN the command the local runner builds for the stage
    local = ProcessExecutor(python="python").command(stage, stage.argv(VALUES))
    # AND the container the WorkflowTemplate runs for it
    templates = build_workflow_template(DeploymentConfig()).to_dict()["spec"]["templates"]
    container = next(t for t in templates if t["name"] == stage.name)["container"]
    # WHEN Argo's parameter substitution is applied
    argo_args = [_argo_substitute(a, VALUES) for a in container["args"]]
    # THEN the console script is the module's main, and the arguments are identical
    (script,) = container["command"]
    assert _console_scripts()[script] == f"{stage.module}.__main__:main"
    assert local == ["python", "-I", "-m", stage.module, *argo_args]
    assert "{{" not in " ".join(argo_args)


def test_register_registers_the_run_train_reports_in_argo_as_locally():
    # GIVEN the WorkflowTemplate with the run id left empty (train derives it from its cache key)
    spec = build_workflow_template(DeploymentConfig()).to_dict()["spec"]
    assert next(p for p in spec["arguments"]["parameters"] if p["name"] == "run_id")["value"] == ""
    dag = next(t for t in spec["templates"] if "dag" in t)["dag"]
    argument, _cv = next(t for t in dag["tasks"] if t["name"] == "register")["arguments"]["parameters"]
    # WHEN the controller substitutes the register task's argument after train reported its result
    result = json.dumps({"stage": "train", "summary": {"run_id": "demo-0123456789"}})
    value = replace(argument["value"], {"tasks.train.outputs.parameters.result": result})
    # THEN register's --run is train's run id, as the local runner hands it on
    assert (argument["name"], value) == ("run_id", "demo-0123456789")
    register = next(t for t in spec["templates"] if t["name"] == "register")
    assert register["inputs"]["parameters"] == [{"name": "run_id"}, {"name": "cv_id"}]  # cv_id: train-cv's
    assert register["container"]["args"][:2] == ["--run", "{{inputs.parameters.run_id}}"]
