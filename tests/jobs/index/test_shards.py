"""A sharded index (plan, parts, gather) writes exactly the index an unsharded run writes, on both store backends."""

from __future__ import annotations

import pytest

import jobs.index.shards as index_shards
from jobs.core.errors import DataError, UsageError
from jobs.core.manifest import read_manifest
from jobs.core.shards import ShardLimits
from jobs.core.store import open_store
from jobs.index.dicom_header import DicomHeader
from jobs.index.formats import Geometry
from jobs.index.inspection import Inspection
from jobs.index.settings import IndexSettings
from jobs.index.shards import decode, encode
from jobs.index.stage import run
from tests.jobs.index.conftest import put_raw
from tests.support.dicom_files import dicom_bytes

SMALL = ShardLimits(max_items=3, max_bytes=1 << 30, max_shards=64)
"""Three files a shard: the eleven files to index below become four parts."""


def _dataset() -> dict[str, bytes]:
    """Two classes, a duplicate whose original is in an earlier shard, broken files and a sidecar."""
    files = {
        f"{label}/{patient}-{i}.dcm": dicom_bytes(patient, seed=seed, modality="CR")
        for seed, (label, patient, i) in enumerate(
            [("NORMAL", "P1", 0), ("NORMAL", "P1", 1), ("NORMAL", "P2", 0), ("NORMAL", "P4", 0),
             ("PNEUMONIA", "P3", 0), ("PNEUMONIA", "P5", 0), ("PNEUMONIA", "P5", 1)]
        )
    }  # fmt: skip
    files["PNEUMONIA/P3-copy.dcm"] = files["NORMAL/P1-0.dcm"]  # same bytes, three shards later
    files["PNEUMONIA/empty.dcm"] = b""
    files["PNEUMONIA/notes.bin"] = b"not an image, just bytes " * 10
    files["NORMAL/truncated.dcm"] = dicom_bytes("P9", rows=32, columns=32)[:-100]
    files["LICENSE"] = b"CC-BY"
    return files


def _settings(store_uri: str, *extra: str) -> IndexSettings:
    return IndexSettings.parse(["--dataset", "ds", "--store", store_uri, "--workers", "1", *extra], {})


def _sharded(store_uri: str) -> list:
    """Plan, every part, gather: what the DAG's fan-out runs; returns each step's result."""
    plan = run(_settings(store_uri, "--shard", "plan"))
    parts = [run(_settings(store_uri, "--shard", shard)) for shard in plan.manifest.summary["shards"]]
    return [plan, *parts, run(_settings(store_uri, "--shard", "gather"))]


def _sealed(store_uri: str) -> dict:
    store = open_store(store_uri)
    manifest = read_manifest(store, "index/ds/")
    assert manifest is not None
    files = {o.key: store.get_bytes(o.key) for o in manifest.outputs}
    return {"identity": manifest.content_sha256, "cache_key": manifest.cache_key, "files": files}


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(index_shards, "INDEX_LIMITS", SMALL)


def test_sharded_index_is_byte_identical_to_the_unsharded_one(store_uri, tmp_path, small_shards):
    # GIVEN the same collected dataset in two stores
    unsharded_uri = str(tmp_path / "unsharded")
    for uri in (store_uri, unsharded_uri):
        put_raw(open_store(uri), "ds", _dataset())
    # WHEN one is indexed in one run and the other in four shards and a gather
    run(_settings(unsharded_uri))
    plan, *parts, gather = _sharded(store_uri)
    # THEN the plan named four parts, each sealed its own, and the gather sealed the index
    assert plan.manifest.summary["shards"] == ["1/4", "2/4", "3/4", "4/4"]
    assert plan.manifest.summary["files"] == 11
    assert [p.cached for p in parts] == [False] * 4 and not gather.cached
    # AND index.parquet, quarantine.csv and the manifest's identity are the unsharded run's, byte for byte
    assert _sealed(store_uri) == _sealed(unsharded_uri)
    # AND the duplicate in the last shard names its original from the first, as in one run
    quarantine = open_store(store_uri).get_bytes("index/ds/quarantine.csv").decode()
    assert "raw/ds/PNEUMONIA/P3-copy.dcm,duplicate of raw/ds/NORMAL/P1-0.dcm" in quarantine
    # AND the parts are gone once gathered
    assert list(open_store(store_uri).keys("shards/")) == []


def test_a_rerun_of_the_fan_out_is_a_cache_hit_at_every_step(tmp_path, small_shards):
    # GIVEN a sharded index, sealed
    uri = str(tmp_path / "store")
    put_raw(open_store(uri), "ds", _dataset())
    _sharded(uri)
    before = _sealed(uri)
    # WHEN the whole fan-out runs again
    plan, *parts, gather = _sharded(uri)
    # THEN every step finds index/ds/ sealed, writes nothing, and the index is unchanged
    assert plan.cached and all(p.cached for p in parts) and gather.cached
    assert _sealed(uri) == before and list(open_store(uri).keys("shards/")) == []


def test_gather_refuses_a_missing_part_and_seals_nothing(tmp_path, small_shards):
    # GIVEN a plan whose third part never ran
    uri = str(tmp_path / "store")
    put_raw(open_store(uri), "ds", _dataset())
    for shard in ("1/4", "2/4", "4/4"):
        run(_settings(uri, "--shard", shard))
    # WHEN the gather runs THEN it fails as bad data, naming the part to run, and index/ds/ stays unsealed
    with pytest.raises(DataError, match=r"shards/index/ds/3-of-4/: shard 3/4 of index/ds/ is not sealed.*--shard 3/4"):
        run(_settings(uri, "--shard", "gather"))
    assert read_manifest(open_store(uri), "index/ds/") is None
    # AND once the part ran, the gather seals the index
    run(_settings(uri, "--shard", "3/4"))
    assert not run(_settings(uri, "--shard", "gather")).cached


def test_gather_refuses_a_part_sealed_for_other_inputs(tmp_path, small_shards):
    # GIVEN parts sealed for one collect, then the dataset recollected with one file changed
    uri = str(tmp_path / "store")
    store = open_store(uri)
    put_raw(store, "ds", _dataset())
    for shard in ("1/4", "2/4", "3/4", "4/4"):
        run(_settings(uri, "--shard", shard))
    put_raw(store, "ds", {**_dataset(), "NORMAL/P4-0.dcm": dicom_bytes("P4", seed=99)})
    # THEN the gather does not mix the stale parts into the new index
    with pytest.raises(DataError, match="shard 1/4 of index/ds/ is sealed for other inputs"):
        run(_settings(uri, "--shard", "gather"))


@pytest.mark.parametrize(
    ("shard", "match"),
    [("2/5", r"--shard 2/5: index/ds/ is planned in 4 shard\(s\); use K/4"), ("0/4", "--shard '0/4': use plan"),
     ("5/4", "--shard '5/4'"), ("gathr", "--shard 'gathr'")],
)  # fmt: skip
def test_a_shard_that_is_not_in_the_plan_is_a_usage_error(tmp_path, small_shards, shard, match):
    uri = str(tmp_path / "store")
    put_raw(open_store(uri), "ds", _dataset())
    with pytest.raises(UsageError, match=match):
        run(_settings(uri, "--shard", shard))


@pytest.mark.parametrize(
    "item",
    [
        Inspection("raw/ds/a.dcm", "ab" * 32, 10, "dicom",
                   dicom=DicomHeader(
                       patient_id="P ü", study_uid="1.2", series_uid=None, sop_uid="1.2.3", modality="CR",
                       body_part=None, photometric="MONOCHROME1", transfer_syntax="1.2.840", rows=8, columns=9,
                       bits_allocated=16, bits_stored=12, samples_per_pixel=1, frames=None,
                       pixel_spacing_row=0.1 + 0.2, pixel_spacing_col=1e-7)),
        Inspection("raw/ds/b.png", "cd" * 32, 3, "png", geometry=Geometry(rows=2, columns=3)),
        Inspection("raw/ds/c.bin", None, 0, reason="not an image: …"),
    ],
)  # fmt: skip
def test_inspections_survive_the_shard_file_exactly(item):
    assert decode(encode(item)) == item
    assert encode(decode(encode(item))) == encode(item)
