"""``irmsia run --spec`` end to end on the offline example: two demo datasets collected and indexed side by side,
merged into one split, trained and registered; a rerun is all cache hits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.paths import index_prefix, splits_prefix
from jobs.core.store import open_store
from pipeline.history import read_runs
from tests.support.argo_schema import REPO_ROOT

pytestmark = [pytest.mark.slow]
SPEC = REPO_ROOT / "examples/demo-merged.yaml"
TASKS = ("collect-demo-a", "index-demo-a", "collect-demo-b", "index-demo-b", "split", "train", "train-cv", "register")


def _irmsia_run(store: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--spec", str(SPEC), "--jobs", "2", "--store", store],
        env={**os.environ, "IRMSIA_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_offline_spec_merges_two_datasets_into_one_registered_model(tmp_path):
    store_uri = str(tmp_path / "store")
    # WHEN the example spec runs two stages at a time
    first = _irmsia_run(store_uri)
    # THEN every task succeeded
    assert first.returncode == 0, first.stderr[-4000:]
    store = open_store(store_uri)
    (record,) = read_runs(store)
    assert sorted(s.name for s in record.stages) == sorted(TASKS)
    assert {s.state for s in record.stages} == {"done"}
    # AND the split read both datasets' indexes, whose seeds made them differ
    split = read_manifest(store, splits_prefix("demo-merged"))
    assert split is not None
    assert set(split.inputs) == {index_prefix("demo-a"), index_prefix("demo-b")}
    a, b = (read_manifest(store, index_prefix(d)) for d in ("demo-a", "demo-b"))
    assert a is not None and b is not None and a.content_sha256 != b.content_sha256
    assert any(o.key.startswith("registry/demo-merged-classifier/") for o in store.list("registry/"))
    # WHEN it runs again THEN every task is a cache hit
    second = _irmsia_run(store_uri)
    assert second.returncode == 0, second.stderr[-4000:]
    # every task but train-cv, which without split.folds finds nothing to aggregate (and seals nothing)
    assert second.stdout.count(" cached ") == len(TASKS) - 1, second.stdout
