"""The data file the Helm chart builds its WorkflowTemplate from (``helm/irmsia/files/pipeline.json``).

The chart cannot run Python, so what does not depend on values (the DAG, each stage's arguments in Argo form,
parameters, fixed environment, mounts, the retry expression, the container security context) is generated here
from the same code that Hera renders with; a test renders both and requires identical WorkflowTemplates.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.argo.environment import (
    DEID_SECRET_KEYS,
    DICOMWEB_SECRET_KEYS,
    FIXED_ENV,
    KAGGLE_SECRET_KEYS,
    MIRROR_ENV,
    S3_SECRET_KEYS,
)
from pipeline.argo.install import ARGO_VERSION, executor_pod_spec_patch
from pipeline.argo.labels import POD_LABELS, object_labels
from pipeline.argo.metrics import template_metrics
from pipeline.argo.retry import TRANSIENT_ONLY
from pipeline.argo.security import container_security_context
from pipeline.argo.stage_template import (
    RESULT_DEFAULT,
    RESULT_OUTPUT,
    handed_on_value,
    stage_artifact,
    workflow_argument,
)
from pipeline.argo.volumes import DATA_VOLUME, MOUNTS, RESULT_FILE, TRAIN_CACHE_DIR, TRAIN_CACHE_VOLUME
from pipeline.argo.workflow_template import (
    ENTRYPOINT,
    TARGET_PARAMETER,
    VOLUME_CLAIM_GC,
    planned_shards,
    workflow_parameters,
)
from pipeline.dag import PIPELINE, SHARD, Pipeline, StageSpec

CHART_DATA = "helm/irmsia/files/pipeline.json"


def _inputs(pipeline: Pipeline, stage: StageSpec) -> list[dict[str, str]]:
    """The template's input parameters with the task's values: handed-on parameters, then a fan-out's item."""
    inputs = [{"name": p, "value": handed_on_value(u, p)} for p, u in pipeline.handed_on(stage).items()]
    return inputs + ([{"name": SHARD, "value": "{{item}}"}] if stage.fan_out else [])


def chart_data(pipeline: Pipeline = PIPELINE) -> dict[str, Any]:
    return {
        "name": pipeline.name,
        "labels": object_labels(pipeline.name),
        "podLabels": {k: v for k, v in POD_LABELS.items() if k != "app.kubernetes.io/instance"},
        "entrypoint": ENTRYPOINT,
        "target": "{{workflow.parameters." + TARGET_PARAMETER + "}}",
        "parameters": [p.model_dump(by_alias=True, exclude_none=True) for p in workflow_parameters(pipeline)],
        "stages": [
            {
                "name": s.name,
                "stage": s.stage,
                "entrypoint": s.entrypoint,
                "image": s.image,
                "cpuImage": s.cpu_image,
                "args": [workflow_argument(a, [i["name"] for i in _inputs(pipeline, s)]) for a in s.args],
                "inputs": _inputs(pipeline, s),
                "withParam": planned_shards(s.fan_out, s.fan_field) if s.fan_out else "",
                "depends": " && ".join(s.depends),
                "gpu": s.gpu,
                "gpuProcessesFlag": s.gpu_processes_flag,
                "metrics": template_metrics(s, RESULT_OUTPUT).model_dump(by_alias=True, exclude_none=True),
                "artifacts": [stage_artifact(a).model_dump(by_alias=True, exclude_none=True) for a in s.artifacts],
            }
            for s in pipeline.order()
        ],
        "fixedEnv": [{"name": k, "value": v} for k, v in FIXED_ENV.items()],
        "s3SecretKeys": list(S3_SECRET_KEYS),
        "kaggleSecretKeys": list(KAGGLE_SECRET_KEYS),
        "dicomwebSecretKeys": list(DICOMWEB_SECRET_KEYS),
        "deidSecretKeys": list(DEID_SECRET_KEYS),
        "mounts": [{"name": k, "mountPath": v} for k, v in MOUNTS.items()],
        "resultOutput": RESULT_OUTPUT,
        "resultFile": RESULT_FILE,
        "resultDefault": RESULT_DEFAULT,
        "podSpecPatch": executor_pod_spec_patch(),
        "argoVersion": ARGO_VERSION,
        "mirrorEnv": MIRROR_ENV,
        "sourceStages": [s.name for s in pipeline.stages if s.downloads],
        "dataVolume": {"name": DATA_VOLUME, "stages": [s.name for s in pipeline.stages if s.reads_input_data]},
        "trainCache": {
            "name": TRAIN_CACHE_VOLUME,
            "mountPath": TRAIN_CACHE_DIR,
            "stages": [s.name for s in pipeline.stages if s.keeps_cache],
        },
        "volumeClaimGC": VOLUME_CLAIM_GC,
        "retryExpression": TRANSIENT_ONLY,
        "containerSecurityContext": container_security_context().model_dump(by_alias=True, exclude_none=True),
    }


def chart_data_text(pipeline: Pipeline = PIPELINE) -> str:
    return json.dumps(chart_data(pipeline), indent=2, sort_keys=True) + "\n"
