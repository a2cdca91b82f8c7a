"""The pipeline as data: parameters, stages, their entrypoints, arguments and dependencies.

``PIPELINE`` is derived, not written: the stages and their order come from the stage registry (``jobs.stages``),
each stage's arguments and the workflow parameters from the options the stage declares (``jobs.core.settings``:
an option with a ``parameter`` is passed by the DAG as ``--flag {parameter}``). The local runner executes this
definition; the Hera renderer turns the same definition into Argo objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from jobs.core.settings import REQUIRED, Option, options_of
from jobs.stages import STAGES, StageEntry

PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
SHARD = "shard"
"""The placeholder a fan-out task's arguments take each planned item in (``--shard {shard}``, ``--fold {shard}``)."""
SHARDS = "shards"
"""The result-summary field a collect or index plan lists its shards in (``["1/N", …]``)."""
FOLDS = "folds"
"""The result-summary field split lists its cross-validation folds in (``[0, …, K-1]``; empty without ``--folds``)."""
TRAIN_FOLD = "train-fold"
"""The fan-out task of cross-validation: one training per fold, on every other fold, validated on its own."""
TRAIN_CV = "train-cv"
"""The task that aggregates the fold trainings' metrics (mean ± sd) into ``crossval/<cv-id>/cv.json``."""


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """A pipeline parameter: a workflow parameter in Argo, a flag of ``irmsia run`` locally."""

    name: str
    """Snake-case name used in argument templates (``{dataset}``); ``irmsia run`` takes ``--<kebab-name>``."""
    default: str
    """Default value as a string ("" means unset: the stage ignores the flag)."""
    description: str
    """One line for ``--help`` and the Argo UI."""
    enum: tuple[str, ...] = ()
    """Allowed values, if the parameter is a choice."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"parameter name {self.name!r} must be snake_case")
        if self.enum and self.default not in self.enum:
            raise ValueError(f"parameter {self.name}: default {self.default!r} not in {self.enum}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """One stage: which console script runs, with which arguments, after which stages."""

    name: str
    """Stage name; also the Argo DAG task name."""
    kind: str = ""
    """The registry stage it runs (``jobs.stages``: resources, metrics labels, credentials), when the task is named
    apart from it (a spec's ``collect-<dataset>``); "" means ``name``."""
    entrypoint: str
    """Console script in the stage's image (``irmsia-index``)."""
    module: str
    """Python module that runs the same entrypoint (``python -m jobs.index``)."""
    args: tuple[str, ...]
    """Argument templates; ``{param}`` is replaced by the parameter's value."""
    depends: tuple[str, ...] = ()
    """Stages that must succeed first."""
    extra: str = ""
    """The pip extra the stage's image installs (``pip install irmsia-pipeline[<extra>]``)."""
    output_prefix: str = ""
    """Template of the prefix the stage seals with ``_SUCCESS.json`` (for people and summaries)."""
    gpu: bool = False
    """Whether the stage runs on the GPU node pool."""
    outputs: tuple[str, ...] = ()
    """Summary fields of the stage's result that later stages read as parameters when those are left empty."""
    exported_metrics: tuple[str, ...] = ()
    """Summary fields the Argo controller exports as gauges when the stage succeeds."""
    image: str = ""
    """The stage's image name (``irmsia-train``; no registry, no tag: ``jobs.stages.image_ref`` adds them)."""
    cpu_image: str = ""
    """The image it runs where there is no GPU (a GPU stage's ``-cpu`` variant; the same image otherwise)."""
    reads_input_data: bool = False
    """It reads input folders (in a pod: the data volume)."""
    downloads: bool = False
    """It downloads from the dataset sources (in a pod: the mirror URLs)."""
    keeps_cache: bool = False
    """Its local cache is kept across a retried pod (in a pod: the workflow's cache PVC)."""
    artifacts: tuple[str, ...] = ()
    """Files it leaves beside its result file, exposed as Argo output artifacts (train's ``report.html``)."""
    gpu_processes_flag: str = ""
    """The flag that takes the pod's GPU count (one process per GPU) when the GPU pool gives it several; "" for
    none (``jobs.stages.StageEntry.gpu_processes_flag``)."""
    fan_out: str = ""
    """The plan task whose result summary's ``fan_field`` list (``shards``: ``["1/N", …]``) this task fans out over:
    one run per item, ``{shard}`` in its arguments taking each (Argo: ``withParam``; locally the runner expands
    it); "" for none. An empty list runs nothing (split without ``--folds``: no fold trainings)."""
    fan_field: str = SHARDS
    """The field of the plan task's result summary that lists the items: ``shards``, or split's ``folds``."""
    secret_flags: tuple[tuple[str, str], ...] = ()
    """``(flag, environment variable)`` of options whose value may hold credentials: passed in the variable,
    never on a command line (``pipeline.secret_args``)."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", self.name):
            raise ValueError(f"stage name {self.name!r} must be a DNS-1123 label")

    @property
    def stage(self) -> str:
        """The registry stage this task runs (``collect`` for a spec's ``collect-<dataset>``)."""
        return self.kind or self.name

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the parameters the stage's arguments use, in order of first use."""
        seen: dict[str, None] = {}
        for template in self.args:
            for name in PLACEHOLDER.findall(template):
                seen.setdefault(name, None)
        return tuple(seen)

    def parameters_of(self, flag: str) -> tuple[str, ...]:
        """The parameters in the argument template that follows ``flag``."""
        args = list(self.args)
        return tuple(PLACEHOLDER.findall(args[args.index(flag) + 1])) if flag in args[:-1] else ()

    def argv(self, values: Mapping[str, str]) -> list[str]:
        """The concrete arguments for ``values``: used by the local runner; Argo gets ``{{…}}`` instead."""
        return [render_template(t, values) for t in self.args]


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``{name}`` in ``template`` by ``values[name]``."""
    try:
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    except KeyError as exc:
        raise ValueError(f"argument template {template!r} uses unknown parameter {exc.args[0]!r}") from exc


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """A named DAG of stages over a set of parameters."""

    name: str
    parameters: tuple[Parameter, ...]
    stages: tuple[StageSpec, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in {names}")
        known = {p.name for p in self.parameters}
        for stage in self.stages:
            if stage.fan_out and stage.fan_out not in stage.depends:
                raise ValueError(f"stage {stage.name} fans out over {stage.fan_out}, which it must depend on")
            if unknown := set(stage.parameters) - known - ({SHARD} if stage.fan_out else set()):
                raise ValueError(f"stage {stage.name} uses undeclared parameters {sorted(unknown)}")
            if missing := set(stage.depends) - set(names):
                raise ValueError(f"stage {stage.name} depends on unknown stages {sorted(missing)}")
        self.order()  # raises on cycles

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages are {', '.join(s.name for s in self.stages)}")

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> dict[str, str]:
        return {p.name: p.default for p in self.parameters}

    def order(self) -> list[StageSpec]:
        """Stages in a topological order (stable: declaration order among ready stages)."""
        done: list[str] = []
        pending = list(self.stages)
        while pending:
            ready = [s for s in pending if set(s.depends) <= set(done)]
            if not ready:
                raise ValueError(f"cycle among stages {[s.name for s in pending]}")
            done.append(ready[0].name)
            pending.remove(ready[0])
        return [self.stage(n) for n in done]

    def handed_on(self, stage: StageSpec) -> dict[str, str]:
        """Parameter -> the nearest earlier stage whose result hands it on (``outputs``), for ``stage``'s
        parameters: in Argo the stage reads that stage's output, locally the runner fills an empty value."""
        order = self.order()
        earlier = order[: [s.name for s in order].index(stage.name)]
        return {p: s.name for p in stage.parameters for s in reversed(earlier) if p in s.outputs}

    def downstream_of(self, name: str) -> list[StageSpec]:
        """``name`` and every stage after it in ``order()`` (for ``irmsia run --from``)."""
        order = self.order()
        index = [s.name for s in order].index(self.stage(name).name)
        return order[index:]


PIPELINE_DEFAULTS: dict[str, str] = {"dataset": "demo", "model_name": "demo-classifier"}
"""Defaults of parameters whose options have none (required by the stage): what a bare ``irmsia run`` runs."""
SHARED_DESCRIPTIONS: dict[str, str] = {
    "dataset": "dataset name in the store (raw/<dataset>/…)",
    "seed": "seed for the split and training",
    "run_id": "training run id (runs/<run-id>/); derived from the training's cache key when empty",
}
"""The description of a parameter that several stages read, where each stage's own help would say less."""


def _text(value: Any) -> str:
    """An option's default as a workflow parameter value ("" for none)."""
    if value is None or value is REQUIRED:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def _stage_options(entry: StageEntry) -> list[tuple[Option, str]]:
    """The options of a stage that the DAG passes (those with a workflow parameter), one per flag, each with its
    parameter's default: the option's own, or "" for an option of a sub-group (a collect source's options apply
    to one source only, so the DAG leaves them unset unless the run sets them)."""
    seen: dict[str, tuple[Option, str]] = {}
    own, *others = entry.settings_class().option_groups()
    for group in (own, *others):
        for opt in options_of(group):
            if opt.parameter and opt.flag and opt.flag not in seen:
                default = _text(opt.default) if group is own else ""
                seen[opt.flag] = (opt, PIPELINE_DEFAULTS.get(opt.parameter, default))
    return list(seen.values())


def build_pipeline(entries: tuple[StageEntry, ...] = STAGES, name: str = "irmsia-pipeline") -> Pipeline:
    """The DAG from the stage registry and each stage's options: one parameter per distinct workflow parameter
    (stages sharing one must agree on its default), each stage passing its parameters as ``--flag {param}``."""
    parameters: dict[str, Parameter] = {}
    stages = []
    for entry in entries:
        args: list[str] = []
        secret: list[tuple[str, str]] = []
        for opt, default in _stage_options(entry):
            args += [opt.flag or "", "{" + (opt.parameter or "") + "}"]
            if opt.secret and opt.env and opt.flag:
                secret.append((opt.flag, opt.env))
            known = parameters.get(opt.parameter or "")
            if known is not None:
                if known.default != default and default and known.default:
                    raise ValueError(f"parameter {opt.parameter}: stage {entry.name} defaults it to {default!r}, "
                                     f"an earlier stage to {known.default!r}")  # fmt: skip
                if not known.default and default:
                    parameters[known.name] = replace(known, default=default)
                continue
            parameters[opt.parameter or ""] = Parameter(
                name=opt.parameter or "",
                default=default,
                description=SHARED_DESCRIPTIONS.get(opt.parameter or "", opt.help),
                # a sub-group's choice is unset ("") unless the run sets it, and "" means "not set" to every stage
                enum=("", *opt.choices) if opt.choices and not default else opt.choices,
            )
        stages.append(
            StageSpec(
                name=entry.name,
                entrypoint=entry.script,
                module=entry.module,
                args=(*args, *entry.fixed_args),
                depends=entry.depends,
                extra=entry.extra,
                output_prefix=entry.output,
                gpu=entry.gpu,
                outputs=entry.outputs,
                exported_metrics=entry.exported_metrics,
                image=entry.image(),
                cpu_image=entry.image(gpu=False),
                reads_input_data=entry.reads_input_data,
                downloads=entry.downloads,
                keeps_cache=entry.keeps_cache,
                artifacts=entry.artifacts,
                gpu_processes_flag=entry.gpu_processes_flag,
                secret_flags=tuple(secret),
            )
        )
    return Pipeline(name=name, parameters=tuple(parameters.values()), stages=tuple(stages))


def _without(args: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """``args`` without ``flag`` and the value that follows it."""
    out = list(args)
    if flag in out[:-1]:
        at = out.index(flag)
        del out[at : at + 2]
    return tuple(out)


def cross_validation_tasks(train: StageSpec, split: str, fold_flag: str = "--fold") -> tuple[StageSpec, StageSpec]:
    """``train-fold`` (one training per fold split reports, ``withParam`` over its ``summary.folds``; none without
    ``--folds``) and ``train-cv`` (their metrics' mean ± sd) beside ``train``, which trains the model registered.

    Both take train's arguments without ``--run-id``: each fold's run id derives from its cache key (the fold is
    in it), and ``train-cv`` finds the fold runs by the same derivation. The folds keep no cache volume: the run's
    one ReadWriteOnce PVC cannot be mounted by fold pods on several nodes at once. The aggregate runs on a CPU node
    and hands on ``cv_id`` (register records the folds)."""
    base = _without(train.args, "--run-id")
    fold = replace(train, name=TRAIN_FOLD, kind=train.stage, args=(*base, fold_flag, "{" + SHARD + "}"),
                   depends=(split,), fan_out=split, fan_field=FOLDS, outputs=(), exported_metrics=(),
                   keeps_cache=False, output_prefix="runs/")  # fmt: skip
    aggregate = replace(train, name=TRAIN_CV, kind=train.stage, args=(*base, "--aggregate-folds"),
                        depends=(TRAIN_FOLD,), outputs=("cv_id",), exported_metrics=(), gpu=False,
                        image=train.cpu_image, keeps_cache=False, artifacts=(),
                        output_prefix="crossval/{cv_id}/")  # fmt: skip
    return fold, aggregate


def with_cross_validation(pipeline: Pipeline, train: str = "train", register: str = "register") -> Pipeline:
    """``pipeline`` with ``train-fold`` and ``train-cv`` after the split ``train`` depends on, and ``register``
    waiting for both ``train`` and ``train-cv``."""
    base = pipeline.stage(train)
    (split,) = base.depends
    fold, aggregate = cross_validation_tasks(base, split)
    stages: list[StageSpec] = []
    for stage in pipeline.stages:
        if stage.name == register:
            stage = replace(stage, depends=(*stage.depends, TRAIN_CV))
        stages.append(stage)
        if stage.name == train:
            stages += [fold, aggregate]
    return replace(pipeline, stages=tuple(stages))


PIPELINE = with_cross_validation(build_pipeline())
