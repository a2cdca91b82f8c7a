"""Images are read from the store once, decoded once into the local cache, and colour decides the channels."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.core.errors import DataError
from jobs.core.store import open_store
from jobs.ml.preprocess import Preprocessing
from jobs.train import cache
from jobs.train.cache import load_images
from jobs.train.data import read_split
from tests.support.synthetic_split import write_split


def test_decoded_tensors_are_cached_and_reused(store_uri, tmp_path, monkeypatch):
    # GIVEN a split decoded once into the cache
    store = open_store(store_uri)
    write_split(store, "tiny", fmt="mixed")
    split = read_split(store, "tiny")
    prep = Preprocessing(image_size=32)
    sets, channels = load_images(store, split, prep, str(tmp_path / "c"), workers=1, max_unreadable=0)
    assert channels == 1 and {k: len(v) for k, v in sets.items()} == {"train": 24, "val": 12, "test": 12}
    assert sets["train"].images.shape == (24, 1, 32, 32) and sets["train"].images.dtype == np.float16
    assert float(sets["train"].images.min()) >= 0.0 and float(sets["train"].images.max()) <= 1.0
    # WHEN loaded again (decoding now impossible)
    monkeypatch.setattr(cache, "_decode_all", lambda *a, **k: pytest.fail("decoded twice"))
    again, _ = load_images(store, split, prep, str(tmp_path / "c"), workers=1, max_unreadable=0)
    # THEN the cached arrays come back, memory-mapped
    assert isinstance(again["train"].images, np.memmap)
    np.testing.assert_array_equal(again["val"].images, sets["val"].images)
    assert again["test"].keys == sets["test"].keys
    # AND on S3 the objects were downloaded into the local cache once
    downloaded = list((tmp_path / "c" / "objects").rglob("*.dcm"))
    assert len(downloaded) == (36 if store_uri.startswith("s3://") else 0)


def test_parallel_decoding_matches_serial(tmp_path):
    store = open_store(str(tmp_path / "store"))
    write_split(store, "tiny", counts={"train": 48, "val": 16, "test": 8})
    split = read_split(store, "tiny")
    prep = Preprocessing(image_size=32)
    serial, _ = load_images(store, split, prep, str(tmp_path / "a"), workers=1, max_unreadable=0)
    parallel, _ = load_images(store, split, prep, str(tmp_path / "b"), workers=2, max_unreadable=0)
    for name in serial:
        np.testing.assert_array_equal(serial[name].images, parallel[name].images)


def test_any_colour_image_makes_the_model_three_channel(tmp_path):
    import io

    from PIL import Image

    store = open_store(str(tmp_path / "store"))
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), (200, 10, 10), np.uint8)).save(buffer, format="PNG")
    store.put_bytes("raw/tiny/colour.png", buffer.getvalue())
    write_split(store, "tiny", extra_items={"test": [("raw/tiny/colour.png", 0)]})
    sets, channels = load_images(
        store, read_split(store, "tiny"), Preprocessing(image_size=16), str(tmp_path / "c"), workers=1, max_unreadable=0
    )
    assert channels == 3 and sets["train"].images.shape[1] == 3
    # grey images are replicated, so their three channels are equal
    np.testing.assert_array_equal(sets["train"].images[:, 0], sets["train"].images[:, 2])


def test_datalist_labels_out_of_range_are_bad_data(tmp_path):
    import json

    store = open_store(str(tmp_path / "store"))
    write_split(store, "tiny")
    datalist = json.loads(store.get_bytes("splits/tiny/datalist.json"))
    datalist["training"][0]["label"] = 7
    from jobs.core.manifest import StageWriter

    writer = StageWriter(store, "split", "splits/tiny/", {"broken": True}, {})
    writer.put_bytes("datalist.json", json.dumps(datalist).encode())
    writer.commit()
    with pytest.raises(DataError, match=r"datalist.json: training\[0\] label 7 is not an index into labels"):
        read_split(store, "tiny")


def test_each_fold_decodes_its_own_sets_with_one_shared_cache(tmp_path):
    # GIVEN a split in 3 folds and one cache folder for every run, as train and its fold trainings share one
    store = open_store(str(tmp_path / "store"))
    write_split(store, "tiny", folds=3)
    prep, where = Preprocessing(image_size=32), str(tmp_path / "c")
    # WHEN the unfolded split and each fold are loaded one after the other
    loaded = {fold: load_images(store, read_split(store, "tiny", fold=fold), prep, where, workers=1,
                                max_unreadable=0)[0] for fold in (None, 0, 1, 2)}  # fmt: skip
    # THEN each run gets its own train and val (fold i validates on fold i's 12 images), never a cached other's
    assert {f: (len(s["train"]), len(s["val"])) for f, s in loaded.items()} == {None: (24, 12), 0: (24, 12),
                                                                                1: (24, 12), 2: (24, 12)}  # fmt: skip
    vals = [set(loaded[f]["val"].keys) for f in (0, 1, 2)]
    assert not (vals[0] & vals[1] or vals[0] & vals[2] or vals[1] & vals[2])
    assert set().union(*vals) == set(loaded[None]["train"].keys) | set(loaded[None]["val"].keys)
    assert loaded[0]["test"].keys == loaded[None]["test"].keys


def test_cache_rows_written_out_of_order_load_as_one_array(tmp_path):
    """The cache's row files: rows land where they are written, read back in chunks, cut to the rows kept, and
    load as an ordinary ``.npy``; a row of the wrong shape is refused rather than written misaligned."""
    rows = np.arange(5 * 2 * 3 * 4, dtype=np.float16).reshape(5, 2, 3, 4)
    out = cache._RowFile(tmp_path / "a.npy", np.float16, (8, 2, 3, 4))
    for i in (3, 0, 4, 1, 2):
        out.write(i, rows[i : i + 1])
    out.write(1, rows[1:3])  # several rows at once
    assert np.array_equal(np.concatenate([chunk for _, chunk in out.chunks(5)]), rows)
    with pytest.raises(ValueError, match="do not fit"):
        out.write(7, rows[:2])
    with pytest.raises(ValueError, match="do not fit"):
        out.write(0, rows[:1, :1])
    out.close()
    cache._shrink_npy(out.path, 5)
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert loaded.dtype == np.float16 and np.array_equal(loaded, rows)
