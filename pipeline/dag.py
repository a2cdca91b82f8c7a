"""The pipeline, defined once as data: parameters, stages, their entrypoints, arguments and dependencies.

The local runner executes this definition; the Hera renderer turns the same definition into Argo objects.
Nothing else may define the stage order or a stage's arguments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


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

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", self.name):
            raise ValueError(f"stage name {self.name!r} must be a DNS-1123 label")

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the parameters the stage's arguments use, in order of first use."""
        seen: dict[str, None] = {}
        for template in self.args:
            for name in _PLACEHOLDER.findall(template):
                seen.setdefault(name, None)
        return tuple(seen)

    def argv(self, values: Mapping[str, str]) -> list[str]:
        """The concrete arguments for ``values``: used by the local runner; Argo gets ``{{…}}`` instead."""
        return [render_template(t, values) for t in self.args]


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``{name}`` in ``template`` by ``values[name]``."""
    try:
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
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
            if unknown := set(stage.parameters) - known:
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

    def downstream_of(self, name: str) -> list[StageSpec]:
        """``name`` and every stage after it in ``order()`` (for ``irmsia run --from``)."""
        order = self.order()
        index = [s.name for s in order].index(self.stage(name).name)
        return order[index:]


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        name="source",
        default="demo",
        description="where collect gets data",
        enum=("demo", "local", "url", "tcia", "kaggle", "nih"),
    ),
    Parameter(name="dataset", default="demo", description="dataset name in the store (raw/<dataset>/…)"),
    Parameter(name="path", default="", description="local folder for --source local"),
    Parameter(name="url", default="", description="file or archive URL for --source url"),
    Parameter(name="ref", default="", description="dataset reference: Kaggle owner/slug or TCIA collection"),
    Parameter(name="labels", default="", description="labels CSV (store key or path) for the index stage"),
    Parameter(name="ratios", default="0.7,0.15,0.15", description="train,val,test fractions"),
    Parameter(name="seed", default="42", description="seed for the split and training"),
    Parameter(
        name="split_from",
        default="stratified",
        description="stratified (grouped by patient) or official (the dataset's own split)",
        enum=("stratified", "official"),
    ),
    Parameter(name="merge", default="", description="comma-separated indexed datasets to merge into --dataset"),
    # small-cnn x 8 epochs: the demo reaches val accuracy >= 0.95 in ~15 s on 2 CPU cores (densenet121 for real data).
    Parameter(name="model", default="densenet121", description="MONAI network for the train stage"),
    Parameter(name="epochs", default="5", description="maximum training epochs"),
    Parameter(name="image_size", default="64", description="square input size in pixels"),
    Parameter(name="batch_size", default="16", description="training batch size"),
    Parameter(name="run_id", default="", description="training run id (runs/<run-id>/); generated when empty"),
    Parameter(name="model_name", default="demo-classifier", description="registry model name (DNS-1123 label)"),
)

STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        name="collect",
        entrypoint="irmsia-collect",
        module="jobs.collect",
        extra="collect",
        args=(
            "--source", "{source}", "--dataset", "{dataset}",
            "--path", "{path}", "--url", "{url}", "--ref", "{ref}",
        ),
        output_prefix="raw/{dataset}/",
    ),
    StageSpec(
        name="index",
        entrypoint="irmsia-index",
        module="jobs.index",
        extra="index",
        args=("--dataset", "{dataset}", "--labels", "{labels}"),
        depends=("collect",),
        output_prefix="index/{dataset}/",
    ),
    StageSpec(
        name="split",
        entrypoint="irmsia-split",
        module="jobs.split",
        extra="split",
        args=(
            "--dataset", "{dataset}", "--ratios", "{ratios}", "--seed", "{seed}",
            "--split-from", "{split_from}", "--merge", "{merge}",
        ),
        depends=("index",),
        output_prefix="splits/{dataset}/",
    ),
    StageSpec(
        name="train",
        entrypoint="irmsia-train",
        module="jobs.train",
        extra="train",
        args=(
            "--dataset", "{dataset}", "--run-id", "{run_id}", "--model", "{model}",
            "--epochs", "{epochs}", "--image-size", "{image_size}", "--batch-size", "{batch_size}",
            "--seed", "{seed}", "--resume", "auto",
        ),
        depends=("split",),
        output_prefix="runs/{run_id}/",
        gpu=True,
    ),
    StageSpec(
        name="register",
        entrypoint="irmsia-register",
        module="jobs.register",
        extra="register",
        args=("--run", "{run_id}", "--model-name", "{model_name}"),
        depends=("train",),
        output_prefix="registry/{model_name}/",
    ),
)  # fmt: skip

PIPELINE = Pipeline(name="irmsia-pipeline", parameters=PARAMETERS, stages=STAGES)
