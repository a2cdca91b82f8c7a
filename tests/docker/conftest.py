"""The ``docker`` tests' session fixture: a Docker engine and every CPU stage image, built once per session.

The base image (debootstrap) is cached across sessions under a tag keyed by its recipe; the stage images reuse
BuildKit's layer cache, so a warm session only rebuilds what changed. Skipped, with the reason, where Docker
cannot run.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.docker_engine import EngineUnavailable, StageImages, build_stage_images


@pytest.fixture(scope="session")
def stage_images(tmp_path_factory: pytest.TempPathFactory) -> StageImages:
    """Every CPU stage image built from the working tree, tagged ``test``; skips where Docker is unavailable."""
    log_dir = tmp_path_factory.mktemp("docker-build")
    started = time.monotonic()
    try:
        images = build_stage_images(log_dir)
    except EngineUnavailable as exc:
        pytest.skip(f"docker tests need a Docker engine: {exc}")
    images.timings["total_s"] = time.monotonic() - started
    # Kept for the report: `cat` it after a run (logs of each step lie beside it).
    (log_dir / "timings.json").write_text(json.dumps(images.timings, indent=2))
    print(f"\nstage images built: {json.dumps({k: round(v, 1) for k, v in images.timings.items()})} ({log_dir})")
    return images
