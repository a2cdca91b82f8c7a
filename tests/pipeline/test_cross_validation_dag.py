"""Cross-validation in the DAG: ``train-fold`` fans out over the folds split reports (the sharded collect and index's
``withParam`` mechanism), ``train-cv`` aggregates them on a CPU node and register takes both runs' ids; the rendered
WorkflowTemplate validates against Argo v4.1.2's CRDs and expands to one pod per fold, none without folds."""

from __future__ import annotations

import json

import pytest

from pipeline.argo.render import render_objects
from pipeline.config import load_config
from pipeline.dag import FOLDS, PIPELINE, SHARD, TRAIN_CV, TRAIN_FOLD
from pipeline.runner import expand
from pipeline.spec import load_spec, spec_pipeline
from tests.support.argo_expressions import replace
from tests.support.argo_schema import ARGO_SCHEMA, REPO_ROOT, SKIP_REASON, argo_schema_errors

CONFIG = load_config(REPO_ROOT / "irmsia.yaml")
PIPELINES = {"default": PIPELINE, "spec": spec_pipeline(load_spec(REPO_ROOT / "examples/demo-merged.yaml"))}


def _split_result(folds: list[int]) -> str:
    return json.dumps({"stage": "split", "summary": {"folds": folds, "rows": {"train": 30}}})


@pytest.mark.parametrize("name", PIPELINES)
def test_fold_trainings_fan_out_over_the_splits_folds_and_join_at_the_aggregate_before_register(name):
    pipeline = PIPELINES[name]
    train, fold, cv, register = (pipeline.stage(n) for n in ("train", TRAIN_FOLD, TRAIN_CV, "register"))
    # THEN each fold trains with train's arguments, its fold from the fan-out, and a run id of its own (derived)
    assert (fold.fan_out, fold.fan_field, fold.depends) == ("split", FOLDS, ("split",))
    without_run_id = tuple(a for a in train.args if a not in ("--run-id", "{run_id}"))
    assert fold.args == (*without_run_id, "--fold", "{" + SHARD + "}")
    assert (fold.stage, fold.gpu, fold.outputs) == ("train", train.gpu, ())
    # AND the aggregate waits for every fold, runs on a CPU image and hands on its cv id, which register takes
    assert (cv.depends, cv.gpu, cv.image, cv.outputs) == ((TRAIN_FOLD,), False, train.cpu_image, ("cv_id",))
    assert cv.args == (*without_run_id, "--aggregate-folds")
    assert set(register.depends) == {"train", TRAIN_CV}
    assert pipeline.handed_on(register) == {"run_id": "train", "cv_id": TRAIN_CV}


def test_folds_is_a_workflow_parameter_that_reaches_the_split_only():
    assert PIPELINE.parameter("folds").default == "0"
    assert [s.name for s in PIPELINE.stages if "folds" in s.parameters] == ["split"]


@pytest.mark.parametrize("folds", [[0, 1, 2], []])
def test_the_local_runner_expands_one_training_per_fold_and_none_without_folds(folds):
    stage = PIPELINE.stage(TRAIN_FOLD)
    runs = expand(stage, json.loads(_split_result(folds)))
    assert [r.name for r in runs] == [f"{TRAIN_FOLD}-{k}" for k in range(1, len(folds) + 1)]
    assert [r.args[r.args.index("--fold") + 1] for r in runs] == [str(f) for f in folds]


@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize("folds", [[0, 1, 2], [0, 1, 2, 3, 4], []])
def test_the_template_validates_and_argo_expands_one_fold_pod_per_fold(name, folds):
    # GIVEN the rendered WorkflowTemplate
    template = render_objects(CONFIG, PIPELINES[name], schedules=False)["workflow-template.yaml"]
    if ARGO_SCHEMA.exists():
        assert argo_schema_errors(template) == []
    else:
        pytest.skip(SKIP_REASON)
    (dag,) = [t["dag"] for t in template["spec"]["templates"] if "dag" in t]
    tasks = {t["name"]: t for t in dag["tasks"]}
    containers = {t["name"]: t for t in template["spec"]["templates"] if "container" in t}
    fold = tasks[TRAIN_FOLD]
    # WHEN the controller evaluates the fold task's withParam after split reported its folds
    items = json.loads(replace(fold["withParam"], {"tasks.split.outputs.parameters.result": _split_result(folds)}))
    # THEN it runs once per fold (none without folds: Argo skips the task), each fold an input of its container
    assert items == folds
    assert fold["arguments"]["parameters"] == [{"name": SHARD, "value": "{{item}}"}]
    args = containers[TRAIN_FOLD]["container"]["args"]
    assert args[args.index("--fold") + 1] == "{{inputs.parameters.shard}}"
    # AND the aggregate follows the folds (a skipped task satisfies Argo's depends), register follows both
    assert (tasks[TRAIN_FOLD]["depends"], tasks[TRAIN_CV]["depends"]) == ("split", TRAIN_FOLD)
    assert set(tasks["register"]["depends"].split(" && ")) == {"train", TRAIN_CV}
    assert "nodeSelector" not in containers[TRAIN_CV] or containers[TRAIN_CV]["nodeSelector"] == containers[
        "register"].get("nodeSelector")  # fmt: skip
    # AND register's --cv is the id train-cv reports
    (cv_arg,) = [p for p in tasks["register"]["arguments"]["parameters"] if p["name"] == "cv_id"]
    result = json.dumps({"stage": "train", "summary": {"cv_id": "demo-cv-0123456789"}})
    assert replace(cv_arg["value"], {"tasks.train-cv.outputs.parameters.result": result}) == "demo-cv-0123456789"
