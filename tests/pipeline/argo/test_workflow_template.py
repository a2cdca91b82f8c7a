"""The rendered WorkflowTemplate and CronWorkflows: golden files, Argo's schema, Hera's models, stage settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hera.workflows.models import CronWorkflow, WorkflowTemplate

from pipeline.argo.render import render_files, render_objects, write_files
from pipeline.argo.retry import TRANSIENT_ONLY
from pipeline.argo.workflow_template import build_workflow_template
from pipeline.config import DeploymentConfig, GpuPool, StageResources, Toleration, load_config
from pipeline.dag import PIPELINE
from tests.support.argo_schema import ARGO_SCHEMA, REPO_ROOT, argo_schema_errors

# Each configuration and the directory its rendering is committed to (like hera's examples and their YAML).
GOLDEN = {
    "irmsia.yaml": "manifests/generated/default",
    "manifests/overlays/gpu/irmsia.yaml": "manifests/generated/gpu",
}
MODELS = {"WorkflowTemplate": WorkflowTemplate, "CronWorkflow": CronWorkflow}


def _all_rendered() -> list[tuple[str, dict]]:
    return [
        (f"{config}:{name}", obj)
        for config in GOLDEN
        for name, obj in render_objects(load_config(REPO_ROOT / config)).items()
    ]


@pytest.mark.parametrize(("config", "directory"), GOLDEN.items())
def test_committed_yaml_matches_rendering(config, directory):
    # GIVEN a configuration and its committed rendering
    files = render_files(load_config(REPO_ROOT / config), source=config)
    target = REPO_ROOT / directory
    if os.environ.get("IRMSIA_REGENERATE") == "1":
        write_files(files, target)
    # WHEN the committed files are read
    committed = {p.name: p.read_text(encoding="utf-8") for p in sorted(target.glob("*.yaml"))}
    # THEN they are exactly what `irmsia render` writes today (regenerate with IRMSIA_REGENERATE=1)
    assert committed == files, f"{directory} drifted from {config}: run IRMSIA_REGENERATE=1 pytest {__file__}"


@pytest.mark.parametrize(("where", "obj"), _all_rendered())
def test_rendered_objects_roundtrip_through_hera_models(where, obj):
    model = MODELS[obj["kind"]].model_validate(obj)
    assert model.model_dump(by_alias=True, exclude_none=True) == obj, where


@pytest.mark.skipif(not ARGO_SCHEMA.exists(), reason=f"Argo JSON schema not found at {ARGO_SCHEMA}")
@pytest.mark.parametrize(("where", "obj"), _all_rendered())
def test_rendered_objects_validate_against_argo_schema(where, obj):
    assert argo_schema_errors(obj) == [], where


@pytest.mark.skipif(not ARGO_SCHEMA.exists(), reason=f"Argo JSON schema not found at {ARGO_SCHEMA}")
def test_argo_schema_check_rejects_a_broken_template():
    # GIVEN a template whose retry limit is a list (a type Argo rejects)
    obj = render_objects(DeploymentConfig())["workflow-template.yaml"]
    obj["spec"]["templates"][1]["retryStrategy"]["limit"] = ["3"]
    # THEN the schema check reports it
    assert any("retryStrategy/limit" in e for e in argo_schema_errors(obj))


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
        assert output == {"name": "result", "valueFrom": {"path": env["IRMSIA_RESULT_FILE"]}}
        mounts = {m["mountPath"] for m in template["container"]["volumeMounts"]}
        assert str(Path(env["IRMSIA_RESULT_FILE"]).parent) in mounts


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
