"""``DockerExecutor`` builds the ``docker run`` a pod-like stage run needs: image, user, mounts, env by name only."""

from __future__ import annotations

import os

import pytest

from jobs.core.errors import UsageError
from pipeline.dag import PIPELINE
from pipeline.docker_executor import CONTAINER_USER, RESULT_MOUNT, DockerExecutor, image_name


def _prepared(executor: DockerExecutor, stage_name: str, env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    stage = PIPELINE.stage(stage_name)
    stage_env = executor.environment(stage, env)
    return stage_env, executor.command(stage, ["--dataset", "demo"])


@pytest.mark.parametrize(
    ("stage", "gpu", "image"),
    [
        ("collect", False, "irmsia-collect"),
        ("register", False, "irmsia-register"),
        ("train", False, "irmsia-train-cpu"),
        ("train", True, "irmsia-train"),
        ("index", True, "irmsia-index"),
    ],
)
def test_image_name_per_stage(stage, gpu, image):
    assert image_name(PIPELINE.stage(stage), gpu=gpu) == image


def test_s3_run_is_non_root_read_only_and_passes_secrets_by_name_only(tmp_path):
    # GIVEN an S3 store and credentials in the environment
    secret = "s3cr3t-value-never-on-argv"
    env = {"IRMSIA_STORE": "s3://bucket/p", "IRMSIA_RESULT_FILE": str(tmp_path / "index.json"),
           "AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": "id", "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
           "HOME": "/root", "PATH": "/usr/bin"}  # fmt: skip
    executor = DockerExecutor(tag="abc123", registry="reg.example/irmsia/", docker="docker")
    # WHEN the index stage is prepared
    stage_env, cmd = _prepared(executor, "index", env)
    # THEN it runs the tagged image with the stage's arguments, as UID 10001, read-only, host network
    assert cmd[:2] == ["docker", "run"]
    assert cmd[-5:] == ["--entrypoint", "irmsia-index", "reg.example/irmsia/irmsia-index:abc123", "--dataset", "demo"]
    for flag, value in [("--user", f"{CONTAINER_USER}:{CONTAINER_USER}"), ("--network", "host"),
                        ("--cap-drop", "ALL")]:  # fmt: skip
        assert cmd[cmd.index(flag) + 1] == value
    assert "--read-only" in cmd and "--rm" in cmd
    # AND credentials and contract variables are forwarded by name, their values only in the process env
    forwarded = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--env"]
    assert forwarded == sorted(["AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY", "IRMSIA_RESULT_FILE",
                                "IRMSIA_STORE"])  # fmt: skip
    assert not any(secret in arg for arg in cmd)
    assert stage_env["AWS_SECRET_ACCESS_KEY"] == secret
    # AND the result file is written into a mounted folder the runner's path links to
    assert stage_env["IRMSIA_RESULT_FILE"] == f"{RESULT_MOUNT}/index.json"
    folder = tmp_path / "container-results"
    assert f"{folder}:{RESULT_MOUNT}" in cmd
    assert (tmp_path / "index.json").resolve() == folder / "index.json"
    assert folder.stat().st_mode & 0o777 == 0o777


def test_file_store_is_bind_mounted_at_the_same_path(tmp_path):
    # GIVEN a file store folder writable by the container user
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o777)
    executor = DockerExecutor(docker="docker")
    # WHEN a stage is prepared with a file:// URI
    stage_env, cmd = _prepared(executor, "split", {"IRMSIA_STORE": f"file://{store}"})
    # THEN the folder is mounted at its own path and IRMSIA_STORE names that path
    assert f"{store}:{store}" in cmd
    assert stage_env["IRMSIA_STORE"] == str(store)


@pytest.mark.skipif(os.geteuid() == CONTAINER_USER, reason="the test user is the container user")
def test_file_store_not_writable_by_the_container_user_is_a_usage_error(tmp_path):
    # GIVEN a store folder only its owner (not UID 10001) may write
    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    # WHEN a stage is prepared THEN the error says how to fix it
    with pytest.raises(UsageError, match=r"not writable by the container user \(UID 10001\).*chown -R 10001"):
        DockerExecutor(docker="docker").environment(PIPELINE.stage("split"), {"IRMSIA_STORE": str(store)})


def test_gpu_stage_gets_gpus_only_when_asked(tmp_path):
    stage = PIPELINE.stage("train")
    for gpu, expected in [(False, False), (True, True)]:
        executor = DockerExecutor(docker="docker", gpu=gpu)
        executor.environment(stage, {"IRMSIA_STORE": "s3://b/p"})
        assert ("--gpus" in executor.command(stage, [])) is expected
