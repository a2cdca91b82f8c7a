"""The pipeline as data: validation of parameters and stages, stage order, cycles, and argument rendering."""

from __future__ import annotations

import pytest

from pipeline.dag import PIPELINE, Parameter, Pipeline, StageSpec, render_template


def stage(name, depends=(), args=()):
    return StageSpec(name=name, entrypoint=f"irmsia-{name}", module=f"jobs.{name}", args=tuple(args), depends=depends)


PARAMS = (
    Parameter(name="dataset", default="demo", description="d"),
    Parameter(name="seed", default="42", description="s"),
)


def test_the_pipeline_runs_collect_index_split_train_register_in_order():
    # WHEN the real pipeline is ordered
    order = [s.name for s in PIPELINE.order()]
    # THEN the stages come in dependency order
    assert order == ["collect", "index", "split", "train", "train-fold", "train-cv", "register"]
    for position, spec in enumerate(PIPELINE.order()):
        assert set(spec.depends) <= set(order[:position])


def test_every_stage_argument_renders_with_the_defaults():
    values = PIPELINE.defaults()
    for spec in PIPELINE.stages:
        argv = spec.argv({**values, "shard": "0"} if spec.fan_out else values)  # a fan-out's item comes from its plan
        assert not any("{" in a for a in argv), (spec.name, argv)
    assert PIPELINE.stage("split").argv(values) == [
        "--dataset", "demo", "--ratios", "0.7,0.15,0.15", "--seed", "42", "--merge", "", "--split-from", "stratified",
        "--task", "classification", "--min-per-class", "3", "--folds", "0",
    ]  # fmt: skip


def test_the_dag_is_derived_from_the_stage_registry_and_the_options():
    from jobs.stages import STAGES

    # THEN every registered stage is a task running its console script, after the stages it depends on (register
    # also after the cross-validation's aggregate, a train task like the fold trainings)
    registered = [s for s in PIPELINE.stages if not s.kind]
    assert [(s.name, s.entrypoint, s.depends[: len(e.depends)]) for s, e in zip(registered, STAGES, strict=True)] == [
        (e.name, e.script, e.depends) for e in STAGES
    ]
    assert {s.name: s.stage for s in PIPELINE.stages if s.kind} == {"train-fold": "train", "train-cv": "train"}
    # AND each option with a workflow parameter is passed as --flag {parameter}, shared parameters agreeing
    train = PIPELINE.stage("train")
    assert ("--epochs", "{epochs}") in zip(train.args, train.args[1:], strict=False)
    assert train.args[-2:] == ("--resume", "auto")
    assert PIPELINE.parameter("epochs").default == "10" and PIPELINE.parameter("seed").default == "42"
    assert PIPELINE.parameter("split_from").enum == ("stratified", "official")
    # AND a source's own options reach Argo, unset unless given (they apply to one source only)
    collect = PIPELINE.stage("collect")
    assert {"modality", "max_patients", "manifest", "collection", "archives"} <= set(collect.parameters)
    assert PIPELINE.parameter("max_patients").default == ""
    # AND the task reaches split and train as one parameter, the demo's dataset choice as its own (unset: "")
    assert ("--task", "{task}") in zip(train.args, train.args[1:], strict=False)
    split = PIPELINE.stage("split")
    assert ("--task", "{task}") in zip(split.args, split.args[1:], strict=False)
    assert ("--task", "{demo_task}") in zip(collect.args, collect.args[1:], strict=False)
    assert PIPELINE.parameter("task").default == "classification"
    assert PIPELINE.parameter("demo_task").enum[0] == "" and "volume" in PIPELINE.parameter("demo_task").enum


def test_parameters_that_stages_share_must_agree(monkeypatch):
    from dataclasses import dataclass

    from jobs.core.settings import StageSettings, option
    from jobs.stages import StageEntry
    from pipeline.dag import build_pipeline

    @dataclass(frozen=True, kw_only=True)
    class A(StageSettings):
        seed: int = option(1, parameter="seed", help="s")

    @dataclass(frozen=True, kw_only=True)
    class B(StageSettings):
        seed: int = option(2, parameter="seed", help="s")

    monkeypatch.setattr(StageEntry, "settings_class", lambda self: {"a": A, "b": B}[self.name])
    entries = tuple(StageEntry(name=n, summary="", settings="x:Y", extra="", output="") for n in ("a", "b"))
    with pytest.raises(ValueError, match="parameter seed: stage b defaults it to '2', an earlier stage to '1'"):
        build_pipeline(entries)


def test_order_follows_dependencies_not_declaration_and_is_stable():
    # GIVEN stages declared out of dependency order, with two independent ones
    pipeline = Pipeline(
        name="p",
        parameters=PARAMS,
        stages=(stage("train", depends=("split",)), stage("index"), stage("split", depends=("index",)), stage("b")),
    )
    # THEN each stage comes after what it depends on; among ready stages, declaration order decides
    assert [s.name for s in pipeline.order()] == ["index", "split", "train", "b"]
    # and downstream_of is the stage and every stage after it in that order
    assert [s.name for s in pipeline.downstream_of("split")] == ["split", "train", "b"]
    assert [s.name for s in pipeline.downstream_of("index")] == ["index", "split", "train", "b"]


@pytest.mark.parametrize(
    "stages, match",
    [
        ((stage("a", depends=("b",)), stage("b", depends=("a",))), r"cycle among stages \['a', 'b'\]"),
        ((stage("a", depends=("a",)),), r"cycle among stages \['a'\]"),
        ((stage("a"), stage("b", depends=("c",)), stage("c", depends=("b",))), r"cycle among stages \['b', 'c'\]"),
        ((stage("a"), stage("a")), r"duplicate stage names in \['a', 'a'\]"),
        ((stage("a", depends=("missing",)),), r"stage a depends on unknown stages \['missing'\]"),
        ((stage("a", args=("--x", "{nope}", "{seed}", "{other}")),), r"undeclared parameters \['nope', 'other'\]"),
    ],
    ids=["two-cycle", "self-cycle", "cycle-after-ok", "duplicate", "unknown-dependency", "undeclared-parameter"],
)
def test_invalid_pipelines_are_rejected(stages, match):
    with pytest.raises(ValueError, match=match):
        Pipeline(name="p", parameters=PARAMS, stages=stages)


def test_stage_parameters_are_listed_in_order_of_first_use():
    spec = stage("a", args=("--seed", "{seed}", "--name", "{dataset}-{seed}", "--literal", "x"))
    assert spec.parameters == ("seed", "dataset")


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{dataset}", "demo"),
        ("runs/{dataset}/{seed}/", "runs/demo/42/"),
        ("--x", "--x"),
        ("{Dataset}", "{Dataset}"),  # not a placeholder: parameter names are snake_case
        ("", ""),
    ],
)
def test_templates_render_values_verbatim(template, expected):
    assert render_template(template, {"dataset": "demo", "seed": "42"}) == expected


def test_rendered_values_are_not_rendered_again():
    # a value that looks like a placeholder is passed through, never expanded
    assert stage("a", args=("{dataset}",)).argv({"dataset": "{seed}", "seed": "1"}) == ["{seed}"]


def test_an_unknown_parameter_in_a_template_names_it():
    with pytest.raises(ValueError, match=r"argument template '--x=\{nope\}' uses unknown parameter 'nope'"):
        stage("a", args=("--x={nope}",)).argv({})


def test_empty_values_are_passed_as_empty_arguments():
    # Argo passes every flag; an unset parameter is an empty string the stage ignores
    assert stage("a", args=("--path", "{path}")).argv({"path": ""}) == ["--path", ""]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "Bad-Name"}, "must be snake_case"),
        ({"name": "1x"}, "must be snake_case"),
        ({"name": "mode", "default": "c", "enum": ("a", "b")}, r"parameter mode: default 'c' not in \('a', 'b'\)"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Parameter(**{"name": "x", "default": "a", "description": "d", **kwargs})


@pytest.mark.parametrize("name", ["Train", "train_1", "-a", ""])
def test_stage_names_must_be_dns_labels(name):
    with pytest.raises(ValueError, match="must be a DNS-1123 label"):
        stage(name)


def test_lookups_name_what_exists():
    assert Parameter(name="image_size", default="64", description="d").flag == "--image-size"
    assert PIPELINE.parameter("seed").default == "42"
    with pytest.raises(
        KeyError, match="no stage 'nope'; stages are collect, index, split, train, train-fold, train-cv, register"
    ):
        PIPELINE.stage("nope")
    with pytest.raises(KeyError):
        PIPELINE.downstream_of("nope")
    with pytest.raises(KeyError):
        PIPELINE.parameter("nope")
