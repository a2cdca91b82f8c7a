"""Checkpoints carry only seeded state: two separate ``irmsia-train`` processes seal the same bytes, checkpoint too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.support.synthetic_split import write_split

REPO = Path(__file__).resolve().parents[3]


def _train(store_uri: str, cache_dir: Path) -> subprocess.CompletedProcess:
    argv = ["--store", store_uri, "--dataset", "tiny", "--run-id", "twin", "--model", "small-cnn", "--epochs", "2",
            "--image-size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu",
            "--cache-dir", str(cache_dir)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "IRMSIA_LOG_FORMAT": "json"}
    # A fresh interpreter each time: Python's and NumPy's global generators start from OS entropy there.
    return subprocess.run([sys.executable, "-m", "jobs.train", *argv], env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_two_uninterrupted_runs_seal_identical_bytes(tmp_path):
    # GIVEN the same split in two stores
    uris = [str(tmp_path / "store-a"), str(tmp_path / "store-b")]
    for uri in uris:
        write_split(open_store(uri), "tiny")
    # WHEN the same training runs once in each, in two separate processes
    for i, uri in enumerate(uris):
        done = _train(uri, tmp_path / f"cache-{i}")
        assert done.returncode == 0, done.stderr[-2000:]
    # THEN every sealed output, the checkpoint included, is the same bytes, and so is the run's identity
    a, b = (open_store(uri) for uri in uris)
    first, second = read_manifest(a, "runs/twin/"), read_manifest(b, "runs/twin/")
    assert "runs/twin/checkpoints/last.pt" in {o.key for o in first.outputs}
    for rec in first.outputs:
        assert a.get_bytes(rec.key) == b.get_bytes(rec.key), f"{rec.key} differs between two identical runs"
    assert second.outputs == first.outputs
    assert second.content_sha256 == first.content_sha256
