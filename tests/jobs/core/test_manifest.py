"""The stage contract's writer and manifests: outputs first, manifest last, cache keys, withdrawal and pruning."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from jobs.core.errors import DataError
from jobs.core.manifest import (
    Manifest,
    OutputRecord,
    StageWriter,
    compute_cache_key,
    read_manifest,
    require_manifest,
)
from jobs.core.paths import manifest_key
from jobs.core.store import open_store

PREFIX = "index/demo/"
INPUTS = {"raw/demo/": "a" * 64}


class RecordingStore:
    """A real store that also remembers the order of the keys written to it (to observe the write order)."""

    def __init__(self, store):
        self._store = store
        self.written: list[str] = []

    def put_bytes(self, key, data, sha256=None):
        info = self._store.put_bytes(key, data, sha256=sha256)
        self.written.append(key)
        return info

    def put_file(self, key, path, sha256=None):
        info = self._store.put_file(key, path, sha256=sha256)
        self.written.append(key)
        return info

    def __getattr__(self, name):
        return getattr(self._store, name)


def sealed(store, params=None, inputs=None, files=None, summary=None) -> Manifest:
    """Run a stage that writes ``files`` under PREFIX and commit it."""
    writer = StageWriter(store, "index", PREFIX, params or {"seed": 1}, inputs or INPUTS)
    writer.begin()
    for name, data in (files or {"index.parquet": b"table", "quarantine.csv": b"key,reason\n"}).items():
        writer.put_bytes(name, data)
    return writer.commit(summary=summary or {"rows": 1})


def test_manifest_is_written_last_and_lists_every_output(store_uri):
    # GIVEN a stage writing two outputs
    store = RecordingStore(open_store(store_uri))
    writer = StageWriter(store, "index", PREFIX, {"seed": 1}, INPUTS)
    writer.begin()
    writer.put_bytes("quarantine.csv", b"key,reason\n")
    with writer.open_write("index.parquet") as fh:
        fh.write(b"table")
    # WHEN outputs exist but the stage has not committed, THEN nothing is trusted yet
    assert read_manifest(store, PREFIX) is None
    # WHEN it commits
    manifest = writer.commit(summary={"rows": 2})
    # THEN the manifest is the last object written, and lists each output with size and SHA-256
    assert store.written[-1] == manifest_key(PREFIX)
    assert manifest.outputs == (
        OutputRecord(key=PREFIX + "index.parquet", size=5, sha256=store.head(PREFIX + "index.parquet").sha256),
        OutputRecord(key=PREFIX + "quarantine.csv", size=11, sha256=store.head(PREFIX + "quarantine.csv").sha256),
    )
    stored = read_manifest(store, PREFIX)
    assert stored == manifest
    assert stored.inputs == INPUTS and stored.params == {"seed": 1} and stored.summary == {"rows": 2}
    assert stored.output("index.parquet").size == 5


def test_a_stage_killed_before_commit_leaves_no_manifest_and_no_cache_hit(store_uri):
    # GIVEN a sealed run, then a rerun that withdrew it, wrote one output and died
    store = open_store(store_uri)
    sealed(store)
    writer = StageWriter(store, "index", PREFIX, {"seed": 1}, INPUTS)
    writer.begin()
    writer.put_bytes("index.parquet", b"half")
    # THEN readers see no output, and the next run is not a cache hit
    assert read_manifest(store, PREFIX) is None
    with pytest.raises(DataError, match=r"no _SUCCESS.json at .*index/demo/.*run irmsia-index first"):
        require_manifest(store, PREFIX, "index")
    assert StageWriter(store, "index", PREFIX, {"seed": 1}, INPUTS).cached() is None


def test_cached_hits_only_for_the_same_key_and_present_outputs(store_uri):
    # GIVEN a sealed stage
    store = open_store(store_uri)
    manifest = sealed(store)

    def cached(params=None, inputs=None, force=False):
        return StageWriter(store, "index", PREFIX, params or {"seed": 1}, inputs or INPUTS).cached(force)

    # THEN the same parameters and inputs hit, in any key order
    assert cached() == manifest
    assert cached(inputs=dict(reversed(list({**INPUTS, "raw/x/": "b" * 64}.items())))) is None
    # and a changed parameter, a changed input or --force miss
    assert cached(params={"seed": 2}) is None
    assert cached(inputs={"raw/demo/": "c" * 64}) is None
    assert cached(force=True) is None
    # WHEN an output is resized or deleted behind the manifest's back, THEN it misses
    store.put_bytes(PREFIX + "index.parquet", b"longer table")
    assert cached() is None
    store.delete(PREFIX + "index.parquet")
    assert cached() is None


def test_begin_withdraws_the_old_manifest(store_uri):
    store = open_store(store_uri)
    sealed(store)
    StageWriter(store, "index", PREFIX, {"seed": 2}, INPUTS).begin()
    assert not store.exists(manifest_key(PREFIX))
    assert store.exists(PREFIX + "index.parquet")  # outputs stay until the rerun overwrites or prunes them


@pytest.mark.parametrize("prune, left", [(True, []), (False, ["index/demo/old.csv"])])
def test_commit_prunes_leftovers_of_earlier_runs(store_uri, prune, left):
    # GIVEN an earlier run that wrote old.csv, and a rerun that does not
    store = open_store(store_uri)
    sealed(store, files={"index.parquet": b"v1", "old.csv": b"x"})
    store.put_bytes("index/demo2/keep.csv", b"another prefix")  # a sibling prefix is not ours
    writer = StageWriter(store, "index", PREFIX, {"seed": 2}, INPUTS)
    writer.begin()
    writer.put_bytes("index.parquet", b"v2")
    # WHEN it commits
    manifest = writer.commit(prune=prune)
    # THEN leftovers are removed (unless prune=False), and only this run's outputs are listed
    keys = [o.key for o in store.list(PREFIX)]
    assert keys == sorted(["index/demo/index.parquet", manifest_key(PREFIX), *left])
    assert [o.key for o in manifest.outputs] == ["index/demo/index.parquet"]
    assert store.exists("index/demo2/keep.csv")


def test_content_sha256_ignores_timings_but_not_results(tmp_path):
    # GIVEN the same computation sealed twice (different timings)
    first = sealed(open_store(str(tmp_path / "a")))
    second = sealed(open_store(str(tmp_path / "b")))
    assert (first.started_at, first.finished_at) != ("", "")
    # THEN the identity is the same, and it changes with timings only if the outputs change
    retimed = replace(first, started_at="2000-01-01T00:00:00Z", finished_at="x", duration_s=99.0, summary={})
    assert first.content_sha256 == second.content_sha256 == retimed.content_sha256
    changed = replace(first, outputs=(replace(first.outputs[0], sha256="0" * 64), *first.outputs[1:]))
    assert changed.content_sha256 != first.content_sha256
    assert replace(first, cache_key="other").content_sha256 != first.content_sha256
    # and the manifest's JSON carries it
    assert json.loads(first.to_json())["content_sha256"] == first.content_sha256


def test_cache_key_depends_on_stage_params_inputs_and_version():
    base = compute_cache_key("index", {"a": 1}, INPUTS, "0.1.0")
    assert base == compute_cache_key("index", {"a": 1}, dict(INPUTS), "0.1.0")
    assert base != compute_cache_key("split", {"a": 1}, INPUTS, "0.1.0")
    assert base != compute_cache_key("index", {"a": 2}, INPUTS, "0.1.0")
    assert base != compute_cache_key("index", {"a": 1}, {"raw/demo/": "b" * 64}, "0.1.0")
    assert base != compute_cache_key("index", {"a": 1}, INPUTS, "0.2.0")


def test_manifest_json_round_trips(tmp_path):
    manifest = sealed(open_store(str(tmp_path)))
    assert Manifest.from_json(manifest.to_json(), "k") == manifest


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"3",
        b"null",
        b'{"stage": "index"}',
        b'{"stage": "index", "prefix": "p/", "cache_key": "k", "params": {}, "inputs": {}, "outputs": [1]}',
        b'{"stage": "index", "prefix": "p/", "cache_key": "k", "params": {}, "inputs": {}, "outputs": [], "x": 1}',
    ],
    ids=["text", "binary", "list", "number", "null", "missing-fields", "bad-output", "unknown-field"],
)
def test_a_corrupt_manifest_is_a_data_error_naming_it(raw):
    with pytest.raises(DataError, match=r"index/demo/_SUCCESS.json: not a valid stage manifest.*--force"):
        Manifest.from_json(raw, "index/demo/_SUCCESS.json")


def test_a_missing_output_is_a_data_error(tmp_path):
    manifest = sealed(open_store(str(tmp_path)))
    with pytest.raises(DataError, match=r"index/demo/_SUCCESS.json lists no output 'nope.csv'; rerun the index"):
        manifest.output("nope.csv")


def test_only_objects_under_the_prefix_can_be_recorded(tmp_path):
    store = open_store(str(tmp_path))
    writer = StageWriter(store, "index", PREFIX, {}, {})
    for key in ("index/other/a", manifest_key(PREFIX)):
        with pytest.raises(ValueError, match="is not an output of"):
            writer.record(store.put_bytes(key, b"x"))
    with pytest.raises(ValueError, match="must end with '/'"):
        StageWriter(store, "index", "index/demo", {}, {})
