"""The whole pipeline, end to end, on the demo dataset: both store backends, then a rerun that is all cache hits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.paths import run_prefix
from jobs.core.store import open_store

pytestmark = [pytest.mark.slow]


def _irmsia_run(store: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--store", store, "--profile", "demo", *extra],
        env={**os.environ, "IRMSIA_LOG_FORMAT": "text", **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.integration)])
def test_demo_pipeline_trains_an_accurate_registered_model(backend, tmp_path, request):
    # GIVEN an empty store on this backend
    store_uri = str(tmp_path / "store") if backend == "file" else request.getfixturevalue("s3_store_uri")
    # WHEN the whole DAG runs on the demo source
    first = _irmsia_run(store_uri)
    # THEN every stage succeeded and the summary names them all
    assert first.returncode == 0, first.stderr[-4000:]
    for stage in ("collect", "index", "split", "train", "register"):
        assert f"  {stage}" in first.stdout
    # AND the run's validation accuracy is at least 0.9 and the model is registered with lineage
    store = open_store(store_uri)
    (run_id,) = {o.key.split("/")[1] for o in store.list("runs/")}  # one run, its id derived by train
    metrics = json.loads(store.get_bytes(run_prefix(run_id) + "metrics.json"))
    assert metrics["val_accuracy"] >= 0.9, metrics
    train = read_manifest(store, run_prefix(run_id))
    assert train is not None and "splits/demo/" in train.inputs
    assert any(o.key.startswith("registry/demo-classifier/") for o in store.list("registry/demo-classifier/"))
    # WHEN it runs again with the same inputs
    second = _irmsia_run(store_uri)
    # THEN every stage is a cache hit
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count(" cached ") == 5, second.stdout
