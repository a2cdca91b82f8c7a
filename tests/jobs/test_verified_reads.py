"""Every read of a sealed output goes through its manifest's SHA-256 (issue 13, items 1 and 2): an output rewritten
through a new inode or a plain S3 PUT (which drops the store's own checksum record) is exit 3 naming the key,
never trained on, promoted, or skipped as an "unreadable image"."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jobs.core.errors import ChecksumMismatch, DataError
from jobs.core.manifest import read_manifest, read_output
from jobs.core.store import open_store
from jobs.index.__main__ import main as index_main
from jobs.register.__main__ import main as register_main
from jobs.train.__main__ import main as train_main
from tests.support.runs import seal_dataset, seal_run
from tests.support.synthetic_split import write_split

FAST = ["--model", "small-cnn", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--device", "cpu",
        "--workers", "0", "--log-format", "text"]  # fmt: skip


def rewrite_by_hand(store_uri: str, key: str, data: bytes) -> None:
    """Replace an object the way an editor, ``cp`` or a plain ``aws s3 cp`` does: new bytes, no checksum record."""
    store = open_store(store_uri)
    if store.uri.startswith("s3://"):
        store.client.put_object(Bucket=store.bucket, Key=store._key(key), Body=data)  # type: ignore[attr-defined]
        return
    path = Path(store.local_path(key))
    tmp = path.with_name(path.name + ".edit")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a new inode: the user.irmsia.sha256 attribute is gone
    assert open_store(store_uri).head(key).sha256 is None


def test_a_rewritten_output_is_a_checksum_mismatch_naming_it(store_uri):
    # GIVEN a sealed split whose datalist.json was then rewritten without the store noticing
    store = open_store(store_uri)
    manifest = write_split(store, "tiny")
    rewrite_by_hand(store_uri, "splits/tiny/datalist.json", b'{"labels": ["a", "b"]}')
    # WHEN it is read through its manifest THEN the manifest's hash catches it, naming the key
    with pytest.raises(ChecksumMismatch, match=r"splits/tiny/datalist\.json: SHA-256 is .* rerun the split stage"):
        read_output(store, manifest, "datalist.json")
    # AND an output the manifest does not list is an error, not an unverified read
    with pytest.raises(DataError, match=r"lists no output 'nope\.json'"):
        read_output(store, manifest, "nope.json")


def _datalist(store_uri: str) -> dict:
    return json.loads(open_store(store_uri).get_bytes("splits/tiny/datalist.json", verify=False))


def test_train_refuses_a_datalist_with_inverted_labels(tmp_path, capsys):
    # GIVEN a sealed split whose labels were inverted by editing datalist.json in place
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    datalist = _datalist(store_uri)
    for section in ("training", "validation", "test"):
        for row in datalist[section]:
            row["label"] = 1 - row["label"]
    rewrite_by_hand(store_uri, "splits/tiny/datalist.json", json.dumps(datalist).encode())
    # WHEN train runs on it THEN exit 3 names the file, and no run is sealed
    assert train_main(["--dataset", "tiny", "--store", store_uri, "--cache-dir", str(tmp_path / "c"), *FAST]) == 3
    assert "splits/tiny/datalist.json: SHA-256 is" in capsys.readouterr().err
    assert not list(open_store(store_uri).keys("runs/"))


def test_train_refuses_a_raw_image_changed_after_indexing(tmp_path, capsys):
    # GIVEN a sealed split and one of its images with a byte flipped afterwards
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    key = _datalist(store_uri)["training"][3]["image"]
    data = bytearray(open_store(store_uri).get_bytes(key))
    data[-7] ^= 0xFF
    rewrite_by_hand(store_uri, key, bytes(data))
    # WHEN train runs THEN it is exit 3 naming the image: corrupt data, not an image skipped as unreadable
    assert train_main(["--dataset", "tiny", "--store", store_uri, "--cache-dir", str(tmp_path / "c"), *FAST]) == 3
    err = capsys.readouterr().err
    assert f"{key}: SHA-256 is" in err and "the index recorded" in err


def test_register_refuses_metrics_edited_after_training(tmp_path, capsys):
    # GIVEN a sealed run whose metrics.json was edited to win the promotion
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    seal_run(store, "r1", upstream=seal_dataset(store), metrics={"val_auc": 0.95})
    metrics = json.loads(store.get_bytes("runs/r1/metrics.json"))
    metrics["val_auc"] = 1.01
    rewrite_by_hand(store_uri, "runs/r1/metrics.json", json.dumps(metrics).encode())
    # WHEN it is registered THEN exit 3 names the file, and nothing reaches the registry
    assert register_main(["--run", "r1", "--model-name", "m", "--store", store_uri, "--log-format", "text"]) == 3
    assert "runs/r1/metrics.json: SHA-256 is" in capsys.readouterr().err
    assert not list(store.keys("registry/m/ledger/"))


def test_index_refuses_a_labels_csv_changed_after_collect(tmp_path, capsys):
    # GIVEN a collected folder with its own labels.csv, changed after collect sealed it
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    from jobs.core.manifest import StageWriter

    writer = StageWriter(store, "collect", "raw/d/", {}, {})
    writer.put_bytes("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    writer.put_bytes("labels.csv", b"path,label\na.png,x\n")
    writer.commit()
    rewrite_by_hand(store_uri, "raw/d/labels.csv", b"path,label\na.png,y\n")
    # WHEN index reads it THEN exit 3 names the CSV
    argv = ["--dataset", "d", "--store", store_uri, "--labels", "labels.csv", "--layout", "csv", "--log-format", "text"]
    assert index_main(argv) == 3
    assert "raw/d/labels.csv: SHA-256 is" in capsys.readouterr().err
    assert read_manifest(store, "index/d/") is None


@pytest.mark.parametrize("what", ["image", "mask"])
def test_train_refuses_a_segmentation_image_or_mask_changed_after_indexing(what, tmp_path, capsys):
    from jobs.collect.__main__ import main as collect_main
    from jobs.split.__main__ import main as split_main

    # GIVEN the lgg-style segmentation demo collected, indexed and split by the real stages
    store_uri = str(tmp_path / "store")
    common = ["--dataset", "seg", "--store", store_uri, "--log-format", "text"]
    assert collect_main(["--source", "demo", "--task", "segmentation", "--patients", "8", *common]) == 0
    assert index_main(common) == 0
    assert split_main([*common, "--task", "segmentation"]) == 0
    item = json.loads(open_store(store_uri).get_bytes("splits/seg/datalist.json"))["training"][0]
    assert len(item["label_sha256"]) == 64  # the datalist lists the mask's bytes too
    # AND then one training image's (or its mask's) bytes replaced by another valid file of the same kind
    key = item["image"] if what == "image" else item["label"]
    other = next(i for i in json.loads(open_store(store_uri).get_bytes("splits/seg/datalist.json"))["training"]
                 if i["sha256"] != item["sha256"] and i["label_sha256"] != item["label_sha256"])  # fmt: skip
    rewrite_by_hand(
        store_uri, key, open_store(store_uri).get_bytes(other["image"] if what == "image" else other["label"])
    )
    capsys.readouterr()
    # WHEN train runs THEN it is exit 3 naming the changed file, never trained on or skipped as unreadable
    code = train_main(["--dataset", "seg", "--store", store_uri, "--task", "segmentation", *FAST, "--model",
                       "small-unet", "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert code == 3
    assert f"{key}: SHA-256 is" in capsys.readouterr().err
