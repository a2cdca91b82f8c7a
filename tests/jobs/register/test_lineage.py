"""Lineage is walked through the manifests and never trusts an upstream output that changed since training."""

from __future__ import annotations

from jobs.core.manifest import StageWriter
from jobs.register.lineage import walk_lineage
from tests.support.runs import seal_dataset, seal_run


def test_full_lineage(store, upstream):
    train = seal_run(store, "r1", upstream=upstream)
    lineage = walk_lineage(store, train)
    assert lineage.split_manifest_sha256 == upstream.split.content_sha256
    assert lineage.index_manifest_sha256 == upstream.index.content_sha256
    assert lineage.raw_manifest_sha256 == upstream.raw.content_sha256
    assert (lineage.dataset, lineage.source, lineage.license) == ("demo", "demo", "CC-BY-4.0")
    assert lineage.classes == ["normal", "abnormal"]
    assert lineage.rows_per_split == {"train": 28, "val": 6, "test": 6}
    assert lineage.stale == []


def test_a_resplit_dataset_keeps_the_recorded_hash_but_drops_its_counts(store, upstream):
    # GIVEN a run, after which the split is recomputed with another seed
    train = seal_run(store, "r1", upstream=upstream)
    seal_dataset(store, seed=7)
    # WHEN its lineage is walked
    lineage = walk_lineage(store, train)
    # THEN the run's own record of the split stands, and nothing is read from the new split
    assert lineage.split_manifest_sha256 == upstream.split.content_sha256
    assert lineage.stale == ["splits/demo/"]
    assert lineage.patients_per_split == {} and lineage.index_manifest_sha256 is None


def test_a_run_without_recorded_inputs_has_no_lineage(store):
    w = StageWriter(store, "train", "runs/bare/", {}, {})
    w.put_bytes("config.json", b"{}")
    lineage = walk_lineage(store, w.commit())
    assert lineage.split_manifest_sha256 is None and lineage.source is None


def test_counts_fall_back_to_the_split_summary(store, upstream):
    # GIVEN a split whose stats.json has no per-split counts, but whose manifest summary does
    w = StageWriter(store, "split", "splits/lean/", {}, {upstream.index.prefix: upstream.index.content_sha256})
    w.put_bytes("stats.json", b"{}")
    split = w.commit(summary={"classes": ["a", "b"], "patients": {"train": 5, "val": 1, "test": 1}})
    train = StageWriter(store, "train", "runs/lean/", {}, {split.prefix: split.content_sha256})
    train.put_bytes("config.json", b"{}")
    # WHEN the lineage is walked THEN the summary's counts are used
    assert walk_lineage(store, train.commit()).patients_per_split == {"train": 5, "val": 1, "test": 1}
