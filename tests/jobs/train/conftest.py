"""Fixtures for the train tests: a tiny synthetic split sealed in a store, and settings to train on it fast."""

from __future__ import annotations

import os

# Sleeping, not spinning, OpenMP threads (what irmsia-train picks on a busy host, and a test run is one): effective
# only if torch is not loaded yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import Any

import pytest

from jobs.core.settings import CommonSettings
from jobs.train.settings import TrainSettings


@pytest.fixture
def fast_settings(tmp_path):
    """Build ``TrainSettings`` for a tiny CPU run (small-cnn, 32 px) on ``store``, overriding any field."""

    def build(store: str, **overrides: Any) -> TrainSettings:
        values: dict[str, Any] = {
            "dataset": "tiny",
            "model": "small-cnn",
            "epochs": 2,
            "image_size": 32,
            "batch_size": 8,
            "device": "cpu",
            "workers": 0,
            "cache_dir": str(tmp_path / "cache"),
            "common": CommonSettings(store=store, log_format="text"),
        }
        values.update(overrides)
        return TrainSettings(**values)

    return build
