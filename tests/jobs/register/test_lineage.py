"""Lineage is walked through the manifests and never trusts an upstream output that changed since training."""

from __future__ import annotations

import pytest

from jobs.core.manifest import StageWriter
from jobs.register.lineage import dataset_facts, walk_lineage
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


def _collected(store, dataset: str, params: dict, summary: dict, licence_text: bytes | None = None):
    w = StageWriter(store, "collect", f"raw/{dataset}/", params, {})
    w.put_bytes("LICENSE" if licence_text else "data.bin", licence_text or b"x")
    return w.commit(summary={"files": 1, "bytes": 1, **summary})


@pytest.mark.parametrize(
    ("params", "summary", "release"),
    [
        # a Kaggle dataset: its ref, version number and the ZIP's SHA-256
        (
            {"source": "kaggle", "ref": "o/chest", "version": 3},
            {"source": "kaggle", "ref": "o/chest", "version": 3, "sha256": "ab" * 32, "pin": "--kaggle-version 3"},
            {"ref": "o/chest", "version": 3, "sha256": "ab" * 32, "pin": "--kaggle-version 3"},
        ),
        # a TCIA collection: its DOI and the latest release date
        (
            {"source": "tcia", "collection": "LIDC-IDRI"},
            {
                "source": "tcia",
                "collection": "LIDC-IDRI",
                "doi": ["https://doi.org/10.7937/K9/TCIA.2015.LO9QL9SX"],
                "latest_release": "2011-09-05",
                "series": 4,
            },
            {
                "collection": "LIDC-IDRI",
                "doi": ["https://doi.org/10.7937/K9/TCIA.2015.LO9QL9SX"],
                "latest_release": "2011-09-05",
                "series": 4,
            },
        ),
        # NIH ChestX-ray14: NIH's MD5 of every archive collected
        (
            {"source": "nih", "archives": [1]},
            {"source": "nih", "archives": ["images_001.tar.gz"], "archive_md5": {"images_001.tar.gz": "fe8e"}},
            {"archives": ["images_001.tar.gz"], "archive_md5": {"images_001.tar.gz": "fe8e"}},
        ),
        # an IDC release
        (
            {"source": "idc", "idc_version": 21},
            {"source": "idc", "idc_version": 21, "collections": ["nlst"], "pin": "--idc-version 21"},
            {"collections": ["nlst"], "idc_version": 21, "pin": "--idc-version 21"},
        ),
    ],
)
def test_each_source_names_its_release(store, params, summary, release):
    # GIVEN a collect manifest as the source leaves it
    raw = _collected(store, "d", params, summary)
    # WHEN the facts a model card shows are read THEN the release is exactly what the source recorded
    facts = dataset_facts(store, raw)
    assert facts["release"] == release and facts["source"] == summary["source"]
    assert facts["manifest_sha256"] == raw.content_sha256 and facts["deidentification"] is None


def test_a_merged_split_names_every_dataset_its_licence_and_every_manifest(store):
    # GIVEN two datasets with their own licences, indexed and merged into one split
    raws = [_collected(store, "a", {"source": "local"}, {"source": "local", "license": "CC-BY-4.0"},
                       b"CC BY 4.0: cite Dataset A\n"),
            _collected(store, "b", {"source": "tcia"}, {"source": "tcia", "license": "CC-BY-NC-4.0"})]  # fmt: skip
    indexes = []
    for raw in raws:
        w = StageWriter(store, "index", raw.prefix.replace("raw/", "index/"), {}, {raw.prefix: raw.content_sha256})
        w.put_bytes("index.csv", b"key\n")
        indexes.append(w.commit(summary={"rows": 1}))
    w = StageWriter(store, "split", "splits/ab/", {}, {i.prefix: i.content_sha256 for i in indexes})
    w.put_bytes("stats.json", b'{"splits": {"train": {"rows": 2, "patients": 2, "studies": 2, "series": 3}}}')
    split = w.commit(summary={"classes": ["x"]})
    train = StageWriter(store, "train", "runs/ab/", {}, {split.prefix: split.content_sha256})
    train.put_bytes("config.json", b"{}")
    # WHEN its lineage is walked
    lineage = walk_lineage(store, train.commit())
    # THEN both datasets, both licences, the attribution asked for, and all six manifests are named
    assert [d["dataset"] for d in lineage.datasets] == ["a", "b"]
    assert lineage.license == "CC-BY-4.0; CC-BY-NC-4.0"
    assert [d["attribution"] for d in lineage.datasets] == ["CC BY 4.0: cite Dataset A", None]
    assert [(m["stage"], m["prefix"]) for m in lineage.manifests] == [
        ("train", "runs/ab/"), ("split", "splits/ab/"), ("index", "index/a/"), ("index", "index/b/"),
        ("collect", "raw/a/"), ("collect", "raw/b/")]  # fmt: skip
    assert lineage.series_per_split == {"train": 3} and lineage.studies_per_split == {"train": 2}
