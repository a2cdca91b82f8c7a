"""The whole demo pipeline, each stage in its own container, gives what the process executor gives.

Both runs use the real SeaweedFS S3 server on 127.0.0.1 (containers on the host network), the same parameters and
fresh buckets; the containers run as UID 10001 on a read-only root file system, credentials passed by name.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from jobs.core.manifest import require_manifest
from jobs.core.store import open_store
from pipeline.cli.run import resolve_values
from pipeline.dag import PIPELINE
from pipeline.docker_executor import DockerExecutor
from pipeline.runner import ProcessExecutor, run_pipeline
from tests.support.docker_engine import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.integration]

# The demo dataset with the smallest network and one epoch: the containers, not the training, are under test.
CLI_PARAMETERS = ("source", "dataset", "model", "epochs", "image_size", "batch_size", "run_id")
VALUES = resolve_values(PIPELINE, {"source": "demo", "dataset": "demo", "model": "small-cnn", "epochs": "1",
                                   "image_size": "32", "batch_size": "8"})  # fmt: skip
# The demo split has no folds, so the fold trainings' fan-out plans no runs, as Argo skips a withParam of [].
RUNS = [s.name for s in PIPELINE.order() if not s.fan_out]


def _index_rows(store_uri: str) -> list[dict]:
    store = open_store(store_uri)
    manifest = require_manifest(store, "index/demo/", "index")
    key = next(o.key for o in manifest.outputs if o.key.endswith("index.parquet"))
    return pq.read_table(io.BytesIO(store.get_bytes(key))).to_pylist()


def _split_files(store_uri: str) -> dict[str, bytes]:
    store = open_store(store_uri)
    manifest = require_manifest(store, "splits/demo/", "split")
    return {o.key: store.get_bytes(o.key) for o in manifest.outputs if o.key.endswith((".csv", ".json", ".txt"))}


def test_demo_pipeline_in_containers_matches_the_process_run(stage_images, seaweedfs, s3_env):
    # GIVEN two fresh buckets on the S3 server and the same parameters
    env = {**os.environ, **s3_env}
    stores = {kind: f"s3://{seaweedfs.create_bucket(f'{kind}-{secrets.token_hex(4)}')}/irmsia"
              for kind in ("process", "docker")}  # fmt: skip
    docker = DockerExecutor(tag=stage_images.tag, docker=stage_images.docker)
    # WHEN the pipeline runs once as processes and once as containers
    process = run_pipeline(PIPELINE, VALUES, store=stores["process"], executor=ProcessExecutor(), env=env)
    containers = run_pipeline(PIPELINE, VALUES, store=stores["docker"], executor=docker, env=env)
    # THEN every stage succeeded in its container and reported its result through the mounted result file
    assert [(o.name, o.exit_code) for o in containers] == [(name, 0) for name in RUNS]
    assert [(o.name, o.exit_code) for o in process] == [(name, 0) for name in RUNS]
    assert all(o.result and not o.result["cached"] for o in containers)
    # AND the index rows and the splits are the same as the process executor's, byte for byte
    assert _index_rows(stores["docker"]) == _index_rows(stores["process"])
    assert _split_files(stores["docker"]) == _split_files(stores["process"])
    by_stage = {o.name: o.result for o in containers}
    assert by_stage["split"]["content_sha256"] == {o.name: o.result for o in process}["split"]["content_sha256"]
    # AND a model version was registered under the requested name, with its model files sealed by its manifest
    version_prefix = by_stage["register"]["prefix"]
    assert version_prefix.startswith(f"registry/{VALUES['model_name']}/")
    assert version_prefix == {o.name: o.result for o in process}["register"]["prefix"]
    registered = require_manifest(open_store(stores["docker"]), version_prefix, "register")
    assert any(o.key.endswith((".pt", ".ts", ".onnx")) for o in registered.outputs)
    # WHEN `irmsia run --executor docker` runs the same pipeline again THEN every stage is a cache hit, but for the
    # fold aggregate: without folds it has nothing to aggregate, seals nothing and so has nothing to hit
    assert by_stage["train-cv"]["summary"] == {"cv_id": "", "folds": 0}
    flags = [arg for name in CLI_PARAMETERS for arg in (PIPELINE.parameter(name).flag, VALUES[name])]
    cli = [sys.executable, "-m", "pipeline", "run", "--executor", "docker", "--image-tag", stage_images.tag]
    proc = subprocess.run(
        [*cli, "--store", stores["docker"], *flags], env=env, capture_output=True, text=True, cwd=REPO
    )
    summary = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line.split()[:2] for line in summary.splitlines() if line.startswith("  ") and "s  " in line] == [
        [name, "done" if name == "train-cv" else "cached"] for name in RUNS
    ]
