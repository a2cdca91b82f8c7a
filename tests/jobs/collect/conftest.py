"""Fixtures for the collect tests: a faulty HTTP file server on 127.0.0.1 and small archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator

import pytest

from tests.support.http_server import FaultyHttpServer


@pytest.fixture
def http_server() -> Iterator[FaultyHttpServer]:
    with FaultyHttpServer() as server:
        yield server


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
