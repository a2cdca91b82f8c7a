"""``irmsia-train`` keeps the torch of its CUDA base image and installs only the rest of the train extra.

The PyTorch CUDA base needs a registry, so a local stand-in with torch in the system interpreter's site-packages
(as in the pytorch/pytorch images) takes its place through ``CUDA_BASE_IMAGE``.
"""

from __future__ import annotations

import pytest

from tests.support.docker_engine import build_train_on_torch_base

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def train_image(stage_images, tmp_path_factory) -> str:
    return build_train_on_torch_base(stage_images, tmp_path_factory.mktemp("train-image"))


def test_train_image_uses_the_base_images_torch(stage_images, train_image):
    # WHEN the train image imports torch
    proc = stage_images.run("--entrypoint", "python", train_image, "-c", "import torch, monai; print(torch.__file__)")
    # THEN torch comes from the base image, not from a second copy in the venv
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("/usr/local/lib/python3.11/dist-packages/torch/")
    venv = stage_images.run("--entrypoint", "sh", train_image, "-c", "ls /opt/irmsia/lib/python3.11/site-packages")
    assert "monai" in venv.stdout.split() and "torch" not in venv.stdout.split()


def test_train_image_runs_read_only_as_uid_10001(stage_images, train_image):
    assert stage_images.inspect("irmsia-train")["User"] == "10001:10001"
    proc = stage_images.run("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", train_image, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
