"""Every bad input ends with its exit code, a one-line message naming what to fix, and nothing sealed."""

from __future__ import annotations

import json

import pytest

from jobs.core.store import open_store
from jobs.train.__main__ import main
from tests.support.synthetic_split import write_split

FAST = ["--model", "small-cnn", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--workers", "0"]


def _main(store_uri: str, tmp_path, *extra: str) -> int:
    argv = ["--store", store_uri, "--dataset", "tiny", "--run-id", "r", "--cache-dir", str(tmp_path / "c"), *FAST]
    return main([*argv, *extra])


def _sealed(store_uri: str) -> bool:
    return open_store(store_uri).exists("runs/r/_SUCCESS.json")


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ({"train": 0, "val": 4, "test": 4}, "the train split is empty"),
        ({"train": 8, "val": 0, "test": 4}, "the val split is empty"),
        ({"train": 1, "val": 4, "test": 4}, r"class\(es\) \['normal'\] have no training images"),
    ],
)
def test_unusable_splits_exit_3(tmp_path, capsys, counts, match):
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny", counts=counts)
    assert _main(store_uri, tmp_path, "--log-format", "text") == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("irmsia-train: error: splits/tiny/:")
    assert __import__("re").search(match, err)
    assert not _sealed(store_uri)


def test_missing_split_exits_3_and_says_which_stage_to_run(tmp_path, capsys):
    assert _main(str(tmp_path / "store"), tmp_path, "--log-format", "text") == 3
    assert "run irmsia-split first" in capsys.readouterr().err


def _broken_items(store) -> dict[str, list[tuple[str, int]]]:
    store.put_bytes("raw/tiny/broken/zero.dcm", b"")
    store.put_bytes("raw/tiny/broken/text.png", b"not an image at all")
    return {"train": [("raw/tiny/broken/zero.dcm", 0)], "val": [("raw/tiny/broken/text.png", 1)]}


def test_unreadable_images_are_skipped_up_to_the_threshold(tmp_path, capsys):
    # GIVEN 48 good images and 2 unreadable ones (4 %)
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    write_split(store, "tiny", extra_items=_broken_items(store))
    # WHEN trained with the default threshold (5 %)
    assert _main(store_uri, tmp_path, "--log-format", "text") == 0
    # THEN each is skipped with a warning naming it, and the run is sealed without them
    err = capsys.readouterr().err
    assert "skipping unreadable image: raw/tiny/broken/zero.dcm" in err
    assert "2 of 50 images were unreadable and skipped" in err
    config = json.loads(store.get_bytes("runs/r/config.json"))
    assert config["train_images"] == 24


def test_too_many_unreadable_images_exit_3(tmp_path, capsys):
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    write_split(store, "tiny", extra_items=_broken_items(store))
    assert _main(store_uri, tmp_path, "--log-format", "text", "--max-unreadable", "0.01") == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "2 of 50 images are unreadable (more than --max-unreadable 0.01)" in err
    assert not _sealed(store_uri)


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--model", "vgg16"], "--model 'vgg16' is not a known network; choose one of: densenet121, resnet18"),
        (["--model", "densenet121", "--image-size", "8"], "--image-size 8 is too small for densenet121"),
        (["--config", "/nonexistent/train.yaml"], "--config '/nonexistent/train.yaml': cannot read it"),
    ],
)
def test_bad_usage_exits_2_naming_the_flag(tmp_path, capsys, flags, match):
    store_uri = str(tmp_path / "store")
    write_split(open_store(store_uri), "tiny")
    assert _main(store_uri, tmp_path, "--log-format", "text", *flags) == 2
    assert match in capsys.readouterr().err
    assert not _sealed(store_uri)
