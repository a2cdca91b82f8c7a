"""Training on several nodes: a Kubeflow Training Operator ``PyTorchJob`` (kubeflow.org/v1) and the Argo step that
creates it and waits for it.

With ``gpuPool.nodes`` N > 1 the workflow's ``train-job`` task creates a PyTorchJob of one ``Master`` and N - 1
``Worker`` pods, each with ``gpuPool.gpus`` GPUs and ``nprocPerNode`` processes: every pod runs ``torchrun`` (which
reads the operator's ``PET_*`` variables: nodes, node rank, master address) around ``irmsia-train``, whose rank 0
writes the run (``jobs.train.distributed``). The pods are the train pod's: the train image
(``jobs.stages.image_ref``), its environment and secret references, resources, node selector, tolerations and the
restricted-PSS security contexts; the decoded-image cache is an emptyDir per pod (a ReadWriteOnce PVC cannot follow
pods onto several nodes). The ``train`` task that follows runs ``irmsia-train --sealed-only`` with the same
arguments on CPU: it finds the run the job sealed (a cache hit) and hands its result on like a one-pod train.

Argo's resource conditions are label-selector expressions over JSON paths, which cannot select an element of
``status.conditions`` by its type (argo-workflows#7143); the step waits on the replica counts the operator keeps
beside them: the Master pod succeeded (the job's ``Succeeded`` condition follows it under the default
``successPolicy``) or any pod failed for good (``restartPolicy: OnFailure`` restarts a failed container in place up
to ``runPolicy.backoffLimit``; the job is then ``Failed``). The cluster needs the Training Operator, and the
workflow's service account ``create``, ``get``, ``list`` and ``watch`` on ``pytorchjobs.kubeflow.org``.
"""

from __future__ import annotations

from typing import Any

import yaml
from hera.workflows import Resource
from hera.workflows.models import EmptyDirVolumeSource, Inputs, Parameter, Volume

from pipeline.argo.environment import stage_environment
from pipeline.argo.labels import object_labels
from pipeline.argo.resources import stage_resources
from pipeline.argo.scheduling import node_selector, tolerations
from pipeline.argo.security import container_security_context, pod_security_context
from pipeline.argo.stage_template import workflow_argument
from pipeline.argo.volumes import TRAIN_CACHE_VOLUME, stage_volumes, uses_train_cache
from pipeline.config import DeploymentConfig
from pipeline.dag import StageSpec

API_VERSION = "kubeflow.org/v1"
KIND = "PyTorchJob"
CONTAINER = "pytorch"
"""The Training Operator finds the training container by this name (and sets its ``PET_*``/``MASTER_*`` env)."""
LAUNCHER = ("torchrun", "--no-python")
"""``torchrun`` starts ``nprocPerNode`` processes per pod and joins the nodes; ``--no-python``: the stage's
console script is the program."""
JOB_SUFFIX = "-job"
SUCCESS_CONDITION = "status.replicaStatuses.Master.succeeded > 0"
FAILURE_CONDITION = "status.replicaStatuses.Master.failed > 0"


def multi_node(stage: StageSpec, config: DeploymentConfig) -> bool:
    """Whether ``stage`` runs as a PyTorchJob over several nodes (a GPU stage that can use several GPUs)."""
    return bool(stage.gpu and stage.gpu_processes_flag and config.gpu_pool.enabled and config.gpu_pool.nodes > 1)


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def _pod_template(stage: StageSpec, config: DeploymentConfig, inputs: tuple[str, ...]) -> dict[str, Any]:
    volumes, mounts = stage_volumes(stage, config)
    if uses_train_cache(stage, config):  # each node decodes into its own cache
        volumes.append(Volume(name=TRAIN_CACHE_VOLUME, empty_dir=EmptyDirVolumeSource()))
    args = [workflow_argument(t, inputs) for t in stage.args]
    container = {
        "name": CONTAINER,
        "image": config.images.for_stage(stage, gpu=True),
        "imagePullPolicy": config.images.pull_policy,
        "command": [*LAUNCHER, stage.entrypoint],
        "args": [*args, stage.gpu_processes_flag, str(config.gpu_pool.gpus)],
        "env": [_dump(e) for e in stage_environment(stage, config)],
        "resources": _dump(stage_resources(stage, config)),
        "securityContext": _dump(container_security_context()),
        "volumeMounts": [_dump(m) for m in mounts],
    }
    spec: dict[str, Any] = {
        "securityContext": _dump(pod_security_context(config)),
        "containers": [container],
        "volumes": [_dump(v) for v in volumes],
    }
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    if selector := node_selector(stage, config):
        spec["nodeSelector"] = selector
    if tolerated := tolerations(stage, config):
        spec["tolerations"] = [_dump(t) for t in tolerated]
    labels = {**object_labels(stage.name), "app.kubernetes.io/component": stage.stage}
    return {"metadata": {"labels": labels}, "spec": spec}


def pytorch_job(stage: StageSpec, config: DeploymentConfig, inputs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The PyTorchJob for ``stage`` (Argo placeholders in its arguments: the resource step substitutes them)."""
    template = _pod_template(stage, config, inputs)
    replica = {"restartPolicy": "OnFailure", "template": template}
    resources = config.stage_resources(stage.stage)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "generateName": "{{workflow.name}}-" + stage.name + "-",
            "namespace": config.namespace,
            "labels": object_labels(stage.name),
        },
        "spec": {
            "nprocPerNode": str(config.gpu_pool.gpus),
            "runPolicy": {
                "cleanPodPolicy": "None",  # keep the pods (and their logs) until the workflow deletes the job
                "backoffLimit": config.retry.limit,
                "activeDeadlineSeconds": resources.active_deadline_seconds,
            },
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, **replica},
                "Worker": {"replicas": config.gpu_pool.nodes - 1, **replica},
            },
        },
    }


def pytorch_job_step(stage: StageSpec, config: DeploymentConfig, inputs: tuple[str, ...] = ()) -> Resource:
    """The Argo ``resource`` template that creates the job (owned by the workflow, so deleted with it) and waits
    until its Master succeeds or a pod fails: must be created inside a Hera workflow context."""
    return Resource(
        name=stage.name + JOB_SUFFIX,
        inputs=Inputs(parameters=[Parameter(name=name) for name in inputs]) if inputs else None,
        action="create",
        set_owner_reference=True,
        manifest=yaml.safe_dump(pytorch_job(stage, config, inputs), sort_keys=False),
        success_condition=SUCCESS_CONDITION,
        failure_condition=FAILURE_CONDITION,
    )
