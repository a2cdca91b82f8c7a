"""A pipeline spec's WorkflowTemplate (``irmsia render --spec``): Argo v4.1.2's CRD schema, Hera's models, the
DAG's fan-out and join, and the pods Argo's controller builds for each task, with Kaggle credentials only where
a Kaggle dataset is collected."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hera.workflows.models import WorkflowTemplate

from pipeline.argo.render import render_objects
from pipeline.argo.workflow import build_workflow
from pipeline.config import load_config
from pipeline.spec import load_spec, spec_pipeline
from tests.support.argo_controller import QUICK_START, ControllerConfig, join_workflow, pods_of, quick_start_configmap
from tests.support.argo_schema import ARGO_SCHEMA, REPO_ROOT, SKIP_REASON, argo_schema_errors
from tests.support.pod_security import restricted_violations

CONFIG = load_config(REPO_ROOT / "irmsia.yaml")
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


def _rendered(path) -> tuple[object, dict]:
    pipeline = spec_pipeline(load_spec(path))
    objects = render_objects(CONFIG, pipeline, schedules=False)
    assert list(objects) == ["workflow-template.yaml"]  # the configuration's schedules name the default DAG
    return pipeline, objects["workflow-template.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_spec_template_round_trips_through_hera_and_validates_against_argo_crds(path):
    _, template = _rendered(path)
    assert WorkflowTemplate.model_validate(template).model_dump(by_alias=True, exclude_none=True) == template
    if ARGO_SCHEMA.exists():
        assert argo_schema_errors(template) == []
    else:
        pytest.skip(SKIP_REASON)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_datasets_collect_and_index_run_in_parallel_then_join_at_the_split(path):
    # GIVEN a spec's template
    pipeline, template = _rendered(path)
    (dag,) = [t["dag"] for t in template["spec"]["templates"] if "dag" in t]
    depends = {t["name"]: set(filter(None, t.get("depends", "").split(" && "))) for t in dag["tasks"]}
    datasets = [s.name.removeprefix("collect-") for s in pipeline.stages if s.stage == "collect"]
    # THEN every collect starts at once, each index waits for its own collect only, the split for every index
    assert {depends[f"collect-{d}"] == set() for d in datasets} == {True}
    assert {f"index-{d}": depends[f"index-{d}"] for d in datasets} == {f"index-{d}": {f"collect-{d}"} for d in datasets}
    assert depends["split"] == {f"index-{d}" for d in datasets}
    assert (depends["train"], depends["register"]) == ({"split"}, {"train", "train-cv"})
    # AND register takes the run train made, from its result, as in the default DAG
    register = next(t for t in dag["tasks"] if t["name"] == "register")
    assert "tasks.train.outputs.parameters.result" in register["arguments"]["parameters"][0]["value"]


@pytest.mark.skipif(not QUICK_START.exists(), reason=f"Argo's quick start not found at {QUICK_START}")
def test_the_controller_builds_an_admitted_pod_per_task_with_credentials_only_where_needed():
    # GIVEN the real-data example's template and a submitted run of it
    pipeline, template = _rendered(REPO_ROOT / "examples/thoracic.yaml")
    run = build_workflow(CONFIG.namespace, {}, pipeline).build().model_dump(by_alias=True, exclude_none=True)
    assert run["spec"]["workflowTemplateRef"] == {"name": "irmsia-thoracic"}
    # WHEN Argo's controller builds each task's pod
    pods = pods_of(join_workflow(run, template), ControllerConfig.from_configmap(quick_start_configmap()),
                   namespace=CONFIG.namespace)  # fmt: skip
    # THEN there is one per task, each admitted, running its stage's script with the spec's arguments
    assert set(pods) == {s.name for s in pipeline.stages}
    for name, pod in pods.items():
        main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
        assert main["command"][-2:] == ["--", pipeline.stage(name).entrypoint]  # run by Argo's emissary executor
        assert [a for a in main["args"] if "{{" not in a] == [a for a in pipeline.stage(name).args if "{" not in a]
        assert [v for v in restricted_violations(pod) if "container main" in v] == [], name
    # AND the optional Kaggle secret reaches the collect pods (config kaggle.stages names the stage), no other
    kaggle = {n for n, p in pods.items()
              if any(e["name"] == "KAGGLE_KEY" for c in p["spec"]["containers"] for e in c.get("env", []))}  # fmt: skip
    assert kaggle == {s.name for s in pipeline.stages if s.stage == "collect"}
    # AND each task's resources are its stage's
    collect = next(c for c in pods["collect-covid-ar"]["spec"]["containers"] if c["name"] == "main")
    assert collect["resources"]["limits"]["memory"] == CONFIG.stage_resources("collect").limits["memory"]


def test_a_sharded_spec_fans_each_index_out_over_its_plans_shards():
    # GIVEN the real-data example, sharded
    pipeline = spec_pipeline(replace(load_spec(REPO_ROOT / "examples/thoracic.yaml"), sharded=True))
    template = render_objects(CONFIG, pipeline, schedules=False)["workflow-template.yaml"]
    if ARGO_SCHEMA.exists():
        assert argo_schema_errors(template) == []
    (dag,) = [t["dag"] for t in template["spec"]["templates"] if "dag" in t]
    tasks = {t["name"]: t for t in dag["tasks"]}
    containers = {t["name"]: t for t in template["spec"]["templates"] if "container" in t}
    # THEN each part task runs once per shard its plan task reported, the shard reaching the container as an input
    part = tasks["index-part-covid-ar"]
    assert part["withParam"] == (
        "{{=toJson(jsonpath(tasks['index-plan-covid-ar'].outputs.parameters.result, '$.summary.shards'))}}"
    )
    assert part["arguments"]["parameters"] == [{"name": "shard", "value": "{{item}}"}]
    args = containers["index-part-covid-ar"]["container"]["args"]
    assert args[-2:] == ["--shard", "{{inputs.parameters.shard}}"]
    assert containers["index-part-covid-ar"]["inputs"]["parameters"] == [{"name": "shard"}]
    # AND the gather waits for every part, and the split for every gather
    assert (tasks["index-plan-covid-ar"]["depends"], tasks["index-covid-ar"]["depends"]) == (
        "collect-covid-ar", "index-part-covid-ar")  # fmt: skip
    assert containers["index-covid-ar"]["container"]["args"][-2:] == ["--shard", "gather"]
    assert set(tasks["split"]["depends"].split(" && ")) == {f"index-{d.name}" for d in load_spec(
        REPO_ROOT / "examples/thoracic.yaml").datasets}  # fmt: skip


def test_a_sharded_spec_fans_each_collect_out_over_its_plans_shards_before_its_index():
    # GIVEN the real-data example, sharded
    pipeline = spec_pipeline(replace(load_spec(REPO_ROOT / "examples/thoracic.yaml"), sharded=True))
    template = render_objects(CONFIG, pipeline, schedules=False)["workflow-template.yaml"]
    if ARGO_SCHEMA.exists():
        assert argo_schema_errors(template) == []
    (dag,) = [t["dag"] for t in template["spec"]["templates"] if "dag" in t]
    tasks = {t["name"]: t for t in dag["tasks"]}
    containers = {t["name"]: t for t in template["spec"]["templates"] if "container" in t}
    # THEN the collect part runs once per shard its plan reported (TCIA batches of series), the shard an input
    part = tasks["collect-part-covid-ar"]
    assert part["withParam"] == (
        "{{=toJson(jsonpath(tasks['collect-plan-covid-ar'].outputs.parameters.result, '$.summary.shards'))}}"
    )
    assert containers["collect-part-covid-ar"]["container"]["args"][-2:] == ["--shard", "{{inputs.parameters.shard}}"]
    # AND the plan starts the DAG, the gather waits for every part, and the index plan for the gather
    assert "depends" not in tasks["collect-plan-covid-ar"] or not tasks["collect-plan-covid-ar"]["depends"]
    assert tasks["collect-covid-ar"]["depends"] == "collect-part-covid-ar"
    assert containers["collect-covid-ar"]["container"]["args"][-2:] == ["--shard", "gather"]
    assert tasks["index-plan-covid-ar"]["depends"] == "collect-covid-ar"
