"""The ``irmsia-pipeline`` WorkflowTemplate: the DAG collect -> index -> split -> train -> register.

Each stage is a container template; workflow parameters are the pipeline's parameters (``pipeline.dag``) plus
``target``, the last stage to run, so cron schedules can run a prefix of the DAG (collect + index). A parameter an
earlier stage hands on (train's ``run_id``, derived from its cache key when the run gives none) reaches a later
stage as a task argument read from that stage's ``result`` output, so register registers the run train made, and
the same inputs give the same run (a cache hit) in every submission.
"""

from __future__ import annotations

from dataclasses import replace

from hera.workflows import DAG, Task, WorkflowTemplate
from hera.workflows.models import (
    Arguments,
    ArtifactRepositoryRef,
    Metadata,
    Parameter,
    TTLStrategy,
    VolumeClaimGC,
)

from pipeline.argo.install import executor_pod_spec_patch
from pipeline.argo.labels import ARTIFACT_REPOSITORIES, ARTIFACT_REPOSITORY_KEY, POD_LABELS, object_labels
from pipeline.argo.pytorchjob import JOB_SUFFIX, multi_node, pytorch_job_step
from pipeline.argo.security import pod_security_context
from pipeline.argo.stage_template import RESULT_OUTPUT, handed_on_value, stage_container
from pipeline.argo.volumes import volume_claim_templates
from pipeline.config import DeploymentConfig
from pipeline.dag import PIPELINE, SHARD, SHARDS, Pipeline, StageSpec

ENTRYPOINT = "pipeline"
VOLUME_CLAIM_GC = "OnWorkflowCompletion"
"""The run's PVCs (train's cache) are deleted when it finishes, never between retries of a pod."""
TARGET_PARAMETER = "target"


def planned_shards(plan_task: str, field: str = SHARDS) -> str:
    """``withParam`` of a fan-out task: the JSON list its plan task's result reports (``summary.shards``, split's
    ``summary.folds``; the task name in brackets: a ``-`` in ``tasks.index-plan-x`` would be a minus to Argo's
    expression language). An empty list expands to no pods: Argo marks the task Skipped, which its dependants'
    ``depends`` accept, so a split without folds runs no fold trainings and the rest of the DAG goes on."""
    path = f"'$.summary.{field}'"
    return f"{{{{=toJson(jsonpath(tasks['{plan_task}'].outputs.parameters.{RESULT_OUTPUT}, {path}))}}}}"


def workflow_parameters(pipeline: Pipeline) -> list[Parameter]:
    """The pipeline's parameters with their defaults, descriptions and choices, then ``target``."""
    parameters = [
        Parameter(
            name=p.name,
            value=p.default,
            description=p.description,
            enum=list(p.enum) or None,
        )
        for p in pipeline.parameters
    ]
    stages = [s.name for s in pipeline.order()]
    parameters.append(
        Parameter(
            name=TARGET_PARAMETER,
            value=stages[-1],
            description="last stage to run; the stages it depends on run first",
            enum=stages,
        )
    )
    return parameters


def sealed_report(stage: StageSpec, config: DeploymentConfig) -> StageSpec:
    """The step after a multi-node PyTorchJob: the stage with the same arguments (the job's GPU processes too, so
    the same run) and ``--sealed-only``, on no GPU and no cache: it reports the run the job sealed."""
    extra = ("--sealed-only", stage.gpu_processes_flag, str(config.gpu_pool.gpus))
    return replace(stage, args=(*stage.args, *extra), gpu=False, keeps_cache=False)


def build_workflow_template(config: DeploymentConfig, pipeline: Pipeline = PIPELINE) -> WorkflowTemplate:
    """The WorkflowTemplate for ``config`` (Hera object; ``.build()`` gives the model, ``.to_dict()`` the YAML)."""
    with WorkflowTemplate(
        name=pipeline.name,
        namespace=config.namespace,
        labels=object_labels(pipeline.name),
        entrypoint=ENTRYPOINT,
        arguments=Arguments(parameters=workflow_parameters(pipeline)),
        service_account_name=config.service_account,
        security_context=pod_security_context(config),
        pod_metadata=Metadata(labels=dict(POD_LABELS)),
        active_deadline_seconds=config.workflow.active_deadline_seconds,
        parallelism=config.workflow.parallelism,
        ttl_strategy=TTLStrategy(seconds_after_completion=config.workflow.ttl_seconds_after_finished),
        pod_spec_patch=executor_pod_spec_patch(),
        artifact_repository_ref=ArtifactRepositoryRef(config_map=ARTIFACT_REPOSITORIES, key=ARTIFACT_REPOSITORY_KEY),
        volume_claim_templates=volume_claim_templates(config),
        volume_claim_gc=VolumeClaimGC(strategy=VOLUME_CLAIM_GC) if volume_claim_templates(config) else None,
    ) as template:
        handed = {s.name: pipeline.handed_on(s) for s in pipeline.stages}
        inputs = {s.name: [*handed[s.name], *([SHARD] if s.fan_out else [])] for s in pipeline.stages}
        containers = {
            s.name: stage_container(sealed_report(s, config) if multi_node(s, config) else s, config, inputs[s.name])
            for s in pipeline.stages
        }
        jobs = {s.name: pytorch_job_step(s, config, tuple(inputs[s.name])) for s in pipeline.stages
                if multi_node(s, config)}  # fmt: skip
        with DAG(name=ENTRYPOINT, target="{{workflow.parameters." + TARGET_PARAMETER + "}}"):
            tasks = {}
            for s in pipeline.order():
                arguments = [Parameter(name=p, value=handed_on_value(u, p)) for p, u in handed[s.name].items()]
                if s.fan_out:
                    arguments.append(Parameter(name=SHARD, value="{{item}}"))
                tasks[s.name] = Task(
                    name=s.name,
                    template=containers[s.name],
                    arguments=arguments or None,
                    with_param=planned_shards(s.fan_out, s.fan_field) if s.fan_out else None,
                )
                if s.name in jobs:  # the PyTorchJob trains, then the stage's own task reports the sealed run
                    tasks[s.name + JOB_SUFFIX] = Task(
                        name=s.name + JOB_SUFFIX, template=jobs[s.name], arguments=arguments or None
                    )
                    tasks[s.name + JOB_SUFFIX] >> tasks[s.name]
            for stage in pipeline.order():
                first = stage.name + JOB_SUFFIX if stage.name in jobs else stage.name
                for upstream in stage.depends:
                    tasks[upstream] >> tasks[first]
    return template
