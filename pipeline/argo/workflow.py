"""A Workflow submitted from the ``irmsia-pipeline`` template, with parameters given on the command line."""

from __future__ import annotations

from collections.abc import Mapping

from hera.workflows import Workflow
from hera.workflows.models import Arguments, Parameter, WorkflowTemplateRef

from jobs.core.errors import UsageError
from pipeline.argo.labels import object_labels
from pipeline.argo.workflow_template import TARGET_PARAMETER
from pipeline.dag import PIPELINE, Pipeline


def parse_parameters(items: list[str], pipeline: Pipeline = PIPELINE) -> dict[str, str]:
    """``["epochs=5", "model=resnet18"]`` -> a mapping, checked against the template's parameters and choices.

    Argo's server does not check a submitted value against the template parameter's ``enum`` (the run would
    start and fail in its stage), so the choices are checked here.
    """
    known = [p.name for p in pipeline.parameters] + [TARGET_PARAMETER]
    choices = {p.name: p.enum for p in pipeline.parameters if p.enum}
    choices[TARGET_PARAMETER] = tuple(s.name for s in pipeline.order())
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"-p {item!r}: use key=value, e.g. -p epochs=5")
        if key not in known:
            raise UsageError(f"-p {key}: not a workflow parameter; use one of {', '.join(known)}")
        if key in choices and value not in choices[key]:
            raise UsageError(f"-p {key}={value}: use one of {', '.join(choices[key])}")
        values[key] = value
    return values


def build_workflow(namespace: str, parameters: Mapping[str, str], pipeline: Pipeline = PIPELINE) -> Workflow:
    """A run of the template: only the parameters given are set; the template supplies the other defaults."""
    return Workflow(
        generate_name=f"{pipeline.name}-",
        namespace=namespace,
        labels=object_labels(pipeline.name),
        workflow_template_ref=WorkflowTemplateRef(name=pipeline.name),
        arguments=Arguments(parameters=[Parameter(name=k, value=v) for k, v in parameters.items()])
        if parameters
        else None,
    )
