"""Prometheus metrics of one stage process: the catalogue of every metric family and the stage's registry.

Every stage process gets one registry (``stage_metrics()``) whose samples all carry the labels ``stage``,
``dataset``, ``run_id`` and ``workflow_id``. The common families (duration, items, bytes, errors by kind, cache
hits, last success, exit code) are filled in by ``jobs.core.entrypoint``, ``StageWriter`` and the store; a
stage adds its own through the families declared in ``FAMILIES``::

    metrics = stage_metrics()
    metrics.items.inc(len(rows))
    metrics.counter("irmsia_index_quarantined_total", reason="truncated").inc()
    metrics.gauge("irmsia_train_loss", split="train", epoch="3").set(0.41)

Only declared families can be used, so the Grafana dashboard and the Argo metrics can be checked against this
one list. Delivery (Pushgateway, HTTP port, text file) is ``jobs.core.metrics_export``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

COMMON_LABELS = ("stage", "dataset", "run_id", "workflow_id")
"""Labels on every sample a stage exports."""

Kind = Literal["counter", "gauge", "histogram"]
_CLASSES: dict[str, type[MetricWrapperBase]] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """One metric family: its exported name, kind, help text, its own labels and the stage that exports it."""

    name: str
    """Exported name; counters end in ``_total``."""
    kind: Kind
    doc: str
    labels: tuple[str, ...] = ()
    """Labels besides ``COMMON_LABELS``."""
    stage: str | None = None
    """The stage exporting it; ``None`` for the families every stage exports."""

    def __post_init__(self) -> None:
        if not self.name.startswith("irmsia_"):
            raise ValueError(f"metric {self.name!r} must start with 'irmsia_'")
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"metric {self.name!r}: counters, and only counters, end in '_total'")
        if clash := set(self.labels) & set(COMMON_LABELS):
            raise ValueError(f"metric {self.name!r} redeclares common labels {sorted(clash)}")

    @property
    def sample_names(self) -> tuple[str, ...]:
        """The names its samples have in the text format (what a PromQL query selects)."""
        if self.kind == "histogram":
            return tuple(self.name + s for s in ("_bucket", "_sum", "_count"))
        return (self.name,)


def _spec(name: str, kind: Kind, doc: str, *labels: str, stage: str | None = None) -> MetricSpec:
    return MetricSpec(name=name, kind=kind, doc=doc, labels=labels, stage=stage)


FAMILIES: tuple[MetricSpec, ...] = (
    # -- every stage ----------------------------------------------------------------------------------------
    _spec("irmsia_stage_start_timestamp_seconds", "gauge", "Unix time the stage process started its work."),
    _spec("irmsia_stage_duration_seconds", "gauge", "Seconds the stage has run (final value at exit)."),
    _spec("irmsia_stage_items_total", "counter", "Items the stage processed (files, rows, images, versions)."),
    _spec("irmsia_stage_bytes_read_total", "counter", "Bytes the stage read from the store."),
    _spec("irmsia_stage_bytes_written_total", "counter", "Bytes the stage wrote to the store as outputs."),
    _spec("irmsia_stage_errors_total", "counter", "Errors the stage ended with, by exception class.", "kind"),
    _spec("irmsia_stage_cache_hits_total", "counter", "1 when the stage was skipped because its cache key matched."),
    _spec("irmsia_stage_exit_code", "gauge", "The process exit code (0 ok, 2 usage, 3 data, 75 transient, 1 bug)."),
    _spec("irmsia_stage_last_success_timestamp_seconds", "gauge", "Unix time the stage last ended successfully."),
    # -- collect --------------------------------------------------------------------------------------------
    _spec("irmsia_collect_bytes_downloaded_total", "counter", "Bytes downloaded from the source.", stage="collect"),
    _spec("irmsia_collect_files_total", "counter", "Files written to raw/<dataset>/.", stage="collect"),
    _spec("irmsia_collect_series_total", "counter", "Image series (DICOM series) collected.", stage="collect"),
    _spec("irmsia_collect_archives_total", "counter", "Archives downloaded and unpacked.", stage="collect"),
    _spec("irmsia_collect_retries_total", "counter", "Download attempts retried after a failure.", stage="collect"),
    _spec("irmsia_collect_resumes_total", "counter", "Downloads resumed from a partial file.", stage="collect"),
    # -- index ----------------------------------------------------------------------------------------------
    _spec("irmsia_index_rows", "gauge", "Rows (usable images) in index.parquet.", stage="index"),
    _spec("irmsia_index_files_per_second", "gauge", "Files read per second of indexing.", stage="index"),
    _spec("irmsia_index_quarantined", "gauge", "Files quarantined, by reason.", "reason", stage="index"),
    _spec("irmsia_index_files_by_format", "gauge", "Indexed images per file format.", "format", stage="index"),
    _spec("irmsia_index_files_by_modality", "gauge", "Indexed images per modality.", "modality", stage="index"),
    # -- split ----------------------------------------------------------------------------------------------
    _spec("irmsia_split_rows", "gauge", "Rows per split and class.", "split", "class_name", stage="split"),
    _spec("irmsia_split_patients", "gauge", "Patients per split.", "split", stage="split"),
    # -- train ----------------------------------------------------------------------------------------------
    _spec("irmsia_train_epoch", "gauge", "The last epoch finished (1-based).", stage="train"),
    _spec("irmsia_train_loss", "gauge", "Mean loss of an epoch.", "split", "epoch", stage="train"),
    _spec("irmsia_train_val_metric", "gauge", "Validation metric after an epoch.", "metric", "epoch", stage="train"),
    _spec("irmsia_train_final_metric", "gauge", "Final metrics of the run (metrics.json).", "metric", stage="train"),
    _spec("irmsia_train_images_per_second", "gauge", "Training images per second in the last epoch.", stage="train"),
    _spec(
        "irmsia_train_data_wait_fraction", "gauge", "Share of the last epoch spent waiting for data.", stage="train"
    ),
    _spec("irmsia_train_learning_rate", "gauge", "Learning rate in the last epoch.", stage="train"),
    _spec("irmsia_gpu_memory_used_bytes", "gauge", "GPU memory in use (NVML).", "gpu", stage="train"),
    _spec("irmsia_gpu_utilization_ratio", "gauge", "GPU utilisation, 0-1 (NVML).", "gpu", stage="train"),
    # -- register -------------------------------------------------------------------------------------------
    _spec("irmsia_register_version", "gauge", "The version number registered by this run.", stage="register"),
    _spec(
        "irmsia_register_champion_changes_total", "counter", "Times the champion alias moved.", stage="register"
    ),
)  # fmt: skip

_BY_NAME = {spec.name: spec for spec in FAMILIES}


def spec(name: str) -> MetricSpec:
    """The declared family ``name``; ``KeyError`` telling the developer to declare it in ``FAMILIES``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"metric {name!r} is not declared; add a MetricSpec to jobs.core.metrics.FAMILIES") from None


def exported_sample_names(stage: str | None = None) -> set[str]:
    """Sample names the given stage (every stage when ``None``) can export."""
    return {
        n for s in FAMILIES if stage is None or s.stage in (None, stage) for n in s.sample_names
    }  # fmt: skip


class StageMetrics:
    """One stage process's registry, with the common label values bound once."""

    def __init__(
        self,
        stage: str,
        *,
        dataset: str | None = None,
        run_id: str | None = None,
        workflow_id: str | None = None,
    ) -> None:
        prometheus_client.disable_created_metrics()  # ``*_created`` samples only add noise to batch metrics
        self.stage = stage
        self.workflow_id = workflow_id or ""
        self.registry = CollectorRegistry(auto_describe=True)
        self.common = {
            "stage": stage,
            "dataset": dataset or "",
            "run_id": run_id or "",
            "workflow_id": self.workflow_id,
        }
        self._families: dict[str, MetricWrapperBase] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.gauge("irmsia_stage_start_timestamp_seconds").set(time.time())
        self.items = self.counter("irmsia_stage_items_total")
        self.bytes_read = self.counter("irmsia_stage_bytes_read_total")
        self.bytes_written = self.counter("irmsia_stage_bytes_written_total")
        self.cache_hits = self.counter("irmsia_stage_cache_hits_total")
        self.duration = self.gauge("irmsia_stage_duration_seconds")
        self.refresh()

    def _child(self, name: str, kind: Kind, labels: dict[str, object]):
        declared = spec(name)
        if declared.kind != kind:
            raise TypeError(f"metric {name!r} is a {declared.kind}, not a {kind}")
        if set(labels) != set(declared.labels):
            raise ValueError(f"metric {name!r} takes labels {list(declared.labels)}, got {sorted(labels)}")
        with self._lock:
            family = self._families.get(name)
            if family is None:
                family = _CLASSES[kind](name, declared.doc, (*COMMON_LABELS, *declared.labels), registry=self.registry)
                self._families[name] = family
        return family.labels(**self.common, **{k: str(v) for k, v in labels.items()})

    def counter(self, name: str, **labels: object):
        """The counter ``name`` with these label values (a prometheus_client child: ``.inc(n)``)."""
        return self._child(name, "counter", labels)

    def gauge(self, name: str, **labels: object):
        """The gauge ``name`` with these label values (``.set(v)``, ``.inc()``)."""
        return self._child(name, "gauge", labels)

    def histogram(self, name: str, **labels: object):
        """The histogram ``name`` with these label values (``.observe(v)``)."""
        return self._child(name, "histogram", labels)

    def set_gauges(self, name: str, label: str, values: Iterable[tuple[object, float]]) -> None:
        """Set one gauge child per ``(label value, number)``, e.g. rows per format."""
        for key, value in values:
            self.gauge(name, **{label: key}).set(value)

    def refresh(self) -> None:
        """Bring time-dependent values up to date before an export."""
        self.duration.set(round(time.monotonic() - self._started, 3))

    def finish(self, exit_code: int, *, error_kind: str | None = None, cached: bool = False) -> None:
        """Record how the stage ended: exit code, error kind, cache hit, last success time and final duration."""
        self.refresh()
        self.gauge("irmsia_stage_exit_code").set(exit_code)
        if error_kind:
            self.counter("irmsia_stage_errors_total", kind=error_kind).inc()
        if cached:
            self.cache_hits.inc()
        if exit_code == 0:
            self.gauge("irmsia_stage_last_success_timestamp_seconds").set(time.time())


_current: StageMetrics | None = None
_current_lock = threading.Lock()


def begin_stage_metrics(
    stage: str, *, dataset: str | None = None, run_id: str | None = None, workflow_id: str | None = None
) -> StageMetrics:
    """Start this process's stage registry (``stage_main`` calls it once per run)."""
    global _current
    with _current_lock:
        _current = StageMetrics(stage, dataset=dataset, run_id=run_id, workflow_id=workflow_id)
        return _current


def stage_metrics() -> StageMetrics:
    """This process's stage registry; outside ``stage_main`` (tests calling ``run`` directly) a detached one."""
    global _current
    with _current_lock:
        if _current is None:
            _current = StageMetrics("")
        return _current
