"""The rendered WorkflowTemplate, CronWorkflows and Workflow: Argo v4.1.2's CRD schemas, Hera's models, stage
settings (their committed renders are checked by tests/pipeline/test_generated.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hera.workflows.models import CronWorkflow, WorkflowTemplate

from jobs.core.errors import UsageError
from pipeline.argo.install import EXECUTOR_CONTAINERS, executor_security_context
from pipeline.argo.render import render_objects
from pipeline.argo.retry import TRANSIENT_ONLY
from pipeline.argo.workflow import build_workflow
from pipeline.argo.workflow_template import build_workflow_template
from pipeline.config import (
    DeidentificationConfig,
    DeploymentConfig,
    DicomwebConfig,
    GpuPool,
    LocalDataConfig,
    MirrorsConfig,
    StageResources,
    Toleration,
    TrainCacheConfig,
    load_config,
)
from pipeline.dag import PIPELINE
from tests.support.argo_schema import ARGO_SCHEMA, REPO_ROOT, SKIP_REASON, argo_schema_errors

CONFIGS = ("irmsia.yaml", "manifests/overlays/gpu/irmsia.yaml")
MODELS = {"WorkflowTemplate": WorkflowTemplate, "CronWorkflow": CronWorkflow}
FULL = DeploymentConfig(
    local_data=LocalDataConfig(claim_name="datasets"),
    mirrors=MirrorsConfig(tcia="https://tcia.example/api/", nih="https://nih.example/", kaggle="https://k.example"),
    train_cache=TrainCacheConfig(size="50Gi", storage_class_name="fast"),
    gpu_pool=GpuPool(enabled=True, node_selector={"pool": "gpu"}, tolerations=(Toleration(key="nvidia.com/gpu"),)),
)
"""A configuration using every optional setting."""


def _all_rendered() -> list[tuple[str, dict]]:
    objects = [
        (f"{config}:{name}", obj)
        for config in CONFIGS
        for name, obj in render_objects(load_config(REPO_ROOT / config)).items()
    ]
    objects += [(f"full:{name}", obj) for name, obj in render_objects(FULL).items()]
    workflow = build_workflow("irmsia", {"source": "tcia", "ref": "LIDC-IDRI", "epochs": "3"}).build()
    return [*objects, ("submitted:Workflow", workflow.model_dump(by_alias=True, exclude_none=True))]


@pytest.mark.parametrize(("where", "obj"), [o for o in _all_rendered() if o[1]["kind"] in MODELS])
def test_rendered_objects_roundtrip_through_hera_models(where, obj):
    model = MODELS[obj["kind"]].model_validate(obj)
    assert model.model_dump(by_alias=True, exclude_none=True) == obj, where


@pytest.mark.skipif(not ARGO_SCHEMA.exists(), reason=SKIP_REASON)
@pytest.mark.parametrize(("where", "obj"), _all_rendered())
def test_rendered_objects_validate_against_argo_crds(where, obj):
    assert argo_schema_errors(obj) == [], where


@pytest.mark.skipif(not ARGO_SCHEMA.exists(), reason=SKIP_REASON)
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s["templates"][1]["retryStrategy"].update(limit=["3"]), "retryStrategy.limit: must be an integer"),
        (lambda s: s["templates"][1]["container"].update(securityContex={}), 'unknown field "securityContex"'),
        (lambda s: s.update(podSpecPatch={"containers": []}), "podSpecPatch: must be of type string"),
        (lambda s: s["templates"][1].update(metrics={"prometheus": [{"name": "x"}]}), "prometheus[0].help: required"),
        (lambda s: s.update(activeDeadlineSeconds="1d"), "activeDeadlineSeconds: must be of type integer"),
    ],
)  # fmt: skip
def test_argo_crd_check_rejects_what_the_api_server_rejects(change, match):
    # GIVEN a rendered template with one field the API server's strict validation refuses
    obj = render_objects(DeploymentConfig())["workflow-template.yaml"]
    change(obj["spec"])
    # THEN the schema check reports it
    assert any(match in e for e in argo_schema_errors(obj)), argo_schema_errors(obj)


def _templates(config: DeploymentConfig) -> dict[str, dict]:
    spec = build_workflow_template(config).to_dict()["spec"]
    return {t["name"]: t for t in spec["templates"]}


def test_dag_follows_the_pipeline_definition():
    templates = _templates(DeploymentConfig())
    tasks = {t["name"]: t for t in templates["pipeline"]["dag"]["tasks"]}
    assert templates["pipeline"]["dag"]["target"] == "{{workflow.parameters.target}}"
    for stage in PIPELINE.stages:
        assert tasks[stage.name]["template"] == stage.name
        assert tasks[stage.name].get("depends", "") == " && ".join(stage.depends)
        assert templates[stage.name]["container"]["command"] == [stage.entrypoint]


def test_every_stage_retries_only_transient_failures_with_backoff():
    for name, template in _templates(DeploymentConfig()).items():
        if name == "pipeline":
            continue
        retry = template["retryStrategy"]
        assert retry["expression"] == TRANSIENT_ONLY == "lastRetry.status == 'Error' || asInt(lastRetry.exitCode) == 75"
        assert retry["backoff"]["factor"] == 2 and retry["limit"] == 3


def test_every_stage_exposes_its_result_file_as_output_parameter():
    for name, template in _templates(DeploymentConfig()).items():
        if name == "pipeline":
            continue
        env = {e["name"]: e.get("value") for e in template["container"]["env"]}
        (output,) = template["outputs"]["parameters"]
        assert output == {"name": "result", "valueFrom": {"path": env["IRMSIA_RESULT_FILE"], "default": "{}"}}
        mounts = {m["mountPath"] for m in template["container"]["volumeMounts"]}
        assert str(Path(env["IRMSIA_RESULT_FILE"]).parent) in mounts


def test_train_exposes_its_report_as_an_unarchived_output_artifact_beside_the_result_file():
    # GIVEN the rendered templates WHEN train's outputs are read
    templates = _templates(DeploymentConfig())
    env = {e["name"]: e.get("value") for e in templates["train"]["container"]["env"]}
    # THEN its report is an optional, unarchived artifact in the result file's folder (so the UI shows the HTML),
    # and no other stage but the fold trainings (each a training with its report) declares artifacts
    assert templates["train"]["outputs"]["artifacts"] == [
        {"name": "report", "path": str(Path(env["IRMSIA_RESULT_FILE"]).parent / "report.html"), "optional": True,
         "archive": {"none": {}}}
    ]  # fmt: skip
    assert all(
        "artifacts" not in t["outputs"] for n, t in templates.items() if n not in ("train", "train-fold", "pipeline")
    )


def test_every_stage_knows_its_own_image_for_the_registry_metadata():
    # GIVEN a configured registry and tag WHEN rendered THEN IRMSIA_IMAGE is exactly the container's image
    for name, template in _templates(load_config(REPO_ROOT / "irmsia.yaml")).items():
        if name == "pipeline":
            continue
        env = {e["name"]: e.get("value") for e in template["container"]["env"]}
        assert env["IRMSIA_IMAGE"] == template["container"]["image"] != ""


def test_gpu_pool_applies_only_to_gpu_stages():
    # GIVEN a GPU pool with a node selector and a toleration
    pool = GpuPool(enabled=True, gpus=2, node_selector={"pool": "gpu"}, tolerations=(Toleration(key="nvidia.com/gpu"),))
    templates = _templates(DeploymentConfig(gpu_pool=pool))
    # THEN train gets the GPUs, the selector and the toleration, and the other stages none of them
    assert templates["train"]["container"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert templates["train"]["nodeSelector"] == {"pool": "gpu"}
    assert templates["train"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    for name in ("collect", "index", "split", "register"):
        assert "nodeSelector" not in templates[name] and "tolerations" not in templates[name]
        assert "nvidia.com/gpu" not in templates[name]["container"]["resources"]["limits"]


def test_shm_is_memory_backed_where_configured():
    config = DeploymentConfig(resources={"train": StageResources(shm_size="2Gi")})
    templates = _templates(config)
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in templates["train"]["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in templates["train"]["container"]["volumeMounts"]
    assert all(v["name"] != "dshm" for v in templates["collect"]["volumes"])


def test_credentials_come_only_from_secret_refs():
    text = yaml.safe_dump(build_workflow_template(DeploymentConfig()).to_dict())
    for name, template in _templates(DeploymentConfig()).items():
        for env in template.get("container", {}).get("env", []):
            if "KEY" in env["name"] or "SECRET" in env["name"] or env["name"] == "KAGGLE_USERNAME":
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], (name, env)
    assert "KAGGLE_KEY" in text  # collect gets the Kaggle secret...
    assert all(e["name"] != "KAGGLE_KEY" for e in _templates(DeploymentConfig())["train"]["container"]["env"])


@pytest.mark.parametrize("secret", ["irmsia-deid", "hospital-deid-key"])
def test_the_de_identification_key_reaches_collect_only_from_its_secret(secret):
    # GIVEN a deployment naming the Secret that holds IRMSIA_DEID_SECRET
    config = DeploymentConfig(deidentification=DeidentificationConfig(key_secret=secret))
    # WHEN the templates are built
    templates = _templates(config)
    env = {e["name"]: e for e in templates["collect"]["container"]["env"]}
    # THEN collect reads the key from that Secret (optional: only deidentify runs need it, and fail without it)
    assert env["IRMSIA_DEID_SECRET"] == {
        "name": "IRMSIA_DEID_SECRET",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": "IRMSIA_DEID_SECRET", "optional": True}},
    }
    # AND no other stage gets it, and no parameter or argument carries it
    for name in ("index", "split", "train", "register"):
        assert all(e["name"] != "IRMSIA_DEID_SECRET" for e in templates[name]["container"]["env"]), name
    assert "IRMSIA_DEID_SECRET" not in json.dumps(templates["collect"]["container"].get("args", []))


@pytest.mark.parametrize("secret", ["irmsia-dicomweb", "hospital-pacs"])
def test_pacs_credentials_reach_collect_only_from_their_secret(secret):
    # GIVEN a deployment naming the Secret that holds the DICOMweb token or Basic user and password
    config = DeploymentConfig(dicomweb=DicomwebConfig(credentials_secret=secret))
    # WHEN the templates are built
    templates = _templates(config)
    env = {e["name"]: e for e in templates["collect"]["container"]["env"]}
    # THEN collect reads each from that Secret, every key optional (a PACS without authentication needs none)
    for key in ("IRMSIA_DICOMWEB_TOKEN", "IRMSIA_DICOMWEB_USER", "IRMSIA_DICOMWEB_PASSWORD"):
        assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
    # AND no other stage gets them, and no argument carries them
    for name in ("index", "split", "train", "register"):
        assert not any(e["name"].startswith("IRMSIA_DICOMWEB_") for e in templates[name]["container"]["env"]), name
    assert "DICOMWEB_TOKEN" not in json.dumps(templates["collect"]["container"].get("args", []))
    with pytest.raises(UsageError, match=r"dicomweb\.credentialsSecret"):
        DicomwebConfig(credentials_secret="PACS_Token")


def test_a_bad_de_identification_secret_name_is_refused():
    with pytest.raises(UsageError, match=r"deidentification\.keySecret"):
        DeidentificationConfig(key_secret="Not_A_Label")


def test_executor_containers_get_the_restricted_context_from_the_template_itself():
    # GIVEN the rendered template
    spec = build_workflow_template(DeploymentConfig()).to_dict()["spec"]
    patch = json.loads(spec["podSpecPatch"])
    # THEN its podSpecPatch gives Argo's init and wait containers our restricted security context, by name
    patched = {c["name"]: c["securityContext"] for side in ("initContainers", "containers") for c in patch[side]}
    assert patched == dict.fromkeys(EXECUTOR_CONTAINERS, executor_security_context())


def test_artifact_repository_is_the_releases_own():
    spec = build_workflow_template(DeploymentConfig()).to_dict()["spec"]
    assert spec["artifactRepositoryRef"] == {"configMap": "irmsia-artifact-repositories", "key": "default"}


def test_local_data_volume_is_mounted_read_only_in_collect_only():
    # GIVEN a configuration with a PVC of input folders
    templates = _templates(FULL)
    # THEN collect mounts it read-only where --path points, and no other stage sees it
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}} in templates[
        "collect"
    ]["volumes"]
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in templates["collect"]["container"]["volumeMounts"]
    for name in ("index", "split", "train", "register"):
        assert all(v["name"] != "data" for v in templates[name]["volumes"])


def test_mirror_urls_reach_collect_only():
    templates = _templates(FULL)
    env = {e["name"]: e.get("value") for e in templates["collect"]["container"]["env"]}
    assert env["IRMSIA_TCIA_URL"] == "https://tcia.example/api/"
    assert env["IRMSIA_NIH_URL"] == "https://nih.example/"
    assert env["IRMSIA_KAGGLE_ENDPOINT"] == "https://k.example"
    assert all("IRMSIA_TCIA_URL" not in str(templates[n]["container"]["env"]) for n in ("index", "train"))
    assert "IRMSIA_TCIA_URL" not in str(_templates(DeploymentConfig())["collect"]["container"]["env"])


def test_train_cache_is_a_per_run_claim_that_retries_share():
    # GIVEN a configuration with a 50Gi train cache on a storage class
    spec = build_workflow_template(FULL).to_dict()["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    # THEN the workflow claims one volume per run, deleted only when the run completes
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "train-cache"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}},
                             "storageClassName": "fast"}  # fmt: skip
    assert spec["volumeClaimGC"] == {"strategy": "OnWorkflowCompletion"}
    # AND train (whose retries are new pods of the same run) decodes into it; it is not a pod volume
    train = templates["train"]
    env = {e["name"]: e.get("value") for e in train["container"]["env"]}
    assert {"name": "train-cache", "mountPath": env["IRMSIA_CACHE_DIR"]} in train["container"]["volumeMounts"]
    assert all(v["name"] != "train-cache" for v in train["volumes"])
    assert "IRMSIA_CACHE_DIR" not in str(templates["index"]["container"]["env"])


def test_no_train_cache_claim_when_disabled():
    spec = build_workflow_template(DeploymentConfig(train_cache=TrainCacheConfig(size=""))).to_dict()["spec"]
    assert "volumeClaimTemplates" not in spec and "volumeClaimGC" not in spec


def test_ephemeral_storage_is_declared_for_every_stage_of_the_local_configuration():
    templates = _templates(load_config(REPO_ROOT / "irmsia.yaml"))
    for stage in PIPELINE.stages:
        resources = templates[stage.name]["container"]["resources"]
        assert "ephemeral-storage" in resources["requests"] and "ephemeral-storage" in resources["limits"], stage.name
