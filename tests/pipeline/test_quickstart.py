"""``make kind-up`` / ``make minikube-up`` with ``DRY_RUN=1``: the whole quick start checked without a cluster.

Every command is checked for what a real cluster needs (pinned Argo applied server-side, the executor patch,
images under the names the templates use, credentials created once), every object it would apply is validated
as the API server would, and the demo run's pods, built as Argo builds them under the patched controller, are
checked against the namespace's restricted Pod Security Standard.
"""

from __future__ import annotations

import shlex
import subprocess

import kubernetes_validate
import pytest
import yaml

from jobs.stages import image_names
from pipeline.argo.install import ARGO_VERSION
from pipeline.config import load_config
from pipeline.quickstart import PLACEHOLDER, main
from tests.support.argo_controller import (
    QUICK_START,
    ControllerConfig,
    join_workflow,
    pods_of,
    quick_start_configmap,
    strategic_merge,
)
from tests.support.argo_schema import ARGO_SCHEMA, REPO_ROOT, argo_schema_errors
from tests.support.k8s_objects import KUBERNETES_VERSIONS
from tests.support.pod_security import VERSIONS, restricted_violations

CONFIG = load_config(REPO_ROOT / "irmsia.yaml")


@pytest.fixture(scope="module", params=["kind", "minikube"])
def dry_run(request, tmp_path_factory):
    """(platform, commands.sh lines, objects in apply order) of a dry run."""
    folder = tmp_path_factory.mktemp(request.param)
    assert main([request.param, "--dry-run", str(folder)]) == 0
    commands = [line for line in (folder / "commands.sh").read_text().splitlines() if not line.startswith("#")]
    objects = [o for path in sorted(folder.glob("*.yaml")) for o in yaml.safe_load_all(path.read_text()) if o]
    return request.param, commands, objects


def _index(commands: list[str], fragment: str) -> int:
    return next(i for i, line in enumerate(commands) if fragment in line)


def test_the_commands_install_a_pinned_argo_server_side_then_make_it_compliant(dry_run):
    _, commands, _ = dry_run
    install = commands[_index(commands, "quick-start-minimal.yaml")]
    assert f"/releases/download/{ARGO_VERSION}/quick-start-minimal.yaml" in install
    assert "--server-side" in shlex.split(install)  # the CRDs exceed client-side apply's annotation limit
    assert _index(commands, "patch configmap workflow-controller-configmap") > _index(commands, "quick-start")
    assert _index(commands, "rollout status deploy/workflow-controller") > _index(commands, "patch configmap")


def test_the_images_are_built_and_loaded_under_the_names_the_templates_use(dry_run):
    platform, commands, _ = dry_run
    build = shlex.split(commands[_index(commands, "make images")])
    load = shlex.split(commands[_index(commands, "kind-load" if platform == "kind" else "minikube-load")])
    assert f"IMAGE_TAG={CONFIG.images.tag}" in build and f"IMAGE_TAG={CONFIG.images.tag}" in load
    # AND it builds exactly the images a cluster without GPUs runs (tests/pipeline/test_image_names.py checks that
    # kind-load loads them under the names the templates use)
    (images,) = [a for a in build if a.startswith("IMAGES=")]
    assert images.removeprefix("IMAGES=").split() == list(image_names(gpu=False))


def test_credentials_are_created_once_and_never_written_into_a_file_or_command(dry_run):
    _, commands, objects = dry_run
    create = commands[_index(commands, "create secret generic")]
    assert create.startswith(f"kubectl -n {CONFIG.namespace} get secret {CONFIG.store.credentials_secret} ")
    assert "--from-literal" not in create
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert set(secret["stringData"].values()) == {PLACEHOLDER}
    assert _index(commands, "create secret") < _index(commands, "-k manifests/overlays/local")


def test_the_run_is_submitted_after_the_bucket_exists_and_waited_for(dry_run):
    _, commands, _ = dry_run
    assert _index(commands, "job/irmsia-bucket-init") < _index(commands, "create -f .quickstart/demo-workflow.yaml")
    assert "condition=Completed" in commands[-2] and commands[-1].endswith("= Succeeded")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_core_object_it_applies_validates_strictly(dry_run, version):
    _, _, objects = dry_run
    core = [o for o in objects if "argoproj.io" not in o["apiVersion"]]
    assert {"Namespace", "Secret", "ConfigMap", "Deployment", "Job", "NetworkPolicy"} <= {o["kind"] for o in core}
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.skipif(not ARGO_SCHEMA.exists(), reason="Argo v4.1.2 CRDs not found")
def test_every_argo_object_it_applies_validates_against_the_crds(dry_run):
    _, _, objects = dry_run
    argo = [o for o in objects if o["apiVersion"].startswith("argoproj.io/")]
    assert {"WorkflowTemplate", "CronWorkflow", "Workflow"} <= {o["kind"] for o in argo}
    assert [e for o in argo for e in argo_schema_errors(o)] == []


@pytest.mark.skipif(not QUICK_START.exists(), reason="Argo's quick start not found")
@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
def test_the_demo_runs_pods_are_admitted(dry_run, version):
    # GIVEN the controller as the quick start installs it, with the patch the dry run applies
    _, _, objects = dry_run
    (patch,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "workflow-controller-configmap"
    ]
    controller = ControllerConfig.from_configmap(strategic_merge(quick_start_configmap(), patch))
    (template,) = [o for o in objects if o["kind"] == "WorkflowTemplate"]
    (workflow,) = [o for o in objects if o["kind"] == "Workflow"]
    namespace = next(o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == CONFIG.namespace)
    # THEN the run refers to the applied template, in the namespace that enforces the restricted profile
    assert workflow["spec"]["workflowTemplateRef"]["name"] == template["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # AND every stage pod the controller creates for it is admitted
    for stage, pod in pods_of(join_workflow(workflow, template), controller, namespace=CONFIG.namespace).items():
        assert restricted_violations(pod, version) == [], stage


def test_make_kind_up_dry_run_runs_the_module(tmp_path):
    shown = subprocess.run(["make", "-n", "kind-up", "DRY_RUN=1", f"QUICKSTART_DIR={tmp_path}"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"-m pipeline.quickstart kind --dry-run {tmp_path}" in shown
