"""Training on all of a pod's GPUs (``gpuPool.gpus``) and on several nodes (``gpuPool.nodes``: a Kubeflow
``PyTorchJob`` the workflow creates and waits for), rendered from the deployment configuration.

The PyTorchJob is validated strictly against the Training Operator's own API models (``kubeflow-training``,
``tests.support.kubeflow_schema``) and the workflow, with its ``resource`` step, against Argo v4.1.2's CRDs.
"""

from __future__ import annotations

import pytest
import yaml

from jobs.core.errors import UsageError
from jobs.stages import image_ref, stage
from jobs.train.settings import TrainSettings
from pipeline.argo.pytorchjob import FAILURE_CONDITION, SUCCESS_CONDITION, pytorch_job
from pipeline.argo.security import container_security_context, pod_security_context
from pipeline.argo.workflow_template import build_workflow_template
from pipeline.config import DeploymentConfig, GpuPool, Toleration, TrainCacheConfig
from pipeline.dag import PIPELINE
from tests.support.argo_schema import ARGO_SCHEMA, SKIP_REASON, argo_schema_errors
from tests.support.kubeflow_schema import AVAILABLE, kubeflow_errors
from tests.support.kubeflow_schema import SKIP_REASON as NO_KUBEFLOW
from tests.support.pod_security import project_violations

POOL = {"enabled": True, "node_selector": {"pool": "gpu"}, "tolerations": (Toleration(key="nvidia.com/gpu"),)}
MULTI = DeploymentConfig(gpu_pool=GpuPool(gpus=4, nodes=3, **POOL), train_cache=TrainCacheConfig(size="50Gi"))


def _templates(config: DeploymentConfig) -> dict[str, dict]:
    return {t["name"]: t for t in build_workflow_template(config).to_dict()["spec"]["templates"]}


def _parsed(args: list[str]) -> TrainSettings:
    """The train settings a container's arguments give (workflow parameters at their defaults)."""
    values = {f"{{{{workflow.parameters.{p.name}}}}}": p.default for p in PIPELINE.parameters}
    argv = [values.get(a, a) for a in args]
    argv = [a for i, a in enumerate(argv) if a != "" and not (argv[i + 1 : i + 2] == [""] and a.startswith("--"))]
    return TrainSettings.parse(argv, {})


@pytest.mark.parametrize("gpus", [1, 2, 8])
def test_the_gpu_pools_gpus_are_requested_and_used_by_as_many_training_processes(gpus):
    # GIVEN a GPU pool of ``gpus`` GPUs per pod
    train = _templates(DeploymentConfig(gpu_pool=GpuPool(gpus=gpus, **POOL)))["train"]["container"]
    # THEN the train pod requests them and trains with one process per GPU (one process: no launcher at all)
    assert train["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
    assert _parsed(train["args"]).nproc_per_node == gpus
    assert ("--nproc-per-node" in train["args"]) == (gpus > 1)


def test_without_the_gpu_pool_train_runs_one_process_and_other_stages_never_get_the_flag():
    for config in (DeploymentConfig(), DeploymentConfig(gpu_pool=GpuPool(gpus=4, **POOL))):
        templates = _templates(config)
        for name, template in templates.items():
            # the fold trainings are train runs on the same pool
            if "container" in template and (name not in ("train", "train-fold") or not config.gpu_pool.enabled):
                assert "--nproc-per-node" not in template["container"]["args"], name


def test_the_flag_the_dag_passes_is_the_train_stages_own_option():
    flag = stage("train").gpu_processes_flag
    assert TrainSettings.parse(["--dataset", "d", flag, "4"], {}).nproc_per_node == 4


def test_several_nodes_need_the_gpu_pool():
    with pytest.raises(UsageError, match=r"gpuPool\.nodes 2: .*gpuPool\.enabled"):
        GpuPool(nodes=2)
    with pytest.raises(UsageError, match=r"gpuPool\.nodes 0"):
        GpuPool(enabled=True, nodes=0)


def test_on_several_nodes_a_pytorchjob_trains_and_the_train_task_reports_the_sealed_run():
    templates = _templates(MULTI)
    tasks = {t["name"]: t for t in templates["pipeline"]["dag"]["tasks"]}
    # THEN split -> train-job (creates the PyTorchJob, waits for it) -> train (reports) -> register
    assert tasks["train-job"]["depends"] == "split" and tasks["train"]["depends"] == "train-job"
    assert tasks["register"]["depends"] == "train && train-cv"
    step = templates["train-job"]["resource"]
    assert step["action"] == "create" and step["setOwnerReference"] is True
    assert (step["successCondition"], step["failureCondition"]) == (SUCCESS_CONDITION, FAILURE_CONDITION)
    job = yaml.safe_load(step["manifest"])
    assert job == pytorch_job(PIPELINE.stage("train"), MULTI)
    # AND the report step runs the same train settings (so the same run: same cache key) without training
    report = templates["train"]["container"]
    reported, trained = _parsed(report["args"]), _parsed(job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
                                                        ["spec"]["containers"][0]["args"])  # fmt: skip
    assert reported.sealed_only and not trained.sealed_only
    assert reported.result_params() == trained.result_params() and trained.nproc_per_node == 4
    assert "nvidia.com/gpu" not in report["resources"]["limits"] and "nodeSelector" not in templates["train"]


def test_the_pytorchjob_runs_the_train_pod_on_every_node():
    single = _templates(DeploymentConfig(gpu_pool=GpuPool(gpus=4, **POOL), train_cache=MULTI.train_cache))["train"]
    job = pytorch_job(PIPELINE.stage("train"), MULTI)
    specs = job["spec"]["pytorchReplicaSpecs"]
    # THEN one master and nodes - 1 workers, each running torchrun around irmsia-train with nprocPerNode processes
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    assert job["spec"]["nprocPerNode"] == "4"
    for role in ("Master", "Worker"):
        pod = specs[role]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"  # the name the operator injects the rendezvous variables into
        assert container["command"] == ["torchrun", "--no-python", "irmsia-train"]
        # AND each pod is the one-node train pod: the train image, its env and secret refs, GPUs, scheduling
        assert container["image"] == image_ref(stage("train").image(), registry=MULTI.images.registry,
                                               tag=MULTI.images.tag)  # fmt: skip
        assert container["env"] == single["container"]["env"]
        assert container["args"] == single["container"]["args"]
        assert container["resources"] == single["container"]["resources"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
        assert pod["nodeSelector"] == {"pool": "gpu"} and pod["tolerations"] == single["tolerations"]
        # AND the project's restricted security contexts; the cache is a per-pod emptyDir (no shared RWO claim)
        assert container["securityContext"] == container_security_context().model_dump(by_alias=True,
                                                                                       exclude_none=True)  # fmt: skip
        assert pod["securityContext"] == pod_security_context(MULTI).model_dump(by_alias=True, exclude_none=True)
        assert project_violations({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": pod}) == []
        cache = next(v for v in pod["volumes"] if v["name"] == "train-cache")
        assert cache == {"name": "train-cache", "emptyDir": {}}


@pytest.mark.skipif(not AVAILABLE, reason=NO_KUBEFLOW)
def test_the_pytorchjob_validates_strictly_against_the_training_operators_models():
    job = pytorch_job(PIPELINE.stage("train"), MULTI)
    assert kubeflow_errors(job) == []
    # AND the check refuses what the operator's API refuses: an unknown field, a wrong type, a missing field
    job["spec"]["nprocPerNode"] = 4
    job["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicyy"] = "Never"
    errors = kubeflow_errors(job)
    assert any("nprocPerNode: must be of type str" in e for e in errors), errors
    assert any('unknown field "restartPolicyy"' in e for e in errors), errors
    container = pytorch_job(PIPELINE.stage("train"), MULTI)
    del container["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["name"]
    assert any("name" in e for e in kubeflow_errors(container))


@pytest.mark.skipif(not ARGO_SCHEMA.exists(), reason=SKIP_REASON)
def test_the_multi_node_workflow_validates_against_argo_crds():
    template = build_workflow_template(MULTI).to_dict()
    assert argo_schema_errors(template) == []
