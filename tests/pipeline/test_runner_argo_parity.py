"""The local runner and the Argo template run each stage with the same command and arguments.

Locally a stage runs as ``python -I -m <module> <argv>``; in Argo as ``<console script> <args>`` with
``{{workflow.parameters.x}}`` substituted. Both come from ``pipeline.dag``; this proves nothing diverges.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from pipeline.argo.workflow_template import build_workflow_template
from pipeline.config import DeploymentConfig
from pipeline.dag import PIPELINE
from pipeline.runner import ProcessExecutor
from tests.support.argo_schema import REPO_ROOT

# Distinct, non-default values so that a swapped or missing parameter shows.
VALUES = {p.name: f"v-{p.name}-{i}" for i, p in enumerate(PIPELINE.parameters)}


def _console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["project"]["scripts"]


def _argo_substitute(arg: str, values: dict[str, str]) -> str:
    return re.sub(r"\{\{workflow\.parameters\.([a-z][a-z0-9_]*)\}\}", lambda m: values[m.group(1)], arg)


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
