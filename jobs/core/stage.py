"""The stage scaffold: what every stage does around its own work, written once.

A stage is a ``PlannedStage`` subclass: it parses its settings, *plans* (where its output goes, the parameters that
define the result, the sealed inputs it reads) and *produces* (writes its outputs through the writer and returns
the summary). ``execute`` owns the rest, in the same order for every stage: open the store, plan, check the cache
(a hit is logged and returned), produce, seal with the manifest, record the stage's metrics, log the result.
``register``, whose output prefix is only known once it has claimed a version, implements ``Stage.execute`` itself.
Like kedro's ``load()`` around ``_load()``: the framework owns the repeated steps, a ``stage.py`` only what is its own.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from jobs.core.manifest import Manifest, StageWriter
from jobs.core.settings import StageSettings
from jobs.core.store import Store, open_store

S = TypeVar("S", bound=StageSettings)
P = TypeVar("P", bound="StagePlan")


@dataclass(frozen=True, kw_only=True)
class StagePlan:
    """What a stage will do, decided before anything is written: a subclass may carry more (what it read)."""

    prefix: str
    """The output prefix the stage seals (``index/<dataset>/``)."""
    params: Mapping[str, Any]
    """The parameters that define the result (never secrets): with the inputs, the cache key."""
    inputs: Mapping[str, Manifest] = field(default_factory=dict)
    """Input prefix -> the sealed manifest the stage reads it through (verified reads go by these)."""


class StageResult(NamedTuple):
    """What a stage run ends with: the manifest that seals its output, and whether it was a cache hit."""

    manifest: Manifest
    cached: bool


@dataclass(frozen=True)
class StageJob(Generic[P]):
    """What ``produce`` works with: the store, the writer of the output prefix, and the plan."""

    store: Store
    writer: StageWriter
    plan: P


class Stage(ABC, Generic[S]):
    """One stage: its name, its settings type, and ``execute`` (run it under the stage contract)."""

    name: ClassVar[str]
    """The stage's name (collect, index, split, train, register): metrics, logs and manifests carry it."""
    settings_type: ClassVar[type[StageSettings]]
    """The stage's settings dataclass (its options)."""
    artifacts: ClassVar[tuple[str, ...]] = ()
    """Sealed outputs copied beside the result file after a success (``jobs.stages``' ``artifacts``: Argo exposes
    each as an output artifact, so its UI links to train's ``report.html``)."""

    def __init__(self) -> None:
        self.log = logging.getLogger(f"irmsia.{self.name}")

    def parse(self, argv: Sequence[str], env: Mapping[str, str]) -> S:
        """Flags and environment -> validated settings."""
        return self.settings_type.parse(argv, env)  # type: ignore[return-value]

    @abstractmethod
    def execute(self, settings: S) -> StageResult:
        """Run the stage: the sealed manifest of its output, and whether it was a cache hit."""


class PlannedStage(Stage[S], Generic[S, P]):
    """A stage that plans, then produces one sealed prefix; ``execute`` does the rest the same way for all."""

    @abstractmethod
    def plan(self, settings: S, store: Store) -> P:
        """Read the sealed inputs and decide the output prefix and result parameters; write nothing."""

    @abstractmethod
    def produce(self, settings: S, job: StageJob[P]) -> dict[str, Any]:
        """Write the outputs through ``job.writer``; return the manifest's summary."""

    def record_metrics(self, manifest: Manifest) -> None:
        """Set the stage's own metrics from its sealed manifest (after a fresh run, not on a cache hit)."""

    def describe(self, manifest: Manifest) -> str:
        """The one log line that says what the stage produced."""
        return f"sealed {manifest.prefix} ({len(manifest.outputs)} outputs)"

    def execute(self, settings: S) -> StageResult:
        """Open the store, plan, return a cache hit as it is, else produce, seal, record metrics and log."""
        store = open_store(settings.common.store, s3=settings.common.s3)
        plan = self.plan(settings, store)
        inputs = {prefix: m.content_sha256 for prefix, m in plan.inputs.items()}
        writer = StageWriter(store, self.name, plan.prefix, plan.params, inputs)
        if (hit := writer.cached(settings.common.force)) is not None:
            self.log.info("cache hit: %s/%s is sealed with the same inputs and parameters; skipping "
                          "(--force recomputes)", store.uri, plan.prefix)  # fmt: skip
            return StageResult(hit, True)
        summary = self.produce(settings, StageJob(store, writer, plan))
        manifest = writer.commit(summary=summary)
        self.record_metrics(manifest)
        self.log.info("%s", self.describe(manifest))
        return StageResult(manifest, False)
