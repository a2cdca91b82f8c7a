"""CronWorkflows: the pipeline template on a schedule (nightly collect + index refresh, weekly retrain, …).

Each runs the ``irmsia-pipeline`` WorkflowTemplate by reference, so a schedule never copies stage definitions.
"""

from __future__ import annotations

from hera.workflows import CronWorkflow
from hera.workflows.models import Arguments, Parameter, WorkflowTemplateRef

from pipeline.argo.labels import object_labels
from pipeline.argo.workflow_template import TARGET_PARAMETER
from pipeline.config import DeploymentConfig, Schedule
from pipeline.dag import PIPELINE, Pipeline

CONCURRENCY_POLICY = "Forbid"
"""A run still going when the next is due (a long training) skips the new one instead of racing it."""


def cron_name(schedule: Schedule) -> str:
    return f"irmsia-{schedule.name}"


def build_cron_workflow(schedule: Schedule, config: DeploymentConfig, pipeline: Pipeline = PIPELINE) -> CronWorkflow:
    """The CronWorkflow of one configured schedule."""
    parameters = [Parameter(name=k, value=v) for k, v in sorted(schedule.parameters.items())]
    parameters.append(Parameter(name=TARGET_PARAMETER, value=schedule.target))
    return CronWorkflow(
        name=cron_name(schedule),
        namespace=config.namespace,
        labels=object_labels(cron_name(schedule)),
        schedules=list(schedule.schedules),
        timezone=schedule.timezone,
        concurrency_policy=CONCURRENCY_POLICY,
        starting_deadline_seconds=schedule.starting_deadline_seconds,
        successful_jobs_history_limit=schedule.successful_jobs_history_limit,
        failed_jobs_history_limit=schedule.failed_jobs_history_limit,
        cron_suspend=schedule.suspend or None,
        workflow_template_ref=WorkflowTemplateRef(name=pipeline.name),
        arguments=Arguments(parameters=parameters),
    )


def build_cron_workflows(config: DeploymentConfig, pipeline: Pipeline = PIPELINE) -> list[CronWorkflow]:
    return [build_cron_workflow(s, config, pipeline) for s in config.schedules]
