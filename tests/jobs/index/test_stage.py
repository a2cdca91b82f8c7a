"""The index stage end to end on both store backends: rows, labels, dedup, quarantine, and the stage contract."""

from __future__ import annotations

import csv
import io
import json
import os
import re

import pyarrow.parquet as pq
import pytest

from jobs.core.errors import DataError
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from jobs.index.__main__ import main
from jobs.index.settings import IndexSettings
from jobs.index.stage import run
from jobs.index.writer import COLUMNS
from tests.jobs.index.conftest import put_raw
from tests.support.dicom_files import dicom_bytes


def _dataset() -> dict[str, bytes]:
    """Two classes in folders, a duplicate, three broken files and two sidecars."""
    files = {
        f"{label}/{patient}-{i}.dcm": dicom_bytes(patient, seed=seed, modality="CR")
        for seed, (label, patient, i) in enumerate(
            [("NORMAL", "P1", 0), ("NORMAL", "P1", 1), ("NORMAL", "P2", 0), ("PNEUMONIA", "P3", 0)]
        )
    }
    files["PNEUMONIA/P3-copy.dcm"] = files["NORMAL/P1-0.dcm"]  # same bytes under a later key
    files["PNEUMONIA/empty.dcm"] = b""
    files["PNEUMONIA/notes.bin"] = b"not an image, just bytes " * 10
    files["NORMAL/truncated.dcm"] = dicom_bytes("P9", rows=32, columns=32)[:-100]
    files["LICENSE"] = b"CC-BY"
    files["labels.csv"] = b"key,label\n"
    return files


def _index(store_uri: str, *extra: str) -> tuple:
    settings = IndexSettings.parse(["--dataset", "ds", "--store", store_uri, "--workers", "1", *extra], {})
    return run(settings)


def _read_index(store) -> list[dict]:
    return pq.read_table(io.BytesIO(store.get_bytes("index/ds/index.parquet"))).to_pylist()


def _read_quarantine(store) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(store.get_bytes("index/ds/quarantine.csv").decode()))
    return {r["key"]: r["reason"] for r in rows}


def test_index_rows_labels_dedup_and_quarantine(store_uri):
    # GIVEN a collected dataset with class folders, a duplicate, broken files and sidecars
    store = open_store(store_uri)
    put_raw(store, "ds", _dataset())
    # WHEN it is indexed
    manifest, cached = _index(store_uri)
    # THEN each unique usable image is one row, sorted by key, labelled by its folder
    rows = _read_index(store)
    assert not cached
    assert [r["key"] for r in rows] == [
        "raw/ds/NORMAL/P1-0.dcm",
        "raw/ds/NORMAL/P1-1.dcm",
        "raw/ds/NORMAL/P2-0.dcm",
        "raw/ds/PNEUMONIA/P3-0.dcm",
    ]
    assert [r["label"] for r in rows] == ["NORMAL", "NORMAL", "NORMAL", "PNEUMONIA"]
    assert [r["patient_id"] for r in rows] == ["P1", "P1", "P2", "P3"]
    assert list(rows[0]) == list(COLUMNS)
    assert rows[0]["format"] == "dicom" and rows[0]["modality"] == "CR" and rows[0]["frames"] == 1
    assert rows[0]["sha256"] == store.head("raw/ds/NORMAL/P1-0.dcm").sha256
    # AND every unusable file is in quarantine.csv with its reason; sidecars are in neither
    reasons = _read_quarantine(store)
    assert reasons == {
        "raw/ds/NORMAL/truncated.dcm": reasons["raw/ds/NORMAL/truncated.dcm"],
        "raw/ds/PNEUMONIA/P3-copy.dcm": "duplicate of raw/ds/NORMAL/P1-0.dcm",
        "raw/ds/PNEUMONIA/empty.dcm": "empty file (0 bytes)",
        "raw/ds/PNEUMONIA/notes.bin": reasons["raw/ds/PNEUMONIA/notes.bin"],
    }
    assert reasons["raw/ds/NORMAL/truncated.dcm"].startswith("truncated: pixel data")
    assert reasons["raw/ds/PNEUMONIA/notes.bin"].startswith("not a recognised image format")
    # AND the manifest summarises the result
    s = manifest.summary
    assert (s["rows"], s["quarantined"], s["duplicates"], s["sidecars"]) == (4, 4, 1, 2)
    assert s["classes"] == ["NORMAL", "PNEUMONIA"]
    assert s["per_class"] == {"NORMAL": 3, "PNEUMONIA": 1}
    assert s["per_format"] == {"dicom": 4} and s["per_modality"] == {"CR": 4}
    assert s["layout"] == "folder" and s["patients"] == 3
    assert [o.key for o in manifest.outputs] == ["index/ds/index.parquet", "index/ds/quarantine.csv"]


def test_second_run_is_a_cache_hit_and_force_reproduces_identical_bytes(store_uri):
    store = open_store(store_uri)
    put_raw(store, "ds", _dataset())
    first, _ = _index(store_uri)
    parquet = store.get_bytes("index/ds/index.parquet")
    # WHEN run again: a cache hit
    again, cached = _index(store_uri)
    assert cached and again.content_sha256 == first.content_sha256
    # WHEN forced, with a pool of workers: recomputed, byte-identical
    forced, cached = _index(store_uri, "--force", "--workers", "2")
    assert not cached
    assert store.get_bytes("index/ds/index.parquet") == parquet
    assert forced.content_sha256 == first.content_sha256


def test_parallel_scan_matches_serial(tmp_path):
    # GIVEN enough files for several pool batches
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    files = {f"c{i % 3}/p{i}.dcm": dicom_bytes(f"p{i}", seed=i) for i in range(150)}
    files["c0/dup.dcm"] = files["c1/p1.dcm"]
    put_raw(store, "ds", files)
    _index(store_uri, "--workers", "1")
    serial = (store.get_bytes("index/ds/index.parquet"), store.get_bytes("index/ds/quarantine.csv"))
    _index(store_uri, "--workers", "3", "--force")
    assert (store.get_bytes("index/ds/index.parquet"), store.get_bytes("index/ds/quarantine.csv")) == serial
    assert _read_quarantine(store) == {"raw/ds/c1/p1.dcm": "duplicate of raw/ds/c0/dup.dcm"}


def test_content_changed_after_collect_is_quarantined(tmp_path):
    # GIVEN a file changed in the store after the collect manifest recorded its hash
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    put_raw(store, "ds", {"a/1.dcm": dicom_bytes("A", seed=1), "a/2.dcm": dicom_bytes("B", seed=2)})
    store.put_bytes("raw/ds/a/2.dcm", dicom_bytes("B", seed=3))
    # WHEN indexed THEN it is quarantined with the reason, the other is indexed
    _index(store_uri)
    assert [r["key"] for r in _read_index(store)] == ["raw/ds/a/1.dcm"]
    assert _read_quarantine(store)["raw/ds/a/2.dcm"].startswith("content changed after collect")


def test_killed_mid_write_leaves_no_manifest_and_rerun_is_identical(store_uri, monkeypatch):
    store = open_store(store_uri)
    put_raw(store, "ds", _dataset())
    first, _ = _index(store_uri)
    parquet = store.get_bytes("index/ds/index.parquet")
    # GIVEN a forced rerun killed after index.parquet is written, before quarantine.csv
    from jobs.core.manifest import StageWriter

    real_put_file = StageWriter.put_file

    def dying_put_file(self, name, path, sha256=None):
        if name == "quarantine.csv":
            raise KeyboardInterrupt
        return real_put_file(self, name, path, sha256)

    monkeypatch.setattr(StageWriter, "put_file", dying_put_file)
    with pytest.raises(KeyboardInterrupt):
        _index(store_uri, "--force")
    # THEN no manifest: the next stage sees nothing
    assert read_manifest(store, "index/ds/") is None
    # AND the rerun recomputes (no cache hit without a manifest) and reproduces the same bytes
    monkeypatch.setattr(StageWriter, "put_file", real_put_file)
    again, cached = _index(store_uri)
    assert not cached
    assert store.get_bytes("index/ds/index.parquet") == parquet
    assert again.content_sha256 == first.content_sha256


def test_nothing_usable_is_a_data_error_and_writes_nothing(tmp_path):
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    put_raw(store, "ds", {"a/x.dcm": b"", "a/y.txt.bin": b"plain text here, definitely not an image"})
    with pytest.raises(DataError, match="no usable image among 2 files"):
        _index(store_uri)
    assert list(store.list("index/")) == []


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--store", "{store}"], 2, "--dataset"),
        (["--dataset", "Bad Name", "--store", "{store}"], 2, "--dataset 'Bad Name'"),
        (["--dataset", "ds", "--store", "{store}", "--layout", "nope"], 2, "--layout 'nope'"),
        (["--dataset", "ds", "--store", "{store}", "--workers", "many"], 2, "--workers 'many'"),
        (["--dataset", "ds", "--store", "{store}", "--labels", "missing.csv"], 2, "--labels 'missing.csv'"),
        (["--dataset", "ds", "--store", "{store}", "--layout", "csv"], 2, "--layout csv needs a labels CSV"),
        (["--dataset", "other", "--store", "{store}"], 3, "raw/other/.*run irmsia-collect first"),
        (["--dataset", "ds", "--store", "{store}", "--labels", "raw/ds/bad.csv"], 3, "bad.csv: no label column"),
    ],
)
def test_bad_inputs_exit_with_contract_codes_and_name_the_field(tmp_path, capsys, monkeypatch, argv, code, message):
    # GIVEN a collected dataset and a bad flag or input
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    put_raw(store, "ds", {"a/1.dcm": dicom_bytes(), "bad.csv": b"file,what\nx,y\n"})
    # WHEN the stage runs THEN it exits with the contract's code and one line naming the problem
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
    rc = main([a.replace("{store}", store_uri) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code
    assert err[-1].startswith("irmsia-index: error: ")

    assert re.search(message, err[-1]), err[-1]
    assert read_manifest(store, "index/ds/") is None


def test_main_runs_the_stage_and_writes_the_result_file(tmp_path, monkeypatch):
    store_uri = str(tmp_path / "store")
    put_raw(open_store(store_uri), "ds", _dataset())
    result = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result))
    assert main(["--dataset", "ds", "--store", store_uri, "--labels", "", "--layout", "", "--workers", ""]) == 0
    data = json.loads(result.read_text())
    assert data["stage"] == "index" and data["summary"]["rows"] == 4 and data["cached"] is False
    assert os.path.exists(tmp_path / "store" / "index" / "ds" / "_SUCCESS.json")
