"""One stage as an Argo container template: its image and console script, arguments from workflow parameters."""

from __future__ import annotations

from hera.workflows import Container
from hera.workflows.models import Outputs, Parameter, ValueFrom

from pipeline.argo.environment import stage_environment
from pipeline.argo.metrics import template_metrics
from pipeline.argo.resources import stage_resources
from pipeline.argo.retry import transient_retry
from pipeline.argo.scheduling import node_selector, tolerations
from pipeline.argo.security import container_security_context
from pipeline.argo.volumes import RESULT_FILE, stage_volumes
from pipeline.config import DeploymentConfig
from pipeline.dag import PLACEHOLDER, StageSpec

RESULT_OUTPUT = "result"
"""Output parameter holding the stage's result JSON (prefix, cached, content_sha256, summary)."""
RESULT_DEFAULT = "{}"
"""The output's value when the stage wrote no result file (it failed): Argo's metrics and the executor then have
a value instead of a missing parameter (a missing one is a MetricsError and a failed wait container)."""


def workflow_argument(template: str) -> str:
    """``--run-id {run_id}`` style templates in Argo form: ``{run_id}`` -> ``{{workflow.parameters.run_id}}``."""
    return PLACEHOLDER.sub(lambda m: "{{workflow.parameters." + m.group(1) + "}}", template)


def stage_container(stage: StageSpec, config: DeploymentConfig) -> Container:
    """The container template of ``stage``: must be created inside a Hera workflow context."""
    volumes, mounts = stage_volumes(stage, config)
    return Container(
        name=stage.name,
        image=config.images.build(stage.entrypoint),
        image_pull_policy=config.images.pull_policy,
        command=[stage.entrypoint],
        args=[workflow_argument(t) for t in stage.args],
        env=stage_environment(stage, config),
        resources=stage_resources(stage, config),
        security_context=container_security_context(),
        volumes=volumes,
        volume_mounts=mounts,
        node_selector=node_selector(stage, config),
        tolerations=tolerations(stage, config),
        active_deadline_seconds=config.stage_resources(stage.name).active_deadline_seconds,
        retry_strategy=transient_retry(config.retry),
        labels={"app.kubernetes.io/component": stage.name},
        outputs=Outputs(
            parameters=[Parameter(name=RESULT_OUTPUT, value_from=ValueFrom(path=RESULT_FILE, default=RESULT_DEFAULT))]
        ),
        metrics=template_metrics(stage, RESULT_OUTPUT),
    )
