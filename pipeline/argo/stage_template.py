"""One stage as an Argo container template: its image and console script, arguments from workflow parameters."""

from __future__ import annotations

import re
from collections.abc import Collection

from hera.workflows import Container
from hera.workflows.models import ArchiveStrategy, Artifact, Inputs, NoneStrategy, Outputs, Parameter, ValueFrom

from pipeline.argo.environment import stage_environment
from pipeline.argo.metrics import template_metrics
from pipeline.argo.resources import gpu_process_args, stage_resources
from pipeline.argo.retry import transient_retry
from pipeline.argo.scheduling import node_selector, tolerations
from pipeline.argo.security import container_security_context
from pipeline.argo.volumes import RESULT_DIR, RESULT_FILE, stage_volumes
from pipeline.config import DeploymentConfig
from pipeline.dag import PLACEHOLDER, StageSpec

RESULT_OUTPUT = "result"
"""Output parameter holding the stage's result JSON (prefix, cached, content_sha256, summary)."""
RESULT_DEFAULT = "{}"
"""The output's value when the stage wrote no result file (it failed): Argo's metrics and the executor then have
a value instead of a missing parameter (a missing one is a MetricsError and a failed wait container)."""


def workflow_argument(template: str, inputs: Collection[str] = ()) -> str:
    """``--run-id {run_id}`` style templates in Argo form: ``{run_id}`` -> ``{{workflow.parameters.run_id}}``, or
    ``{{inputs.parameters.run_id}}`` for a parameter the template takes as an input (from an earlier task)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return "{{" + ("inputs" if name in inputs else "workflow") + ".parameters." + name + "}}"

    return PLACEHOLDER.sub(one, template)


def handed_on_value(upstream: str, parameter: str) -> str:
    """The DAG task argument that gives a template ``parameter`` from ``upstream``'s result summary."""
    # a '-' in tasks.train-cv would be a minus to Argo's expression language: such a name goes in brackets
    task = f"tasks['{upstream}']" if "-" in upstream else f"tasks.{upstream}"
    return f"{{{{=jsonpath({task}.outputs.parameters.{RESULT_OUTPUT}, '$.summary.{parameter}')}}}}"


def stage_artifact(name: str) -> Artifact:
    """The output artifact of a file the stage leaves beside its result file: stored as is (no tarball, so the
    Argo UI shows an HTML report in the browser), optional (a failed run leaves none)."""
    return Artifact(
        name=name.rsplit(".", 1)[0].replace("_", "-"),
        path=f"{RESULT_DIR}/{name}",
        optional=True,
        archive=ArchiveStrategy(none=NoneStrategy()),
    )


def stage_container(stage: StageSpec, config: DeploymentConfig, inputs: Collection[str] = ()) -> Container:
    """The container template of ``stage``, taking ``inputs`` (parameters an earlier task hands on) as input
    parameters: must be created inside a Hera workflow context."""
    volumes, mounts = stage_volumes(stage, config)
    return Container(
        name=stage.name,
        inputs=Inputs(parameters=[Parameter(name=name) for name in inputs]) if inputs else None,
        image=config.images.for_stage(stage, gpu=config.gpu_pool.enabled),
        image_pull_policy=config.images.pull_policy,
        command=[stage.entrypoint],
        args=[*(workflow_argument(t, inputs) for t in stage.args), *gpu_process_args(stage, config)],
        env=stage_environment(stage, config),
        resources=stage_resources(stage, config),
        security_context=container_security_context(),
        volumes=volumes,
        volume_mounts=mounts,
        node_selector=node_selector(stage, config),
        tolerations=tolerations(stage, config),
        active_deadline_seconds=config.stage_resources(stage.stage).active_deadline_seconds,
        retry_strategy=transient_retry(config.retry),
        labels={"app.kubernetes.io/component": stage.stage},
        outputs=Outputs(
            parameters=[Parameter(name=RESULT_OUTPUT, value_from=ValueFrom(path=RESULT_FILE, default=RESULT_DEFAULT))],
            artifacts=[stage_artifact(name) for name in stage.artifacts] or None,
        ),
        metrics=template_metrics(stage, RESULT_OUTPUT),
    )
