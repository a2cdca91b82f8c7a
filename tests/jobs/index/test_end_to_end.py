"""collect --source demo, then index, on both backends: the real collect output indexes cleanly."""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq

from jobs.collect.__main__ import main as collect_main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from jobs.index.__main__ import main as index_main


def test_demo_dataset_indexes_with_labels_and_quarantines_its_broken_files(store_uri):
    # GIVEN the demo dataset collected into the store
    assert collect_main(["--source", "demo", "--dataset", "demo", "--store", store_uri]) == 0
    # WHEN it is indexed (twice: the second run is a cache hit)
    assert index_main(["--dataset", "demo", "--store", store_uri]) == 0
    assert index_main(["--dataset", "demo", "--store", store_uri]) == 0
    # THEN every good image is a labelled row, each patient has one label, and the broken files are quarantined
    store = open_store(store_uri)
    manifest = read_manifest(store, "index/demo/")
    assert manifest is not None and manifest.summary["classes"] == ["nodule", "normal"]
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/demo/index.parquet"))).to_pylist()
    assert len(rows) == manifest.summary["rows"] >= 280
    labels_of: dict[str, set[str]] = {}
    for row in rows:
        labels_of.setdefault(row["patient_id"], set()).add(row["label"])
        assert row["format"] == "dicom" and row["rows"] and row["study_uid"] and row["sop_uid"]
    assert len(labels_of) >= 40 and all(len(v) == 1 for v in labels_of.values())
    quarantine = list(csv.DictReader(io.StringIO(store.get_bytes("index/demo/quarantine.csv").decode())))
    reasons = {r["key"].rsplit("/", 1)[-1]: r["reason"] for r in quarantine}
    assert reasons["broken_empty.dcm"] == "empty file (0 bytes)"
    assert reasons["broken_truncated.dcm"].startswith("truncated")
    assert reasons["broken_not_dicom.dcm"].startswith("not a recognised image format")
