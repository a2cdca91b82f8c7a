"""A Docker engine and the stage images for the ``docker`` tests, made from nothing but Debian packages.

No container registry is reachable from the test machines, so: install Debian's ``docker.io`` if docker is
missing, start ``dockerd`` if none answers, build the base image with debootstrap (``docker/base-image.sh``,
cached under a tag keyed by the recipe's hash), fill the wheelhouse (``docker/wheelhouse.sh``) and build every
CPU stage image offline from it (``docker/build-images.sh``, the script ``make images`` runs).
Each step raises ``EngineUnavailable`` with the reason when this machine cannot do it; the fixture skips on that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.stages import image_names, image_ref

REPO = Path(__file__).resolve().parents[2]
CPU_TARGETS = image_names(gpu=False)
"""Every image but a GPU stage's CUDA image (``irmsia-train``), whose base image needs a registry."""


class EngineUnavailable(RuntimeError):
    """Docker cannot run here (no root to install it, no daemon, no debootstrap…); the message says why."""


@dataclass(frozen=True)
class StageImages:
    """The built images and how long each step took (reported by the tests)."""

    docker: str
    tag: str
    base_image: str
    timings: dict[str, float]

    def ref(self, target: str) -> str:
        return image_ref(target, tag=self.tag)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``docker run --rm ARGS``; output captured as text."""
        return subprocess.run([self.docker, "run", "--rm", *args], capture_output=True, text=True, timeout=timeout)

    def inspect(self, target: str) -> dict:
        """``docker image inspect`` of one image's ``Config``."""
        out = subprocess.run([self.docker, "image", "inspect", self.ref(target)], capture_output=True, text=True)
        return json.loads(out.stdout)[0]["Config"]


def _run(cmd: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Run ``cmd``; on failure raise with the tail of its output (kept in ``log`` when given)."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed with exit {proc.returncode}:\n{tail}")
    return proc.stdout


def _answers(docker: str) -> bool:
    return subprocess.run([docker, "info"], capture_output=True).returncode == 0


def ensure_engine(log_dir: Path) -> str:
    """A docker client that reaches a running daemon, installing and starting one if this machine allows it."""
    docker = shutil.which("docker")
    if docker and _answers(docker):
        return docker
    if os.geteuid() != 0:
        raise EngineUnavailable("no running Docker engine, and installing one (apt-get install docker.io) needs root")
    if not shutil.which("dockerd"):
        if not shutil.which("apt-get"):
            raise EngineUnavailable("no Docker engine and no apt-get to install Debian's docker.io")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            _run(["apt-get", "install", "-y", "--no-install-recommends", "docker.io", "debootstrap"], env=env,
                 log=log_dir / "apt-docker.log")  # fmt: skip
        except RuntimeError as exc:
            raise EngineUnavailable(f"could not install docker.io: {exc}") from exc
    docker = shutil.which("docker") or "/usr/bin/docker"
    if not _answers(docker):
        log = open(log_dir / "dockerd.log", "ab")  # noqa: SIM115 - the daemon outlives this function
        subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not _answers(docker):
            if time.monotonic() > deadline:
                raise EngineUnavailable(f"dockerd did not answer within 60 s; see {log_dir / 'dockerd.log'}")
            time.sleep(1)
    return docker


def build_stage_images(log_dir: Path, tag: str = "test") -> StageImages:
    """Engine, cached debootstrap base, wheelhouse, then every CPU stage image; raises ``EngineUnavailable``."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    docker = ensure_engine(log_dir)
    timings["engine_s"] = time.monotonic() - started
    env = {**os.environ, "DOCKER": docker}

    started = time.monotonic()
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise EngineUnavailable("building the base image needs root and debootstrap (apt-get install debootstrap)")
    base = _run(["sh", "docker/base-image.sh"], env=env, log=log_dir / "base-image.log").strip().splitlines()[-1]
    timings["base_image_s"] = time.monotonic() - started

    started = time.monotonic()
    _run(["sh", "docker/wheelhouse.sh"], env={**env, "PYTHON": sys.executable}, log=log_dir / "wheelhouse.log")
    timings["wheelhouse_s"] = time.monotonic() - started

    started = time.monotonic()
    build_env = {**env, "TAG": tag, "BASE_IMAGE": base, "OFFLINE": "1", "TARGETS": " ".join(CPU_TARGETS)}
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        build_env["CA_BUNDLE"] = "/etc/ssl/certs/ca-certificates.crt"
    _run(["sh", "docker/build-images.sh"], env=build_env, log=log_dir / "build-images.log")
    timings["images_s"] = time.monotonic() - started
    return StageImages(docker=docker, tag=tag, base_image=base, timings=timings)


# A stand-in for the PyTorch CUDA base (which needs a registry): torch in the system interpreter's site-packages,
# as in the pytorch/pytorch images, so the irmsia-train target's "keep the base's torch" path is built for real.
TORCH_BASE_STANDIN = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN --mount=type=bind,source=docker,target=/docker \\
    python3 -m venv /var/tmp/pip && /var/tmp/pip/bin/pip install --no-cache-dir --no-index \\
    --find-links /docker/wheelhouse --target /usr/local/lib/python3.11/dist-packages \\
    "$(grep '^torch==' /docker/constraints.txt)" && rm -rf /var/tmp/pip
"""


def build_train_on_torch_base(images: StageImages, log_dir: Path) -> str:
    """Build ``irmsia-train`` on a local torch base image (the CUDA base's stand-in); returns its reference."""
    standin = f"irmsia-torch-base-standin:{images.tag}"
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    docker = _buildkit_client(images.docker)
    cmd = [docker, "build", "--build-arg", f"BASE_IMAGE={images.base_image}", "-t", standin, "-f", "-", "."]
    proc = subprocess.run(cmd, input=TORCH_BASE_STANDIN, text=True, capture_output=True, cwd=REPO, env=env)
    (log_dir / "torch-base.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"building the torch base stand-in failed:\n{proc.stderr[-3000:]}")
    build_env = {**os.environ, "DOCKER": images.docker, "TAG": images.tag, "OFFLINE": "1",
                 "TARGETS": "irmsia-train", "CUDA_BASE_IMAGE": standin, "BASE_IMAGE": images.base_image}  # fmt: skip
    _run(["sh", "docker/build-images.sh"], env=build_env, log=log_dir / "build-train.log")
    return images.ref("irmsia-train")


def _buildkit_client(docker: str) -> str:
    """``docker`` if it has buildx, else Debian's 20.10 client with BuildKit built in (as build-images.sh picks)."""
    if subprocess.run([docker, "buildx", "version"], capture_output=True).returncode == 0:
        return docker
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else docker


# Installs the core dependencies with the image's own pip-install.sh from the index, with an empty wheelhouse:
# what a build without `make wheels` does, through the proxy whose CA comes in as the `ca` build secret.
ONLINE_INSTALL = """\
ARG BASE_STAGE
FROM ${BASE_STAGE}
RUN --mount=type=tmpfs,target=/wheels --mount=type=secret,id=ca sh /build/docker/pip-install.sh core \\
    && python -c "import boto3; print('boto3', boto3.__version__)"
"""


def build_online(images: StageImages, log_dir: Path, ca_bundle: Path | None) -> subprocess.CompletedProcess[str]:
    """Build the Dockerfile's ``base`` stage, then install ``core`` on it from the index (no wheelhouse)."""
    docker = _buildkit_client(images.docker)
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    base_stage = f"irmsia-base-stage:{images.tag}"
    stage_cmd = [docker, "build", "-f", "docker/Dockerfile", "--target", "base", "--build-arg",
                 f"BASE_IMAGE={images.base_image}", "-t", base_stage, "."]  # fmt: skip
    _run(stage_cmd, env=env, log=log_dir / "base-stage.log")
    cmd = [docker, "build", "--progress=plain", "--no-cache", "--build-arg", f"BASE_STAGE={base_stage}", "-f", "-"]
    if ca_bundle is not None:
        cmd += ["--secret", f"id=ca,src={ca_bundle}"]
    return subprocess.run([*cmd, "."], input=ONLINE_INSTALL, text=True, capture_output=True, cwd=REPO, env=env)
