"""A stalled S3 endpoint ends a stage with exit 75 within a minute: bounded timeouts and retries, configurable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from jobs.core.errors import UsageError
from jobs.core.settings import S3Options
from tests.support.seaweedfs import start_seaweedfs
from tests.support.stalled_server import StalledServer

DEMO = ["-I", "-m", "jobs.collect", "--source", "demo", "--dataset", "demo", "--patients", "4", "--log-format", "text"]


def _stage_against(endpoint: str, store: str, *argv: str, **env: str) -> tuple[int, str, float]:
    """Run a stage process against an S3 endpoint; returns exit code, stderr and seconds taken. Only ``env`` sets
    ``IRMSIA_S3_*`` (none is inherited)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("IRMSIA_S3_")}
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
           "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120, check=False,
                          env={**base, "IRMSIA_STORE": store, **aws, **env})  # fmt: skip
    return done.returncode, done.stderr, time.monotonic() - started


@pytest.mark.fault
def test_configured_bounds_end_a_stall_quickly_with_exit_75():
    # GIVEN an endpoint that accepts connections and never answers, and tight bounds: 1 s reads, 2 attempts
    with StalledServer() as stalled:
        # WHEN a stage opens the store there
        code, err, took = _stage_against(stalled.endpoint, "s3://bucket/p", *DEMO,
                                         IRMSIA_S3_READ_TIMEOUT="1", IRMSIA_S3_ATTEMPTS="2")  # fmt: skip
        # THEN it gives up after exactly the attempts it was allowed, with exit 75 and one line naming the endpoint
        assert code == 75, err
        assert stalled.connections == 2
        (line,) = [line for line in err.splitlines() if "error:" in line]
        assert f"S3 endpoint {stalled.endpoint} unreachable" in line
    assert took < 15


@pytest.mark.fault
@pytest.mark.slow
def test_default_bounds_end_a_stall_within_a_minute():
    # GIVEN an endpoint that never answers, and no IRMSIA_S3_* settings
    with StalledServer() as stalled:
        # WHEN a stage opens the store there
        code, err, took = _stage_against(stalled.endpoint, "s3://bucket/p", *DEMO)
    # THEN it exits 75 in under a minute (botocore's defaults took about six)
    assert code == 75, err
    assert took < 60


@pytest.mark.fault
@pytest.mark.integration
@pytest.mark.slow
def test_a_stopped_seaweedfs_is_exit_75_and_the_rerun_after_it_resumes_succeeds(tmp_path):
    # GIVEN a real SeaweedFS holding a collected dataset, then stopped (SIGSTOP: its sockets stay open, it is silent)
    server = start_seaweedfs(tmp_path / "weed")
    try:
        bucket = server.create_bucket("stall")
        store = f"s3://{bucket}/p"
        creds = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
        assert _stage_against(server.endpoint, store, *DEMO, **creds)[0] == 0
        index = ["-I", "-m", "jobs.index", "--dataset", "demo", "--log-format", "text"]
        os.killpg(server.process.pid, signal.SIGSTOP)
        try:
            # WHEN the next stage runs against it
            code, err, took = _stage_against(server.endpoint, store, *index, IRMSIA_S3_READ_TIMEOUT="2", **creds)
        finally:
            os.killpg(server.process.pid, signal.SIGCONT)
        # THEN it is exit 75 within its bounds, and once the server is back a rerun completes
        assert code == 75, err
        assert took < 30
        assert _stage_against(server.endpoint, store, *index, **creds)[0] == 0
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, S3Options(connect_timeout_s=5.0, read_timeout_s=15.0, attempts=3)),
        ({"IRMSIA_S3_CONNECT_TIMEOUT": "2", "IRMSIA_S3_READ_TIMEOUT": "0.5", "IRMSIA_S3_ATTEMPTS": "1"},
         S3Options(connect_timeout_s=2.0, read_timeout_s=0.5, attempts=1)),
        ({"IRMSIA_S3_READ_TIMEOUT": ""}, S3Options()),
    ],
)  # fmt: skip
def test_options_from_the_environment(env, expected):
    assert S3Options.from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IRMSIA_S3_READ_TIMEOUT": "soon"}, "IRMSIA_S3_READ_TIMEOUT 'soon': expected a number"),
        ({"IRMSIA_S3_READ_TIMEOUT": "0"}, "IRMSIA_S3_READ_TIMEOUT 0.0: use a number of seconds"),
        ({"IRMSIA_S3_CONNECT_TIMEOUT": "inf"}, "IRMSIA_S3_CONNECT_TIMEOUT inf"),
        ({"IRMSIA_S3_ATTEMPTS": "0"}, "IRMSIA_S3_ATTEMPTS 0: use a whole number from 1 to 20"),
        ({"IRMSIA_S3_ATTEMPTS": "2.5"}, "IRMSIA_S3_ATTEMPTS '2.5': expected a whole number"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_variable(env, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        S3Options.from_env(env)
