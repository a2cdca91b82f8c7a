"""Run each stage as ``docker run`` of its image: the closest thing to a cluster run that fits on one machine.

The container gets what a pod gets: the stage's console script as its command (as the Argo template runs it)
with the same arguments, the store URI in ``IRMSIA_STORE``, credentials as environment variables, UID 10001, a
read-only root file system with a tmpfs on ``/tmp``, no capabilities. Environment values never appear on the
command line: ``-e NAME`` makes docker copy the value from its own environment, which the runner sets.

A file store is bind-mounted at the same absolute path, so ``IRMSIA_STORE`` needs no rewriting; it must be
writable by UID 10001. An S3 endpoint on this machine (``AWS_ENDPOINT_URL=http://127.0.0.1:…``) is reached
through ``--network host``. The result file (``IRMSIA_RESULT_FILE``) is written into a bind-mounted folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobs.core.errors import UsageError
from jobs.stages import IMAGE_REGISTRY, IMAGE_TAG, image_ref
from pipeline.dag import StageSpec

CONTAINER_USER = 10001
"""The UID every stage image runs as (``USER`` in docker/Dockerfile)."""
RESULT_MOUNT = "/irmsia/result"
"""Where the folder for the stage's result file is mounted in the container."""
FORWARDED_PREFIXES = ("IRMSIA_", "AWS_", "KAGGLE_")
"""Environment variables passed into the container by name: the store, the stage contract, credentials."""
FORWARDED_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def image_name(stage: StageSpec, *, gpu: bool) -> str:
    """The image of a stage (``irmsia-index``); a GPU stage runs its ``-cpu`` variant unless ``gpu``."""
    return stage.image if gpu else stage.cpu_image


def file_store_path(store: str) -> Path | None:
    """The absolute folder of a file store URI or path; ``None`` for S3."""
    if store.startswith("s3://"):
        return None
    return Path(store.removeprefix("file://")).expanduser().resolve()


def check_writable_by(path: Path, uid: int) -> None:
    """Raise ``UsageError`` unless ``uid`` can write to the folder ``path`` (owner or world write bit)."""
    info = path.stat()
    if (info.st_uid == uid and info.st_mode & 0o200) or info.st_mode & 0o002:
        return
    raise UsageError(
        f"file store {path} is not writable by the container user (UID {uid}): run `chown -R {uid} {path}`, "
        "or use an S3 store (--store s3://bucket/prefix)"
    )


@dataclass(kw_only=True)
class DockerExecutor:
    """An ``Executor`` for ``pipeline.runner.run_pipeline`` that runs each stage's image with ``docker run``.

    The runner calls ``environment`` and then ``command`` for the same stage; ``environment`` prepares the
    result-file folder and store mount that ``command`` then mounts.
    """

    tag: str = IMAGE_TAG
    """Image tag (``make images`` tags the project version and the git revision)."""
    registry: str = IMAGE_REGISTRY
    """Registry and path before the image name, as ``make images`` tags them (``localhost/irmsia``)."""
    gpu: bool = False
    """Run GPU stages on their CUDA image with ``--gpus all`` (otherwise on the ``-cpu`` variant)."""
    docker: str = field(default_factory=lambda: shutil.which("docker") or "docker")
    """The docker client."""
    _prepared: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict, init=False, repr=False)
    """Per stage, from ``environment`` for ``command``: bind mounts and the names of forwarded variables."""

    def image(self, stage: StageSpec) -> str:
        return image_ref(image_name(stage, gpu=self.gpu), registry=self.registry, tag=self.tag)

    def environment(self, stage: StageSpec, env: Mapping[str, str]) -> dict[str, str]:
        mounts: list[str] = []
        result = dict(env)
        if host_result := env.get("IRMSIA_RESULT_FILE"):
            mounts.append(f"{self._result_folder(Path(host_result))}:{RESULT_MOUNT}")
            result["IRMSIA_RESULT_FILE"] = f"{RESULT_MOUNT}/{Path(host_result).name}"
        if (store := file_store_path(env.get("IRMSIA_STORE", ""))) is not None:
            store.mkdir(parents=True, exist_ok=True)
            check_writable_by(store, CONTAINER_USER)
            mounts.append(f"{store}:{store}")
            result["IRMSIA_STORE"] = str(store)
        names = sorted(n for n in result if n.startswith(FORWARDED_PREFIXES) or n in FORWARDED_NAMES)
        self._prepared[stage.name] = (mounts, names)
        return result

    def command(self, stage: StageSpec, argv: Sequence[str]) -> list[str]:
        cmd = [self.docker, "run", "--rm", "--read-only", "--tmpfs", "/tmp:rw,exec,size=1g", "--user",
               f"{CONTAINER_USER}:{CONTAINER_USER}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "--network", "host"]  # fmt: skip
        if stage.gpu and self.gpu:
            cmd += ["--gpus", "all", "--shm-size", "1g"]
        mounts, names = self._prepared.pop(stage.name, ([], []))
        for mount in mounts:
            cmd += ["--volume", mount]
        for name in names:
            cmd += ["--env", name]
        # The console script as the command, as the Argo template runs it (the image's ENTRYPOINT is the same).
        return [*cmd, "--entrypoint", stage.entrypoint, self.image(stage), *argv]

    @staticmethod
    def _result_folder(host_result: Path) -> Path:
        """A folder UID 10001 can write for the result file; the runner's path links into it.

        The runner's temporary folder stays private (0700); only this subfolder is opened to the container.
        """
        folder = host_result.parent / "container-results"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o1777)
        if not host_result.is_symlink():
            host_result.symlink_to(folder / host_result.name)
        return folder
