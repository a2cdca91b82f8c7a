"""A real PACS on 127.0.0.1: Debian's Orthanc with its DICOMweb plugin (packages ``orthanc``, ``orthanc-dicomweb``).

``start_orthanc`` runs ``/usr/sbin/Orthanc`` on a free HTTP port with its DICOM listener off, remote access refused
(only loopback clients are served), its own storage under ``workdir``, and the DICOMweb plugin at ``/dicom-web/``
(QIDO-RS, WADO-RS, STOW-RS). Authentication is what a hospital's gateway would ask for:

* ``auth="basic"``: Orthanc's own HTTP Basic users (``RegisteredUsers``);
* ``auth="bearer"``: a bearer token, checked by an ``IncomingHttpRequestFilter`` Lua callback (Orthanc 1.10 has no
  token setting; the callback sees every request's headers and refuses it with 403 unless the token matches).

``pacs_files()`` are pydicom's own test files (CT, MR, NM; a CT series of three slices derived from ``CT_small.dcm``
with their own SOP Instance UIDs) with accession numbers set; ``Orthanc.stow`` loads them through STOW-RS and
``Orthanc.upload`` through Orthanc's REST API (``POST /instances``). ``make services`` installs both packages; where
they are missing the fixtures skip, saying so.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.seaweedfs import free_port, stop_process

ORTHANC = "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
INSTALL_HINT = "run `make services` (apt-get install -y orthanc orthanc-dicomweb)"
BEARER_FILTER = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  return httpHeaders['authorization'] == 'Bearer %s'
end
"""


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    binary = shutil.which("Orthanc") or (ORTHANC if Path(ORTHANC).exists() else None)
    if binary is None:
        return f"Orthanc is not installed: {INSTALL_HINT}"
    if not Path(PLUGIN).exists():
        return f"Orthanc's DICOMweb plugin is not installed: {INSTALL_HINT}"
    return None


def pacs_files() -> dict[str, bytes]:
    """pydicom's test files as a small PACS holds them: name -> bytes (a CT series of 3, an MR, an NM)."""
    import pydicom
    from pydicom.data import get_testdata_file

    files: dict[str, bytes] = {}
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for number in range(1, 4):
        ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = f"{ct.SeriesInstanceUID}.{number}"
        ct.InstanceNumber, ct.AccessionNumber = number, "ACC-CT-1"
        buf = io.BytesIO()
        ct.save_as(buf, enforce_file_format=True)
        files[f"CT_small-{number}.dcm"] = buf.getvalue()
    for name, accession in (("MR_small.dcm", "ACC-MR-2"), ("JPEG2000.dcm", "ACC-NM-3")):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.AccessionNumber = accession
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files[name] = buf.getvalue()
    return files


@dataclass
class Orthanc:
    """A running Orthanc: its root URL, DICOMweb root and the Authorization header it accepts."""

    url: str
    authorization: str
    process: subprocess.Popen
    log_path: Path

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30.0) -> bytes:  # fmt: skip
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Authorization": self.authorization, **(headers or {})})  # fmt: skip
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.read()

    def upload(self, data: bytes) -> dict:
        """Store one file through Orthanc's REST API."""
        return json.loads(self.request("POST", "/instances", data, {"Content-Type": "application/dicom"}))

    def stow(self, files: list[bytes]) -> dict:
        """Store files through STOW-RS (``POST /dicom-web/studies``, multipart/related)."""
        boundary = "irmsia-" + secrets.token_hex(8)
        body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f + b"\r\n"
                        for f in files) + f"--{boundary}--\r\n".encode()  # fmt: skip
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        answer = self.request("POST", "/dicom-web/studies", body,
                              {"Content-Type": content_type, "Accept": "application/dicom+json"})  # fmt: skip
        return json.loads(answer)

    def instances(self) -> list[str]:
        return json.loads(self.request("GET", "/instances"))

    def delete_all(self) -> None:
        for patient in json.loads(self.request("GET", "/patients")):
            self.request("DELETE", f"/patients/{patient}")

    def stop(self) -> None:
        stop_process(self.process)


def start_orthanc(workdir: Path, auth: str = "basic", timeout: float = 60.0) -> tuple[Orthanc, dict[str, str]]:
    """Start Orthanc; returns it and the environment a client needs (``IRMSIA_DICOMWEB_*``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict = {
        "Name": "IRMSIA-TEST-PACS",
        "StorageDirectory": str(workdir / "db"),
        "IndexDirectory": str(workdir / "db"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "HttpThreadsCount": 8,
        "ConcurrentJobs": 1,
        "Plugins": [PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": f"127.0.0.1:{port}"},
    }
    if auth == "basic":
        user, password = "radiology", secrets.token_hex(12)
        config |= {"AuthenticationEnabled": True, "RegisteredUsers": {user: password}}
        header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        env = {"IRMSIA_DICOMWEB_USER": user, "IRMSIA_DICOMWEB_PASSWORD": password}
    elif auth == "bearer":
        token = secrets.token_urlsafe(24)
        lua = workdir / "bearer.lua"
        lua.write_text(BEARER_FILTER % token)
        config |= {"AuthenticationEnabled": False, "LuaScripts": [str(lua)]}
        header, env = f"Bearer {token}", {"IRMSIA_DICOMWEB_TOKEN": token}
    else:
        raise ValueError(f"auth {auth!r}: use basic or bearer")
    (workdir / "orthanc.json").write_text(json.dumps(config))
    log_path = workdir / "orthanc.log"
    log = open(log_path, "wb")  # noqa: SIM115 - stays open for the server's lifetime
    process = subprocess.Popen([shutil.which("Orthanc") or ORTHANC, str(workdir / "orthanc.json")], stdout=log,
                               stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)  # fmt: skip
    server = Orthanc(f"http://127.0.0.1:{port}", header, process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}; see {log_path}")
        try:
            server.request("GET", "/system", timeout=2)
            return server, env
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"Orthanc did not answer in {timeout}s; see {log_path}") from None
            time.sleep(0.2)
