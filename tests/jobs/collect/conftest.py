"""Fixtures for the collect tests: a faulty HTTP file server on 127.0.0.1 and small archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator

import pytest

from tests.support.http_server import FaultyHttpServer
from tests.support.tcia_server import TciaServer

SHARDED_TCIA_COLLECTION = "LIDC-Mini"
DEID_SECRET = "a-test-secret-of-32-characters!!"


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


class Unseekable(io.RawIOBase):
    """A write-only stream without tell/seek: zipfile then writes each member's CRC and sizes after its data
    (a data descriptor), as zip writers that stream do."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


def make_streamed_zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip written front to back to an unseekable stream (data descriptors after every member)."""
    out = Unseekable()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in members.items():
            with zf.open(name, "w") as fh:
                fh.write(data)
    return bytes(out.data)


def make_tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def sharded_tcia(monkeypatch) -> Iterator[TciaServer]:
    """A TCIA server with eight series of five patients, one of them ultrasound (which --deidentify leaves out, for
    burned-in text), and IRMSIA_DEID_SECRET set."""
    server = TciaServer()
    for p in range(1, 5):
        for s in range(1, 3 if p != 2 else 2):
            server.add_series(
                SHARDED_TCIA_COLLECTION, f"PAT-{p:03d}", f"1.2.3.{p}", f"1.2.3.{p}.{s}", "CT", images=1 + s
            )
    server.add_series(SHARDED_TCIA_COLLECTION, "PAT-005", "1.2.3.5", "1.2.3.5.1", "US", images=2)
    with server:
        monkeypatch.setenv("IRMSIA_TCIA_URL", server.api_url)
        monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
        monkeypatch.setenv("IRMSIA_DEID_SECRET", DEID_SECRET)
        yield server


def deid_archive() -> bytes:
    """A zip for the --deidentify rerun tests: a CT the filter de-identifies, an ultrasound it leaves out (text may
    be burned into its pixels) and a label list it scans as a sidecar."""
    from tests.support.tcia_server import dicom_bytes

    return make_zip({
        "scans/ct.dcm": dicom_bytes("PAT-DEID-1", "1.2.826.9.1", "1.2.826.9.1.1", "1.2.826.9.1.1.1", "CT"),
        "scans/us.dcm": dicom_bytes("PAT-DEID-1", "1.2.826.9.1", "1.2.826.9.1.2", "1.2.826.9.1.2.1", "US"),
        "labels.csv": b"file,label\nscans/ct.dcm,normal\n",
    })  # fmt: skip


DEID_ARCHIVE_FILES = {"de-identified": 1, "headers scanned": 1, "left out": 1, "stored as they are (not DICOM)": 1}
"""What the filter counts in ``deid_archive()``."""
