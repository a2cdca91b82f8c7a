"""An image build without a wheelhouse installs from the index through the host's TLS proxy, via the CA secret."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path

import pytest

from tests.support.docker_engine import build_online

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _host_reaches_pypi() -> bool:
    try:
        context = ssl.create_default_context(cafile=str(HOST_CA)) if HOST_CA.exists() else None
        return urllib.request.urlopen("https://pypi.org/simple/boto3/", timeout=10, context=context).status == 200
    except OSError:
        return False


def test_online_build_installs_pinned_core_dependencies_with_the_ca_secret(stage_images, tmp_path):
    if not _host_reaches_pypi():
        pytest.skip("this machine cannot reach https://pypi.org: the online build path cannot be tried")
    pins = dict(line.split("==", 1) for line in Path("docker/constraints.txt").read_text().splitlines() if "==" in line)
    # WHEN the core dependencies are installed from the index inside a build, with the host CA bundle as secret
    proc = build_online(stage_images, tmp_path, HOST_CA if HOST_CA.exists() else None)
    # THEN the build downloads from the index (not a wheelhouse) and installs the pinned boto3
    output = proc.stderr + proc.stdout
    assert proc.returncode == 0, output[-3000:]
    assert f"Downloading boto3-{pins['boto3']}" in output
    assert f"boto3 {pins['boto3']}" in output
