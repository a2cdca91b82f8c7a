"""A file the index accepts is one train can read: pydicom's and nibabel's own test files, indexed and decoded.

Every row of the index decodes with train's preprocessing as a 2-D image and, where the index says it is part of
a volume, as a volume. Header mode cannot see damage inside compressed pixel payloads; the few such files must be
exactly the ones ``--verify-pixels`` quarantines.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from collections import defaultdict
from pathlib import Path

import nibabel
import pyarrow.parquet as pq
from pydicom.data import get_testdata_files

from jobs.core.errors import DataError
from jobs.core.store import open_store
from jobs.index.settings import IndexSettings
from jobs.index.stage import run
from jobs.ml.preprocess import Preprocessing
from jobs.ml.quiet import quiet_decoders
from tests.jobs.index.conftest import put_raw


def _corpus() -> dict[str, bytes]:
    nib = os.path.dirname(nibabel.__file__)
    sources = {
        "pydicom": [p for p in get_testdata_files() if os.path.isfile(p)],
        "nibabel": sorted(glob.glob(os.path.join(nib, "tests", "data", "*"))),
        "nicom": sorted(glob.glob(os.path.join(nib, "nicom", "tests", "data", "*"))),
    }
    files = {}
    for name, paths in sources.items():
        paths = [p for p in paths if os.path.isfile(p)]
        root = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
        for path in paths:
            files[f"{name}/{os.path.relpath(path, root)}"] = Path(path).read_bytes()
    return files


def _index(uri: str, files: dict[str, bytes], *extra: str) -> tuple[list[dict], dict[str, str]]:
    store = open_store(uri)
    put_raw(store, "corpus", files)
    run(IndexSettings.parse(["--dataset", "corpus", "--store", uri, "--workers", "2", *extra], {}))
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/corpus/index.parquet"))).to_pylist()
    reasons = csv.DictReader(io.StringIO(store.get_bytes("index/corpus/quarantine.csv").decode()))
    return rows, {r["key"]: r["reason"] for r in reasons}


def _undecodable(rows: list[dict], files: dict[str, bytes]) -> dict[str, str]:
    """Key -> why train's preprocessing fails on it, for every indexed row (2-D) and every volume (3-D)."""
    failed = {}
    flat, volume = Preprocessing(image_size=16), Preprocessing(image_size=16, dims=3, depth=4)
    members: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        data = files[row["key"].removeprefix("raw/corpus/")]
        try:
            with quiet_decoders():
                flat(data, row["key"])
        except DataError as exc:
            failed[row["key"]] = str(exc)
        if row["volume"] is not None:
            members[row["volume"]].append(row)
    for name, slices in members.items():
        ordered = [files[r["key"].removeprefix("raw/corpus/")] for r in sorted(slices, key=lambda r: r["key"])]
        try:
            with quiet_decoders():
                x, _ = volume.volume(ordered, name)
            assert x.shape == (1, 4, 16, 16)
        except DataError as exc:
            failed.update({r["key"]: str(exc) for r in slices})
    return failed


def test_every_file_the_index_accepts_decodes_in_train(tmp_path):
    # GIVEN pydicom's and nibabel's test files as one raw dataset
    files = _corpus()
    # WHEN indexed in header mode, and again with --verify-pixels
    rows, quarantine = _index(str(tmp_path / "header"), files)
    verified, verify_quarantine = _index(str(tmp_path / "verify"), files, "--verify-pixels")
    # THEN NIfTI and DICOM volumes are among the rows, and what cannot be read is quarantined with a reason
    formats = {r["format"] for r in rows}
    assert {"dicom", "nifti"} <= formats and any(r["volume"] for r in rows)
    for name in ("nibabel/nifti1.hdr", "nibabel/row_major.dconn.nii", "nibabel/test.mgz"):
        assert quarantine[f"raw/corpus/{name}"], name
    # AND every row of the verified index decodes in train, as an image and as a volume where it is one
    assert _undecodable(verified, files) == {}
    # AND header mode lets through only compressed payloads damaged inside, each quarantined by --verify-pixels
    for key, why in _undecodable(rows, files).items():
        assert verify_quarantine[key].startswith("pixel data cannot be decoded"), (key, why)
