"""The split stage end to end, as its entrypoint runs in a pod, on the file store and on real S3 (SeaweedFS)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from jobs.split.__main__ import main
from tests.jobs.split.conftest import INDEX_SCHEMA, index_row, random_rows, write_index

OUTPUTS = ["datalist.json", "duplicates.csv", "stats.json", "test.csv", "test.txt", "train.csv", "train.txt", "val.csv",
           "val.txt"]  # fmt: skip
SPLITS = ("train", "val", "test")


@pytest.fixture(autouse=True)
def text_logs(monkeypatch):
    """Errors as the one text line people see (usage errors are reported before flags are read)."""
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")


def run_split(store_uri, *args, capsys=None, monkeypatch=None, tmp_path=None):
    """Run ``irmsia-split`` in-process; return (exit code, stderr, result JSON or None)."""
    result_file = None
    if monkeypatch is not None and tmp_path is not None:
        result_file = tmp_path / "result.json"
        result_file.unlink(missing_ok=True)
        monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result_file))
    if capsys is not None:
        capsys.readouterr()
    code = main(["--store", store_uri, "--log-format", "text", *args])
    err = capsys.readouterr().err if capsys is not None else ""
    result = json.loads(result_file.read_text()) if result_file is not None and result_file.exists() else None
    return code, err, result


def read_csv(store, key):
    return list(csv.DictReader(io.StringIO(store.get_bytes(key).decode())))


def read_outputs(store, dataset="ds"):
    return {name: store.get_bytes(f"splits/{dataset}/{name}") for name in OUTPUTS}


def test_split_writes_the_contract_outputs(store_uri):
    # GIVEN a sealed index of 40 patients over two classes
    store = open_store(store_uri)
    rows = random_rows(1)
    write_index(store, "ds", rows)
    # WHEN the stage runs
    code, _, _ = run_split(store_uri, "--dataset", "ds")
    # THEN it succeeds and seals every output under splits/ds/
    assert code == 0
    manifest = read_manifest(store, "splits/ds/")
    assert [o.key for o in manifest.outputs] == [f"splits/ds/{n}" for n in OUTPUTS]
    assert manifest.inputs == {"index/ds/": read_manifest(store, "index/ds/").content_sha256}
    # the CSVs hold the index columns plus split, sorted by key, and together every row once
    by_split = {s: read_csv(store, f"splits/ds/{s}.csv") for s in SPLITS}
    for split, split_rows in by_split.items():
        assert list(split_rows[0]) == [*INDEX_SCHEMA.names, "split"]
        assert [r["key"] for r in split_rows] == sorted(r["key"] for r in split_rows)
        assert {r["split"] for r in split_rows} == {split}
        txt = store.get_bytes(f"splits/ds/{split}.txt").decode().splitlines()
        assert txt == [r["key"] for r in split_rows]
    assert sorted(r["key"] for rs in by_split.values() for r in rs) == sorted(r["key"] for r in rows)
    assert by_split["train"][0]["pixel_spacing_row"] == "0.139" and by_split["train"][0]["rows"] == "64"
    # no patient is in two splits
    patients = {s: {r["patient_id"] for r in rs} for s, rs in by_split.items()}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"])
    assert not patients["val"] & patients["test"]
    # the datalist is MONAI style, with label indices into the sorted class names
    datalist = json.loads(store.get_bytes("splits/ds/datalist.json"))
    assert datalist["labels"] == ["NORMAL", "PNEUMONIA"]
    for section, split in (("training", "train"), ("validation", "val"), ("test", "test")):
        assert [d["image"] for d in datalist[section]] == [r["key"] for r in by_split[split]]
        for item, row in zip(datalist[section], by_split[split], strict=True):
            assert datalist["labels"][item["label"]] == item["label_name"] == row["label"]
            assert item["patient_id"] == row["patient_id"]
    # stats and the manifest summary agree with the files
    stats = json.loads(store.get_bytes("splits/ds/stats.json"))
    for split in SPLITS:
        assert stats["splits"][split]["rows"] == manifest.summary["rows"][split] == len(by_split[split])
        assert stats["splits"][split]["patients"] == manifest.summary["patients"][split] == len(patients[split])
        assert stats["splits"][split]["classes"] == dict(Counter(r["label"] for r in by_split[split]))
    assert manifest.summary["classes"] == ["NORMAL", "PNEUMONIA"]
    assert stats["seed"] == 42 and stats["ratios"] == [0.7, 0.15, 0.15] and stats["skipped_unlabeled"] == 0


@pytest.mark.parametrize("ratios", ["0.7,0.15,0.15", "0.6,0.2,0.2", "0.8,0.1,0.1"])
def test_outputs_keep_patients_apart_and_follow_ratios_and_classes(tmp_path, ratios):
    target = [float(r) for r in ratios.split(",")]
    for seed in range(6):
        # GIVEN a random index with three classes and up to six images per patient
        uri = str(tmp_path / f"store{seed}")
        store = open_store(uri)
        rows = random_rows(seed, classes=("a", "b", "c"), patients=60)
        write_index(store, "ds", rows)
        # WHEN split with this seed
        assert run_split(uri, "--dataset", "ds", "--ratios", ratios, "--seed", str(seed))[0] == 0
        by_split = {s: read_csv(store, f"splits/ds/{s}.csv") for s in SPLITS}
        # THEN no patient is in two splits
        split_of = defaultdict(set)
        for split, split_rows in by_split.items():
            for r in split_rows:
                split_of[r["patient_id"]].add(split)
        assert all(len(s) == 1 for s in split_of.values())
        # and each split's rows, overall and per class, are within one patient's rows of the target
        patient_rows = Counter(r["patient_id"] for r in rows)
        largest = max(patient_rows.values())
        class_rows = Counter(r["label"] for r in rows)
        for split, ratio in zip(SPLITS, target, strict=True):
            assert abs(len(by_split[split]) - ratio * len(rows)) <= largest
            per_class = Counter(r["label"] for r in by_split[split])
            for label, n in class_rows.items():
                assert abs(per_class[label] - ratio * n) <= largest, (seed, split, label)


def test_same_seed_gives_byte_identical_outputs_and_another_seed_differs(tmp_path):
    # GIVEN the same index in two separate stores
    rows = random_rows(5, patients=50)
    for name in ("one", "two", "three"):
        write_index(open_store(str(tmp_path / name)), "ds", rows)
    # WHEN split with the same seed in two stores, and another seed in a third
    for name, seed in (("one", "7"), ("two", "7"), ("three", "8")):
        assert run_split(str(tmp_path / name), "--dataset", "ds", "--seed", seed)[0] == 0
    one, two, three = (read_outputs(open_store(str(tmp_path / n))) for n in ("one", "two", "three"))
    # THEN the same seed reproduces every byte, and another seed assigns patients differently
    assert one == two
    assert one["train.csv"] != three["train.csv"]
    manifests = [read_manifest(open_store(str(tmp_path / n)), "splits/ds/") for n in ("one", "two")]
    assert manifests[0].content_sha256 == manifests[1].content_sha256


def test_rerun_is_a_cache_hit_and_force_recomputes_identically(store_uri, capsys, monkeypatch, tmp_path):
    # GIVEN a finished split
    store = open_store(store_uri)
    write_index(store, "ds", random_rows(2))
    code, _, first = run_split(store_uri, "--dataset", "ds", monkeypatch=monkeypatch, tmp_path=tmp_path)
    assert code == 0 and first["cached"] is False
    before = read_outputs(store)
    # WHEN it reruns unchanged
    code, err, second = run_split(
        store_uri, "--dataset", "ds", capsys=capsys, monkeypatch=monkeypatch, tmp_path=tmp_path
    )
    # THEN it is a cache hit that says so
    assert code == 0 and second["cached"] is True and "cache hit" in err
    assert second["content_sha256"] == first["content_sha256"]
    # WHEN forced, it recomputes the same bytes
    code, _, forced = run_split(store_uri, "--dataset", "ds", "--force", monkeypatch=monkeypatch, tmp_path=tmp_path)
    assert code == 0 and forced["cached"] is False and forced["content_sha256"] == first["content_sha256"]
    assert read_outputs(store) == before
    # WHEN a result-changing parameter or the index changes, it recomputes
    code, _, reseeded = run_split(
        store_uri, "--dataset", "ds", "--seed", "3", monkeypatch=monkeypatch, tmp_path=tmp_path
    )
    assert code == 0 and reseeded["cached"] is False
    write_index(store, "ds", random_rows(3))
    code, _, reindexed = run_split(
        store_uri, "--dataset", "ds", "--seed", "3", monkeypatch=monkeypatch, tmp_path=tmp_path
    )
    assert code == 0 and reindexed["cached"] is False
    assert reindexed["summary"]["rows"] != reseeded["summary"]["rows"] or read_outputs(store) != before


def test_merge_combines_datasets_with_namespaced_patients(store_uri):
    # GIVEN two indexed datasets whose patient ids collide and whose classes differ
    store = open_store(store_uri)
    write_index(store, "xray", random_rows(1, dataset="xray", classes=("NORMAL", "PNEUMONIA"), patients=30))
    write_index(store, "covid", random_rows(2, dataset="covid", classes=("COVID", "NORMAL"), patients=30))
    # WHEN merged into a new dataset
    code, _, _ = run_split(store_uri, "--dataset", "chest", "--merge", "xray,covid")
    # THEN the split holds both, patients namespaced by dataset, classes unioned
    assert code == 0
    manifest = read_manifest(store, "splits/chest/")
    assert set(manifest.inputs) == {"index/covid/", "index/xray/"}
    assert manifest.summary["classes"] == ["COVID", "NORMAL", "PNEUMONIA"]
    all_rows = [r for s in SPLITS for r in read_csv(store, f"splits/chest/{s}.csv")]
    assert {r["patient_id"].split(":")[0] for r in all_rows} == {"xray", "covid"}
    assert all(r["patient_id"] == f"{r['dataset']}:{r['key'].split('/')[3]}" for r in all_rows)
    assert len({r["patient_id"] for r in all_rows}) == 60
    split_of = defaultdict(set)
    for r in all_rows:
        split_of[r["patient_id"]].add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    # and the merge order does not matter
    assert run_split(store_uri, "--dataset", "chest2", "--merge", "covid,xray")[0] == 0
    assert read_outputs(store, "chest") == read_outputs(store, "chest2")


def test_official_split_is_kept_and_val_carved_from_train(store_uri):
    # GIVEN an NIH-like index whose rows carry the official train/test lists
    store = open_store(store_uri)
    rows = []
    for p in range(40):
        for n in range(1 + p % 3):
            official = "test" if p % 4 == 0 else "train"
            label = ("Effusion", "No Finding", "Atelectasis|Effusion")[p % 3]
            rows.append(index_row("nih", f"{p:05d}", n, label, official_split=official))
    write_index(store, "nih", rows, extra=pa.schema([("official_split", pa.string())]))
    # WHEN split from the official lists
    code, _, _ = run_split(store_uri, "--dataset", "nih", "--split-from", "official")
    # THEN the official test rows are exactly the test split, and val is a patient-disjoint part of official train
    assert code == 0
    by_split = {s: read_csv(store, f"splits/nih/{s}.csv") for s in SPLITS}
    assert {r["key"] for r in by_split["test"]} == {r["key"] for r in rows if r["official_split"] == "test"}
    assert by_split["val"] and all(r["official_split"] == "train" for r in by_split["val"])
    assert not {r["patient_id"] for r in by_split["val"]} & {r["patient_id"] for r in by_split["train"]}
    assert json.loads(store.get_bytes("splits/nih/datalist.json"))["labels"] == [
        "Atelectasis|Effusion",
        "Effusion",
        "No Finding",
    ]


def test_unlabelled_rows_are_skipped_and_counted(store_uri, capsys):
    store = open_store(store_uri)
    rows = [*random_rows(4), index_row("ds", "U1", 0, None), index_row("ds", "U2", 0, "")]
    write_index(store, "ds", rows)
    code, err, _ = run_split(store_uri, "--dataset", "ds", capsys=capsys)
    assert code == 0 and "skipping 2 of" in err
    stats = json.loads(open_store(store_uri).get_bytes("splits/ds/stats.json"))
    assert stats["skipped_unlabeled"] == 2 and stats["rows"] == len(rows) - 2


def test_rare_class_stays_in_train_with_a_warning(tmp_path, capsys):
    uri = str(tmp_path / "store")
    rows = [*random_rows(4), index_row("ds", "R1", 0, "RARE"), index_row("ds", "R2", 0, "RARE")]
    write_index(open_store(uri), "ds", rows)
    code, err, _ = run_split(uri, "--dataset", "ds", capsys=capsys)
    assert code == 0 and "fewer than 3 patients and stay wholly in train: RARE" in err
    stats = json.loads(open_store(uri).get_bytes("splits/ds/stats.json"))
    assert stats["splits"]["train"]["classes"]["RARE"] == 2 and stats["rare_classes"] == ["RARE"]


def official_index(rows_official):
    rows = [index_row("o", p, n, "A", official_split=o) for n, (p, o) in enumerate(rows_official)]
    return rows, pa.schema([("official_split", pa.string())])


@pytest.mark.parametrize(
    "setup, args, code, message",
    [
        (lambda s: write_index(s, "ds", []), ["--dataset", "ds"], 3, "index has no rows, nothing to split"),
        (
            lambda s: write_index(s, "ds", [index_row("ds", "P", 0, None), index_row("ds", "Q", 0, None)]),
            ["--dataset", "ds"],
            3,
            "none of the 2 rows has a label",
        ),
        (lambda s: None, ["--dataset", "ds"], 3, "--dataset 'ds': no index at .* run irmsia-index --dataset ds"),
        (
            lambda s: write_index(s, "a", random_rows(1, dataset="a")),
            ["--dataset", "m", "--merge", "a,nope"],
            3,
            "--merge 'nope': no index at .* run irmsia-index --dataset nope first",
        ),
        (lambda s: None, ["--dataset", "ds", "--ratios", "0.5,0.5,0.5"], 2, "--ratios '0.5,0.5,0.5'"),
        (lambda s: None, ["--dataset", "ds", "--ratios", "x"], 2, "--ratios 'x'"),
        (
            lambda s: write_index(s, "ds", random_rows(1)),
            ["--dataset", "ds", "--split-from", "official"],
            3,
            "no official_split column.*use --split-from stratified",
        ),
        (
            lambda s: write_index(s, "o", *official_index([("P1", "train"), ("P1", "test"), ("P2", "train")])),
            ["--dataset", "o", "--split-from", "official"],
            3,
            "patient 'P1' is in official splits 'train' and 'test'",
        ),
    ],
    ids=["empty", "unlabelled", "no-index", "merge-unknown", "ratios-sum", "ratios-text", "no-official", "leak"],
)
def test_bad_input_exit_codes_and_messages(store_uri, capsys, setup, args, code, message):
    # GIVEN a store prepared with a bad input
    store = open_store(store_uri)
    setup(store)
    # WHEN the stage runs
    exit_code, err, _ = run_split(store_uri, *args, capsys=capsys)
    # THEN it exits with the contract's code and a one-line message naming what to fix, and seals nothing
    assert exit_code == code
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("irmsia-split: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert read_manifest(store, f"splits/{args[1]}/") is None


def test_tampered_index_is_a_data_error_and_the_previous_split_survives(tmp_path, capsys):
    # GIVEN a finished split, then an index.parquet replaced behind its manifest's back
    uri = str(tmp_path / "store")
    store = open_store(uri)
    write_index(store, "ds", random_rows(1))
    assert run_split(uri, "--dataset", "ds")[0] == 0
    sealed = read_manifest(store, "splits/ds/")
    store.put_bytes("index/ds/index.parquet", b"PAR1 not really")
    # WHEN the stage reruns with another seed (a cache miss)
    code, err, _ = run_split(uri, "--dataset", "ds", "--seed", "1", capsys=capsys)
    # THEN it fails with exit 3 naming the file, and the old split is still sealed and intact
    assert code == 3 and "index/ds/index.parquet: SHA-256 differs" in err
    assert read_manifest(store, "splits/ds/") == sealed


@pytest.mark.parametrize("folds", [3, 5])
def test_folds_partition_the_train_and_val_patients_and_leave_test_alone(store_uri, folds):
    # GIVEN an index of 60 patients over two classes, split once without and once with folds
    store = open_store(store_uri)
    write_index(store, "ds", random_rows(3, patients=60))
    assert run_split(store_uri, "--dataset", "ds")[0] == 0
    plain = read_outputs(store)
    # WHEN it is split again with --folds
    code, _, _ = run_split(store_uri, "--dataset", "ds", "--folds", str(folds))
    # THEN train and val rows carry their patient's fold, every fold is non-empty and holds both classes,
    # no patient is in two folds, and the test split is exactly the one without folds
    assert code == 0
    datalist = json.loads(store.get_bytes("splits/ds/datalist.json"))
    pool = datalist["training"] + datalist["validation"]
    fold_of_patient = defaultdict(set)
    for row in pool:
        fold_of_patient[row["patient_id"]].add(row["fold"])
    assert all(len(f) == 1 for f in fold_of_patient.values())
    for i in range(folds):
        labels = {row["label"] for row in pool if row["fold"] == i}
        assert labels == {0, 1}, (i, labels)
    assert all("fold" not in row for row in datalist["test"])
    assert store.get_bytes("splits/ds/test.txt") == plain["test.txt"]
    stats = json.loads(store.get_bytes("splits/ds/stats.json"))
    assert sum(f["rows"] for f in stats["folds"].values()) == len(pool)
    assert sum(f["patients"] for f in stats["folds"].values()) == len(fold_of_patient)
    assert list(read_csv(store, "splits/ds/train.csv")[0])[-1] == "fold"


def test_one_fold_is_a_usage_error(store_uri, capsys):
    code, err, _ = run_split(store_uri, "--dataset", "ds", "--folds", "1", capsys=capsys)
    assert code == 2 and "--folds 1: cross-validation needs at least 2 folds" in err


def test_a_split_that_would_leak_a_patient_writes_nothing(tmp_path, capsys, monkeypatch):
    # GIVEN an index, and an assignment that (as a bug would) sends each row, not each patient, to a split
    uri = str(tmp_path / "store")
    store = open_store(uri)
    write_index(store, "ds", random_rows(2, patients=20))
    from jobs.split import columnar

    monkeypatch.setattr(columnar, "lookup", lambda keys, mapping: np.arange(len(keys)) % 3)
    # WHEN the stage runs
    code, err, _ = run_split(uri, "--dataset", "ds", capsys=capsys)
    # THEN the leakage guard fails it as bad data, naming a patient, and no output is written or sealed
    assert code == 3 and re.search(r"patient '[^']+' is in splits \[.*patients leak", err), err
    assert read_manifest(store, "splits/ds/") is None
    assert not list(store.keys("splits/ds/"))
