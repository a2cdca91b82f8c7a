"""Every stage image runs its stage's console script as UID 10001 on a read-only root file system.

Torch rule: collect, index and split images carry no torch (small images, nothing GPU-shaped); register needs
torch to export TorchScript/ONNX, so it shares the CPU torch layer with irmsia-train-cpu.
"""

from __future__ import annotations

import subprocess

import pytest

from jobs.stages import image_of
from pipeline.dag import PIPELINE
from tests.support.docker_engine import CPU_TARGETS, REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]

STAGE_OF = {target: image_of(target).name for target in CPU_TARGETS}
WITHOUT_TORCH = ("irmsia-collect", "irmsia-index", "irmsia-split")
WITH_TORCH = ("irmsia-register", "irmsia-train-cpu")
FIND_TORCH = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('torch') else 10)"


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_entrypoint_is_the_stage_console_script_run_as_uid_10001(stage_images, target):
    # GIVEN a built stage image WHEN its config is inspected
    config = stage_images.inspect(target)
    # THEN it runs the console script the DAG names, as the fixed non-root user
    assert config["Entrypoint"] == [f"/opt/irmsia/bin/{PIPELINE.stage(STAGE_OF[target]).entrypoint}"]
    assert config["User"] == "10001:10001"
    # AND a process in it really has UID 10001
    proc = stage_images.run("--entrypoint", "id", stage_images.ref(target), "-u")
    assert proc.stdout.strip() == "10001", proc.stderr


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_help_works_on_a_read_only_root_fs(stage_images, target):
    # WHEN the stage's --help runs with only /tmp writable, as a pod runs it
    proc = stage_images.run("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", stage_images.ref(target), "--help")
    # THEN it imports everything it needs and prints its usage
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout and "--store" in proc.stdout


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_home_and_caches_are_writable_under_read_only_root(stage_images, target):
    # GIVEN a read-only root with a tmpfs on /tmp
    script = (
        "import os, pathlib; root = pathlib.Path('/opt/irmsia')\n"
        "for var in ('HOME', 'XDG_CACHE_HOME', 'MPLCONFIGDIR'):\n"
        "    p = pathlib.Path(os.environ[var]); p.mkdir(parents=True, exist_ok=True); (p / 'x').write_text('x')\n"
        "try:\n    (root / 'x').write_text('x')\nexcept OSError:\n    print('root read-only')\n"
    )
    # WHEN the process writes its home and caches, and tries the venv
    proc = stage_images.run("--read-only", "--tmpfs", "/tmp", "--entrypoint", "python", stage_images.ref(target),
                            "-c", script)  # fmt: skip
    # THEN the first work and the second is refused
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "root read-only"


@pytest.mark.parametrize(("target", "has_torch"), [(t, False) for t in WITHOUT_TORCH] + [(t, True) for t in WITH_TORCH])
def test_torch_only_in_the_train_and_register_images(stage_images, target, has_torch):
    proc = stage_images.run("--entrypoint", "python", stage_images.ref(target), "-c", FIND_TORCH)
    assert proc.returncode == (0 if has_torch else 10), proc.stderr[-2000:]


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_installed_versions_are_the_pinned_ones(stage_images, target):
    # GIVEN the image lock
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "docker" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    # WHEN the image's packages are listed
    proc = stage_images.run("--entrypoint", "python", stage_images.ref(target), "-m", "pip", "list",
                            "--format=freeze", "--exclude", "pip", "--exclude", "setuptools")  # fmt: skip
    installed = dict(line.split("==", 1) for line in proc.stdout.split())
    # THEN every package but the project and the venv's own pip and setuptools is at its pinned version
    installed.pop("irmsia-pipeline")
    unpinned = {n: v for n, v in installed.items() if pins.get(n.lower().replace("_", "-")) != v}
    assert not unpinned, f"installed versions differ from docker/constraints.txt: {unpinned}"


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_oci_labels_name_source_version_and_revision(stage_images, target):
    labels = stage_images.inspect(target)["Labels"]
    revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    assert labels["org.opencontainers.image.title"] == target
    assert labels["org.opencontainers.image.revision"] == revision
    assert labels["org.opencontainers.image.version"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
