"""The metric catalogue and a stage's registry: common labels on every sample, declared families only."""

from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.core.metrics import (
    COMMON_LABELS,
    FAMILIES,
    MetricSpec,
    StageMetrics,
    begin_stage_metrics,
    exported_sample_names,
    stage_metrics,
)

STAGES = ("collect", "index", "split", "train", "register")


def samples(metrics: StageMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry as parsed back from the text format: (name, sorted labels) -> value."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: StageMetrics, name: str, **labels: str) -> float | None:
    for (sample, sample_labels), v in samples(metrics).items():
        got = dict(sample_labels)
        if sample == name and all(got.get(k) == val for k, val in labels.items()):
            return v
    return None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": "stage_items_total", "kind": "counter"}, "must start with 'irmsia_'"),
        ({"name": "irmsia_items", "kind": "counter"}, "counters, and only counters, end in '_total'"),
        ({"name": "irmsia_rows_total", "kind": "gauge"}, "counters, and only counters, end in '_total'"),
        (
            {"name": "irmsia_rows", "kind": "gauge", "labels": ("split", "stage")},
            r"redeclares common labels \['stage'\]",
        ),
    ],
)
def test_invalid_metric_specs_are_rejected(kwargs, error):
    with pytest.raises(ValueError, match=error):
        MetricSpec(doc="x", **kwargs)


def test_catalogue_names_are_unique_and_owned_by_known_stages():
    names = [s.name for s in FAMILIES]
    assert len(names) == len(set(names))
    assert {s.stage for s in FAMILIES} <= {None, *STAGES}
    assert {s.stage for s in FAMILIES} == {None, *STAGES}, "every stage declares its own metrics"


def test_every_sample_carries_the_common_labels():
    # GIVEN a stage registry with some common and stage-specific values
    metrics = StageMetrics("index", dataset="demo", run_id="r1", workflow_id="wf-1")
    metrics.items.inc(5)
    metrics.gauge("irmsia_index_files_by_format", format="png").set(3)
    metrics.finish(0)
    # WHEN it is rendered in the text format
    parsed = samples(metrics)
    # THEN each sample has stage, dataset, run id and workflow id, with the bound values
    assert parsed
    for _name, labels in parsed:
        got = dict(labels)
        assert {k: got[k] for k in COMMON_LABELS} == {
            "stage": "index",
            "dataset": "demo",
            "run_id": "r1",
            "workflow_id": "wf-1",
        }
    assert value(metrics, "irmsia_stage_items_total") == 5
    assert value(metrics, "irmsia_index_files_by_format", format="png") == 3
    assert not any(name.endswith("_created") for name, _ in parsed), "no *_created noise in batch metrics"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m.gauge("irmsia_not_declared"), KeyError, "add a MetricSpec to jobs.core.metrics.FAMILIES"),
        (lambda m: m.gauge("irmsia_stage_items_total"), TypeError, "is a counter, not a gauge"),
        (lambda m: m.gauge("irmsia_index_quarantined"), ValueError, r"takes labels \['reason'\], got \[\]"),
        (lambda m: m.gauge("irmsia_train_epoch", split="x"), ValueError, r"takes labels \[\], got \['split'\]"),
    ],
)
def test_only_declared_families_with_their_labels_can_be_used(call, error, match):
    with pytest.raises(error, match=match):
        call(StageMetrics("index"))


@pytest.mark.parametrize(
    ("exit_code", "error_kind", "cached", "expected"),
    [
        (0, None, False, {"exit": 0, "errors": None, "cache": 0, "success": True}),
        (0, None, True, {"exit": 0, "errors": None, "cache": 1, "success": True}),
        (3, "DataError", False, {"exit": 3, "errors": 1, "cache": 0, "success": False}),
        (75, "TransientError", False, {"exit": 75, "errors": 1, "cache": 0, "success": False}),
    ],
)
def test_finish_records_how_the_stage_ended(exit_code, error_kind, cached, expected):
    # GIVEN a stage that ran for a moment
    metrics = StageMetrics("split", dataset="demo")
    before = time.time()
    time.sleep(0.02)
    # WHEN it finishes
    metrics.finish(exit_code, error_kind=error_kind, cached=cached)
    # THEN exit code, errors by kind, cache hits, last success and duration say so
    assert value(metrics, "irmsia_stage_exit_code") == expected["exit"]
    assert value(metrics, "irmsia_stage_errors_total", kind=error_kind or "") == expected["errors"]
    assert value(metrics, "irmsia_stage_cache_hits_total") == expected["cache"]
    last_success = value(metrics, "irmsia_stage_last_success_timestamp_seconds")
    assert (last_success is not None and last_success >= before) == expected["success"]
    assert value(metrics, "irmsia_stage_duration_seconds") >= 0.02


def test_exported_sample_names_are_per_stage():
    # GIVEN the catalogue, WHEN asking what train can export
    train = exported_sample_names("train")
    # THEN it has the common families and its own, not another stage's
    assert {"irmsia_stage_duration_seconds", "irmsia_stage_items_total", "irmsia_train_loss"} <= train
    assert "irmsia_index_rows" not in train
    assert exported_sample_names() == {n for s in FAMILIES for n in s.sample_names}


def test_sample_names_match_what_the_registry_renders():
    # GIVEN a registry in which every family of every stage has one child
    rendered: set[str] = set()
    for stage in STAGES:
        metrics = StageMetrics(stage)
        for spec in FAMILIES:
            if spec.stage not in (None, stage):
                continue
            labels = {label: "x" for label in spec.labels}
            getattr(metrics, spec.kind)(spec.name, **labels)
        rendered |= {name for name, _ in samples(metrics)}
    # THEN the names the catalogue promises are exactly the names Prometheus sees
    assert rendered == exported_sample_names()


def test_stage_metrics_returns_the_process_registry():
    # GIVEN a stage registry begun by the entrypoint
    begun = begin_stage_metrics("register", dataset="demo")
    # WHEN stage code asks for it, THEN it gets the same one
    assert stage_metrics() is begun
    stage_metrics().gauge("irmsia_register_version").set(4)
    assert value(begun, "irmsia_register_version") == 4


def test_stage_writer_counts_bytes_it_writes_not_objects_it_only_records(tmp_path):
    from jobs.core.manifest import StageWriter
    from jobs.core.store import open_store

    # GIVEN a stage registry and a store holding one object from an earlier, interrupted run
    metrics = begin_stage_metrics("collect", dataset="demo")
    store = open_store(str(tmp_path / "store"))
    kept = store.put_bytes("raw/demo/kept.bin", b"k" * 300)
    writer = StageWriter(store, "collect", "raw/demo/", {}, {})
    # WHEN the writer writes two objects, streams a third and keeps the earlier one by recording it
    writer.put_bytes("a.bin", b"a" * 100)
    (tmp_path / "b.bin").write_bytes(b"b" * 20)
    writer.put_file("b.bin", tmp_path / "b.bin")
    with writer.open_write("c.bin") as fh:
        fh.write(b"c" * 3)
    writer.record(kept)
    # THEN only the bytes written now count, and reading the objects back counts as bytes read
    assert value(metrics, "irmsia_stage_bytes_written_total") == 123
    assert store.get_bytes("raw/demo/kept.bin") == b"k" * 300
    assert value(metrics, "irmsia_stage_bytes_read_total") == 300
