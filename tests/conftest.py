"""Shared fixtures: a real SeaweedFS S3 server for the session, and a store on each backend; a real Pushgateway
and Prometheus for the metrics tests."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests.support.prometheus import (
    INSTALL_HINT,
    Prometheus,
    Server,
    prometheus_binary,
    pushgateway_binary,
    start_prometheus,
    start_pushgateway,
)
from tests.support.seaweedfs import SeaweedS3, start_seaweedfs

# OpenMP threads that spin while waiting steal the shared cores from each other and from the servers the tests
# start: a resnet18 step at 64 px took ~1,000 ms instead of ~280 ms under load. Set before any test imports torch
# (and inherited by the stage subprocesses); a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS server (``weed mini``) on 127.0.0.1 for the whole session, stopped at the end."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(seaweedfs: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the standard AWS variables at the SeaweedFS server for this test."""
    env = seaweedfs.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_store_uri(seaweedfs: SeaweedS3, s3_env: dict[str, str]) -> str:
    """A fresh bucket on the SeaweedFS server, as an ``s3://`` URI with a prefix."""
    bucket = seaweedfs.create_bucket("t-" + secrets.token_hex(6))
    return f"s3://{bucket}/irmsia"


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.integration)])
def store_uri(request: pytest.FixtureRequest, tmp_path) -> str:
    """The same test on both backends: a folder store and a real S3 (SeaweedFS) store."""
    if request.param == "file":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_store_uri")


# -- Prometheus and Pushgateway (Debian packages; `make services` installs them) ---------------------------------
@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One Pushgateway on 127.0.0.1 for the session; tests keep apart by workflow id."""
    if pushgateway_binary() is None:
        pytest.skip(f"prometheus-pushgateway is not installed: {INSTALL_HINT}")
    server = start_pushgateway(tmp_path_factory.mktemp("pushgateway"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus(pushgateway: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """One Prometheus scraping the session's Pushgateway every second (``honor_labels: true``)."""
    if prometheus_binary() is None:
        pytest.skip(f"prometheus is not installed: {INSTALL_HINT}")
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"), pushgateway.address)
    try:
        yield server
    finally:
        server.stop()
