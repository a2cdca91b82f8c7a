"""A pipeline spec (``irmsia run|render|submit --spec FILE``): several datasets, each from its own source, merged
into one split, one training and one registered model, as one DAG.

The file is read and validated once, here: every key is an option of the stage (or collect source) it configures,
read off that stage's own option declarations (``jobs.core.settings``), so a spec accepts exactly what the stage's
flags accept and no schema is written twice. An unknown key or a bad value is a ``UsageError`` naming the key's path
(``datasets[1].max_patients``). The spec becomes a ``pipeline.dag.Pipeline`` whose per-dataset stages
(``collect-<name>``, ``index-<name>``) fan out and join at the merged split; the local runner and the Argo renderer
both take that Pipeline, so ``irmsia run --spec`` and the rendered WorkflowTemplate run the same DAG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from jobs.collect.sources import SOURCES, options_types
from jobs.core.errors import UsageError
from jobs.core.paths import check_dns_label, check_name
from jobs.core.settings import Option, Options, check_value, convert, options_of
from jobs.core.urls import public_url
from jobs.stages import stage as stage_entry
from pipeline.dag import (
    PIPELINE,
    SHARD,
    SHARED_DESCRIPTIONS,
    TRAIN_CV,
    Parameter,
    Pipeline,
    StageSpec,
    cross_validation_tasks,
)

SPEC_KEYS = ("name", "sharded", "datasets", "index", "split", "train", "register")
RUN_ID = "run_id"
"""A workflow parameter of a spec's pipeline: train derives it from its cache key and hands it to register."""
CV_ID = "cv_id"
"""The other: ``train-cv`` seals the folds' aggregate under it and hands it to register ("" without folds)."""
MAX_DATASET_NAME = 63 - len("collect-plan-")
"""A dataset's name names its tasks (``collect-<name>``, ``collect-plan-<name>``), which are DNS-1123 labels."""
RESERVED: dict[str, tuple[str, ...]] = {
    "collect": ("source", "dataset", "shard"),
    "index": ("dataset", "shard"),
    "split": ("dataset", "merge"),
    "train": ("dataset", "fold", "aggregate_folds"),
    "register": (RUN_ID, CV_ID),
}
"""Options a spec sets itself (from the dataset's name, ``merge_as``, the run train made), never given as keys."""


@dataclass(frozen=True, kw_only=True)
class StageOptions:
    """One stage's options from a spec: option name -> typed value, each checked by the option itself."""

    stage: str
    values: dict[str, Any] = field(default_factory=dict)
    groups: tuple[type[Options], ...] = ()

    def argv(self) -> list[str]:
        """The stage's flags for these values, in the order the options are declared."""
        by_name = {o.name: o for g in self.groups for o in options_of(g)}
        args: list[str] = []
        for name, value in self.values.items():
            args += [by_name[name].flag or "", _text(value)]
        return args


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """One dataset of a spec: its name in the store, its source and that source's options."""

    name: str
    source: str
    collect: StageOptions
    index: StageOptions
    """Index options for this dataset alone, over the spec's ``index`` section."""


@dataclass(frozen=True, kw_only=True)
class PipelineSpec:
    """A validated spec: datasets, the merged split's name, and the options of index, split, train and register."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    merge_as: str
    sharded: bool = False
    """Collect and index each dataset as planned shards (``collect-plan-<d>`` -> ``collect-part-<d>`` per shard ->
    ``collect-<d>``, ``jobs/collect/shards.py``; ``index-plan-<d>`` -> ``index-part-<d>`` -> ``index-<d>``,
    ``jobs/index/shards.py``) instead of one task each."""
    index: StageOptions
    split: StageOptions
    train: StageOptions
    register: StageOptions

    @property
    def run_id(self) -> str:
        return str(self.train.values.get(RUN_ID, ""))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise UsageError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data


def _check_text(opt: Option, text: str, where: str) -> None:
    """A value that would change meaning once rendered: template braces, or credentials in a rendered file."""
    if "{" in text or "}" in text:
        raise UsageError(f"{where} {text!r}: braces are not allowed (they are template syntax in the DAG and Argo)")
    if opt.secret and public_url(text) != text:
        raise UsageError(
            f"{where}: the value holds credentials, and a spec is rendered into Argo YAML; give a URL without them "
            f"and the credentials in {opt.env or 'the environment'}"
        )


def _options(
    data: Any, stage: str, groups: Sequence[type[Options]], where: str, *, allow: Sequence[str] = ()
) -> StageOptions:
    """Each key of ``data`` as an option of ``groups`` (``image-size`` or ``image_size``), converted and checked by
    that option; an unknown key, a key the spec sets itself or a bad value raises naming ``where.key``."""
    reserved = set(RESERVED.get(stage, ())) - set(allow)
    known = {o.name: o for g in groups for o in options_of(g) if o.flag and o.name not in reserved}
    values: dict[str, Any] = {}
    for key, raw in _mapping(data, where).items():
        name = str(key).replace("-", "_")
        path = f"{where}.{key}"
        if name not in known:
            raise UsageError(f"{path}: unknown key; valid keys: {', '.join(sorted(known))}")
        opt = known[name]
        try:
            value = convert(opt, raw)
            check_value(opt, value)
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from exc
        _check_text(opt, _text(value), path)
        values[name] = value
    return StageOptions(stage=stage, values=values, groups=tuple(groups))


ASSUMED_ENVIRONMENT = {"KAGGLE_USERNAME": "spec-check", "KAGGLE_KEY": "spec-check"}
"""What the checks of a spec assume of the environment the stages will run in: credentials come from there (a
Secret in a pod), never from the spec, so a spec is checked (and rendered) on a machine that holds none."""


def _stage_check(stage: str, argv: list[str], where: str) -> None:
    """The stage's own parse of the spec's arguments: its cross-option checks and required options."""
    try:
        stage_entry(stage).settings_class().parse(argv, ASSUMED_ENVIRONMENT)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from exc


def _dataset(data: Any, where: str) -> DatasetSpec:
    entry = dict(_mapping(data, where))
    for key in ("name", "source"):
        if key not in entry:
            raise UsageError(f"{where}.{key}: required (each dataset names itself and its source)")
    name, source = entry.pop("name"), entry.pop("source")
    if not isinstance(name, str):
        raise UsageError(f"{where}.name: expected a string, got {name!r}")
    try:
        check_name(name, f"{where}.name")
        check_dns_label(name, f"{where}.name")
    except UsageError as exc:
        raise UsageError(f"{exc} (it names the dataset's tasks)") from exc
    if len(name) > MAX_DATASET_NAME:
        raise UsageError(f"{where}.name {name!r}: use at most {MAX_DATASET_NAME} characters (it names its tasks)")
    if source not in SOURCES:
        raise UsageError(f"{where}.source {source!r}: use one of {', '.join(SOURCES)}")
    index_data = entry.pop("index", None)
    index = _options(index_data, "index", (stage_entry("index").settings_class(),), f"{where}.index")
    collect = stage_entry("collect").settings_class()
    options = _options(entry, "collect", (options_types()[source], collect), where)
    _stage_check("collect", ["--source", source, "--dataset", name, *options.argv()], where)
    return DatasetSpec(name=name, source=source, collect=options, index=index)


def parse_spec(data: Any, where: str = "spec") -> PipelineSpec:
    """A spec from parsed YAML; ``UsageError`` naming the key path of the first problem."""
    top = _mapping(data, where)
    if unknown := sorted(set(map(str, top)) - set(SPEC_KEYS)):
        raise UsageError(f"{where}: unknown keys {unknown}; known keys are {list(SPEC_KEYS)}")
    name = top.get("name")
    if not isinstance(name, str):
        raise UsageError(f"{where}.name: required, a string (the pipeline's name: irmsia-<name>)")
    check_dns_label(f"irmsia-{name}", f"{where}.name")
    datasets = top.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise UsageError(f"{where}.datasets: required, a list of at least one dataset")
    parsed = tuple(_dataset(d, f"{where}.datasets[{i}]") for i, d in enumerate(datasets))
    names = [d.name for d in parsed]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise UsageError(f"{where}.datasets: {dupes} named more than once; give each dataset its own name")

    split_data = dict(_mapping(top.get("split"), f"{where}.split"))
    merge_as = split_data.pop("merge_as", split_data.pop("merge-as", names[0] if len(names) == 1 else None))
    if merge_as is None:
        raise UsageError(f"{where}.split.merge_as: required with several datasets (the merged dataset's name)")
    if not isinstance(merge_as, str):
        raise UsageError(f"{where}.split.merge_as: expected a string, got {merge_as!r}")
    check_name(merge_as, f"{where}.split.merge_as")
    if len(names) > 1 and merge_as in names:
        raise UsageError(f"{where}.split.merge_as {merge_as!r}: a dataset has that name; name the merge apart")

    def section(stage: str, data: Any, **kw: Any) -> StageOptions:
        return _options(data, stage, (stage_entry(stage).settings_class(),), f"{where}.{stage}", **kw)

    sharded = top.get("sharded", False)
    if not isinstance(sharded, bool):
        raise UsageError(f"{where}.sharded: expected true or false, got {sharded!r}")
    spec = PipelineSpec(
        name=name,
        sharded=sharded,
        datasets=parsed,
        merge_as=merge_as,
        index=section("index", top.get("index")),
        split=section("split", split_data),
        train=section("train", top.get("train")),
        register=section("register", top.get("register")),
    )
    # each stage's own checks on what it will be run with (a required --model-name, ratios that sum to 1 …)
    run_id = spec.run_id or "spec-check"
    for dataset in spec.datasets:
        _stage_check("index", _index_args(spec, dataset), f"{where}.index")
    _stage_check("split", _split_args(spec), f"{where}.split")
    _stage_check("train", [*_train_args(spec)[:-2], "--run-id", run_id], f"{where}.train")
    _stage_check("register", _register_args(spec, run_id), f"{where}.register")
    return spec


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec file (exit 2 naming the file and key on any problem)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"--spec {path}: no such file; see examples/ for specs to start from") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--spec {path}: cannot read it ({exc})") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"--spec {path}: not valid YAML ({exc})") from exc
    return parse_spec(data, str(path))


# -- the DAG -----------------------------------------------------------------------------------------------------
def _flag_of(stage: str, parameter: str) -> str:
    """The flag of ``stage``'s option that carries workflow parameter ``parameter`` (train's ``--run-id``)."""
    return next(o.flag for o in options_of(stage_entry(stage).settings_class()) if o.parameter == parameter and o.flag)


def _index_args(spec: PipelineSpec, dataset: DatasetSpec) -> list[str]:
    merged = replace(spec.index, values={**spec.index.values, **dataset.index.values})
    return ["--dataset", dataset.name, *merged.argv()]


def _split_args(spec: PipelineSpec) -> list[str]:
    names = sorted(d.name for d in spec.datasets)
    merge = [] if names == [spec.merge_as] else ["--merge", ",".join(names)]
    return ["--dataset", spec.merge_as, *merge, *spec.split.argv()]


def _train_args(spec: PipelineSpec) -> list[str]:
    given = {k: v for k, v in spec.train.values.items() if k != RUN_ID}
    own = replace(spec.train, values=given)
    return ["--dataset", spec.merge_as, *own.argv(), _flag_of("train", RUN_ID), "{" + RUN_ID + "}"]


def _register_args(spec: PipelineSpec, run_id: str = "{" + RUN_ID + "}") -> list[str]:
    return [_flag_of("register", RUN_ID), run_id, *spec.register.argv()]


def _task(kind: str, name: str, args: list[str], depends: tuple[str, ...], **fields: str) -> StageSpec:
    """The DAG's stage ``kind`` as task ``name`` with these arguments (its image, resources, role unchanged)."""
    base = PIPELINE.stage(kind)
    output = base.output_prefix.format_map({**{k: "{" + k + "}" for k in ("dataset", RUN_ID)}, **fields})
    entry = stage_entry(kind)
    return replace(
        base,
        name=name,
        kind=kind,
        args=(*args, *entry.fixed_args),
        depends=depends,
        output_prefix=output,
    )


def _index_tasks(spec: PipelineSpec, dataset: DatasetSpec) -> list[StageSpec]:
    """``index-<d>`` after ``collect-<d>``; sharded: its plan, one part per planned shard, and the gather, which
    is ``index-<d>`` (the task the split waits for) and seals the same index an unsharded run does."""
    name, args, collect = dataset.name, _index_args(spec, dataset), f"collect-{dataset.name}"
    if not spec.sharded:
        return [_task("index", f"index-{name}", args, (collect,), dataset=name)]
    plan, part = f"index-plan-{name}", f"index-part-{name}"
    return [
        _task("index", plan, [*args, "--shard", "plan"], (collect,), dataset=name),
        replace(_task("index", part, [*args, "--shard", "{" + SHARD + "}"], (plan,), dataset=name), fan_out=plan),
        _task("index", f"index-{name}", [*args, "--shard", "gather"], (part,), dataset=name),
    ]


def _collect_tasks(spec: PipelineSpec, dataset: DatasetSpec) -> list[StageSpec]:
    """``collect-<d>``; sharded: its plan, one part per planned shard (TCIA series, NIH archives), and the gather,
    which is ``collect-<d>`` (the task the index waits for) and seals the same dataset an unsharded collect does."""
    name = dataset.name
    args = ["--source", dataset.source, "--dataset", name, *dataset.collect.argv()]
    if not spec.sharded:
        return [_task("collect", f"collect-{name}", args, (), dataset=name)]
    plan, part = f"collect-plan-{name}", f"collect-part-{name}"
    return [
        _task("collect", plan, [*args, "--shard", "plan"], (), dataset=name),
        replace(_task("collect", part, [*args, "--shard", "{" + SHARD + "}"], (plan,), dataset=name), fan_out=plan),
        _task("collect", f"collect-{name}", [*args, "--shard", "gather"], (part,), dataset=name),
    ]


def spec_pipeline(spec: PipelineSpec) -> Pipeline:
    """The spec as a DAG: ``collect-<d>`` -> ``index-<d>`` for each dataset, all joined at the merged ``split``,
    then ``train``, the fold trainings and their aggregate (``train-fold``, ``train-cv``: none without
    ``split.folds``) and ``register``; ``run_id`` and ``cv_id`` are its parameters (handed on to register)."""
    stages: list[StageSpec] = []
    for dataset in spec.datasets:
        stages += _collect_tasks(spec, dataset)
        stages += _index_tasks(spec, dataset)
    indexes = tuple(f"index-{d.name}" for d in spec.datasets)
    stages.append(_task("split", "split", _split_args(spec), indexes, dataset=spec.merge_as))
    train = _task("train", "train", _train_args(spec), ("split",))
    stages += [train, *cross_validation_tasks(train, "split")]
    register = [*_register_args(spec), _flag_of("register", CV_ID), "{" + CV_ID + "}"]
    stages.append(_task("register", "register", register, ("train", TRAIN_CV),
                        model_name=str(spec.register.values.get("model_name", ""))))  # fmt: skip
    run_id = Parameter(name=RUN_ID, default=spec.run_id, description=SHARED_DESCRIPTIONS[RUN_ID])
    cv_id = Parameter(name=CV_ID, default="", description=PIPELINE.parameter(CV_ID).description)
    return Pipeline(name=f"irmsia-{spec.name}", parameters=(run_id, cv_id), stages=tuple(stages))
