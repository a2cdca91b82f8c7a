"""Why a stage would rerun: its cache key now against the one its sealed manifest holds, part by part.

A stage's cache key is the hash of its result-changing parameters, the content hashes of the sealed inputs it
reads and the code version (``jobs.core.manifest.compute_cache_key``), and its manifest records all three. So the
stage is *planned* exactly as a run would plan it (``STAGE.plan(settings, store)``: nothing is written) with the
parameters a run would pass (the DAG's arguments for the given values), and every part that differs is named:
``parameter epochs: 5 -> 2``, ``input splits/demo/: 1a2b… -> 9f8e…``, ``code version 0.1.0 -> 0.2.0``. Stages
upstream are explained first: one that would rerun may change what this one reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.core.errors import IrmsiaError
from jobs.core.manifest import Manifest, code_version, compute_cache_key, read_manifest
from jobs.core.paths import run_prefix
from jobs.core.store import Store, open_store
from jobs.register import registry
from jobs.stages import stage as stage_entry
from pipeline.dag import PIPELINE, TRAIN_CV, Pipeline, StageSpec


@dataclass(frozen=True, kw_only=True)
class Change:
    """One reason for a rerun."""

    kind: str
    """``parameter``, ``input``, ``code_version``, ``outputs``, ``unsealed``, ``upstream``, ``force``, ``blocked``."""
    name: str = ""
    before: Any = None
    after: Any = None

    def __str__(self) -> str:
        if self.kind == "parameter":
            return f"parameter {self.name}: {_short(self.before)} -> {_short(self.after)}"
        if self.kind == "input":
            return f"input {self.name}: {_short(self.before)} -> {_short(self.after)}"
        if self.kind == "code_version":
            return f"code version {self.before} -> {self.after}"
        return self.name


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    return text[:12] + "…" if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """What one stage would do if the pipeline ran now with the given parameters."""

    stage: str
    prefix: str = ""
    verdict: str
    """``cache hit``, ``rerun``, ``rerun if upstream output changes`` or ``cannot tell``."""
    changes: tuple[Change, ...] = ()
    cache_key: str = ""
    """The key a run would compute now ("" when the stage could not be planned)."""
    stored_cache_key: str = ""
    """The key the sealed manifest holds ("" when there is none)."""

    @property
    def reruns(self) -> bool:
        return self.verdict != "cache hit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "prefix": self.prefix,
            "verdict": self.verdict,
            "reruns": self.reruns,
            "cache_key": self.cache_key,
            "stored_cache_key": self.stored_cache_key,
            "changes": [
                {"kind": c.kind, "name": c.name, "before": c.before, "after": c.after, "text": str(c)}
                for c in self.changes
            ],
        }


def diff_manifest(stored: Manifest, params: Mapping[str, Any], inputs: Mapping[str, str], version: str) -> list[Change]:
    """Every part of the cache key that differs between ``stored`` and what a run would use now."""
    changes = [
        Change(kind="parameter", name=name, before=stored.params.get(name), after=params.get(name))
        for name in sorted(set(stored.params) | set(params))
        if stored.params.get(name) != params.get(name)
    ]
    changes += [
        Change(kind="input", name=prefix, before=stored.inputs.get(prefix), after=inputs.get(prefix))
        for prefix in sorted(set(stored.inputs) | set(inputs))
        if stored.inputs.get(prefix) != inputs.get(prefix)
    ]
    if stored.code_version != version:
        changes.append(Change(kind="code_version", before=stored.code_version, after=version))
    return changes


def _missing_outputs(store: Store, manifest: Manifest) -> list[str]:
    present = {o.key: o.size for o in store.list(manifest.prefix)}
    return [o.key for o in manifest.outputs if present.get(o.key) != o.size]


def explain_planned(stage_name: str, settings: Any, store: Store) -> tuple[Explanation, Any]:
    """Plan a ``PlannedStage`` as a run would and compare its cache key with the sealed manifest's."""
    stage_obj = stage_entry(stage_name).stage_object()
    plan = stage_obj.plan(settings, store)
    inputs = {prefix: m.content_sha256 for prefix, m in plan.inputs.items()}
    key = compute_cache_key(stage_name, plan.params, inputs, code_version())
    stored = read_manifest(store, plan.prefix)
    if stored is None:
        change = Change(kind="unsealed", name=f"no sealed output at {plan.prefix} (never run, or it did not finish)")
        item = Explanation(stage=stage_name, prefix=plan.prefix, verdict="rerun", changes=(change,), cache_key=key)
        return item, plan
    changes = diff_manifest(stored, plan.params, inputs, code_version()) if stored.cache_key != key else []
    if not changes and stored.cache_key != key:  # a manifest older than its own format: say so rather than guess
        changes = [Change(kind="parameter", name=f"the cache key differs ({stored.cache_key[:12]}… -> {key[:12]}…)")]
    if not changes and (missing := _missing_outputs(store, stored)):
        changes = [Change(kind="outputs", name=f"{len(missing)} sealed outputs missing or resized, e.g. {missing[0]}")]
    verdict = "rerun" if changes else "cache hit"
    return Explanation(stage=stage_name, prefix=plan.prefix, verdict=verdict, changes=tuple(changes), cache_key=key,
                       stored_cache_key=stored.cache_key), plan  # fmt: skip


def explain_register(settings: Any, store: Store) -> Explanation:
    """Register's cache is the ledger: the same training run (train manifest content) registers once."""
    name, run_id = settings.model_name, settings.run_id
    train = read_manifest(store, run_prefix(run_id))
    if train is None:
        change = Change(kind="blocked", name=f"run {run_id} is not sealed yet; train must run first")
        return Explanation(stage="register", prefix=f"registry/{name}/", verdict="rerun", changes=(change,))
    version = registry.version_of_run(store, name, train.content_sha256)
    if version is not None:
        return Explanation(stage="register", prefix=f"registry/{name}/{version}/", verdict="cache hit",
                           cache_key=train.content_sha256, stored_cache_key=train.content_sha256)  # fmt: skip
    change = Change(kind="unsealed", name=f"run {run_id} (train manifest {train.content_sha256[:12]}…) is not "
                    f"registered as {name} yet: a new version")  # fmt: skip
    return Explanation(stage="register", prefix=f"registry/{name}/", verdict="rerun", changes=(change,),
                       cache_key=train.content_sha256)  # fmt: skip


def ancestors(pipeline: Pipeline, name: str) -> list[StageSpec]:
    """``name`` and every stage it depends on, transitively, in the pipeline's order."""
    wanted = {name}
    for spec in reversed(pipeline.order()):
        if spec.name in wanted:
            wanted.update(spec.depends)
    return [s for s in pipeline.order() if s.name in wanted]


def stage_settings(spec: StageSpec, values: Mapping[str, str], store_uri: str, env: Mapping[str, str]) -> Any:
    """The settings a run would give the stage: the DAG's arguments for ``values``, parsed as the stage parses."""
    argv = [*spec.argv(values), "--store", store_uri]
    return stage_entry(spec.stage).settings_class().parse(argv, env)


def explain(
    stage_name: str,
    values: Mapping[str, str],
    store_uri: str,
    *,
    pipeline: Pipeline = PIPELINE,
    force: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[Explanation]:
    """Explanations for ``stage_name`` and the stages upstream of it, in order (the asked-for stage last)."""
    env = dict(os.environ if env is None else env)
    store = open_store(store_uri)
    values = dict(values)
    found: list[Explanation] = []
    upstream_reruns: list[str] = []
    for spec in ancestors(pipeline, pipeline.stage(stage_name).name):
        if spec.fan_out or spec.name == TRAIN_CV:
            continue  # one cache per planned item (fold runs) and their aggregate: known only once the plan has run
        try:
            settings = stage_settings(spec, values, store_uri, env)
            if spec.name == "register":
                item, plan = explain_register(settings, store), None
            else:
                item, plan = explain_planned(spec.name, settings, store)
        except IrmsiaError as exc:
            reason = f"cannot plan it: {exc}" + (f" ({', '.join(upstream_reruns)} must run first)" if upstream_reruns
                                                 else "")  # fmt: skip
            item, plan = Explanation(stage=spec.name, verdict="cannot tell", changes=(Change(kind="blocked",
                                     name=reason),)), None  # fmt: skip
        if force:
            item = Explanation(**{**item.__dict__, "verdict": "rerun",
                                  "changes": (Change(kind="force", name="--force"), *item.changes)})  # fmt: skip
        elif item.verdict == "cache hit" and (ups := [u for u in upstream_reruns if u in _depends_on(pipeline, spec)]):
            change = Change(kind="upstream", name=f"{', '.join(ups)} would rerun; a changed output changes this "
                            "stage's input")  # fmt: skip
            item = Explanation(**{**item.__dict__, "verdict": "rerun if upstream output changes",
                                  "changes": (change,)})  # fmt: skip
        if item.reruns:
            upstream_reruns.append(spec.name)
        for output in spec.outputs:  # train's derived run id is register's --run, as the runner hands it on
            if values.get(output) == "" and plan is not None and getattr(plan, output, None):
                values[output] = str(getattr(plan, output))
        found.append(item)
    return found


def _depends_on(pipeline: Pipeline, spec: StageSpec) -> set[str]:
    return {s.name for s in ancestors(pipeline, spec.name)} - {spec.name}


@dataclass(frozen=True)
class ExplainReport:
    """``irmsia status --explain`` as data: the asked-for stage and what led to it."""

    stage: str
    explanations: list[Explanation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "stages": [e.to_dict() for e in self.explanations]}
