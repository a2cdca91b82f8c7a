"""``--source dicomweb`` against a real PACS (Debian's Orthanc with its DICOMweb plugin) behind a fault proxy."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace

import pydicom
import pytest

from jobs.collect.__main__ import main
from jobs.collect.settings import CollectSettings
from jobs.collect.sources.dicomweb import STUDIES_CSV
from jobs.core.errors import UsageError
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.support.fault_proxy import FaultProxy
from tests.support.orthanc import Orthanc, orthanc_missing, pacs_files, start_orthanc

pytestmark = [pytest.mark.integration, pytest.mark.skipif(orthanc_missing() is not None, reason=str(orthanc_missing()))]

FILES = pacs_files()
HEADERS = {name: pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True) for name, data in FILES.items()}
ENV_KEYS = ("IRMSIA_DICOMWEB_USER", "IRMSIA_DICOMWEB_PASSWORD", "IRMSIA_DICOMWEB_TOKEN", "IRMSIA_DICOMWEB_URL")


class Pacs:
    def __init__(self, server: Orthanc, env: dict[str, str], proxy: FaultProxy) -> None:
        self.server, self.env, self.proxy = server, env, proxy

    @property
    def url(self) -> str:
        return self.proxy.base + "/dicom-web"

    def wado(self) -> list[str]:
        """The SOPInstanceUIDs retrieved, in order."""
        return [r.path.rsplit("/", 1)[1] for r in self.proxy.log if "/instances/" in r.path]


def _start(tmp_path_factory, auth: str) -> Iterator[Pacs]:
    server, env = start_orthanc(tmp_path_factory.mktemp(f"orthanc-{auth}"), auth)
    proxy = FaultProxy(upstream=server.url).start()
    try:
        names = list(FILES)
        server.stow([FILES[n] for n in names[:3]])  # the CT series through STOW-RS
        for name in names[3:]:  # the others through the REST API
            server.upload(FILES[name])
        yield Pacs(server, env, proxy)
    finally:
        proxy.stop()
        server.stop()


@pytest.fixture(scope="module")
def basic_pacs(tmp_path_factory) -> Iterator[Pacs]:
    yield from _start(tmp_path_factory, "basic")


@pytest.fixture(scope="module")
def bearer_pacs(tmp_path_factory) -> Iterator[Pacs]:
    yield from _start(tmp_path_factory, "bearer")


def _use(pacs: Pacs, monkeypatch) -> Pacs:
    pacs.proxy.log.clear()
    pacs.proxy.faults.clear()
    pacs.proxy.retry_after = "0"
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    for key, value in pacs.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
    return pacs


@pytest.fixture
def pacs(basic_pacs, monkeypatch) -> Pacs:
    return _use(basic_pacs, monkeypatch)


def _collect(pacs: Pacs, store_uri: str, *extra: str, dataset: str = "pacs") -> int:
    return main(["--source", "dicomweb", "--dataset", dataset, "--store", store_uri, "--dicomweb-url", pacs.url,
                 "--backoff", "0.01", "--retries", "3", "--workers", "3", *extra])  # fmt: skip


def _key(name: str, dataset: str = "pacs") -> str:
    ds = HEADERS[name]
    return f"raw/{dataset}/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"


def _stored(store_uri: str, dataset: str = "pacs") -> set[str]:
    manifest = read_manifest(open_store(store_uri), f"raw/{dataset}/")
    return {o.key for o in manifest.outputs if o.key.endswith(".dcm")}


CT = [n for n in FILES if n.startswith("CT_small")]


def test_a_patients_studies_are_stored_byte_identical_under_uids_only(store_uri, pacs, capsys):
    # GIVEN one instance whose transfer drops half way, and a QIDO search behind a 503
    ct = HEADERS[CT[1]]
    pacs.proxy.fault(f"/dicom-web/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances/"
                     f"{ct.SOPInstanceUID}", "drop")  # fmt: skip
    pacs.proxy.fault("/dicom-web/studies", "503")
    # WHEN the patient's studies are collected
    assert _collect(pacs, store_uri, "--patient", "1CT1") == 0
    # THEN the CT series is stored, each file exactly as the PACS holds it, named by UIDs only
    store = open_store(store_uri)
    assert _stored(store_uri) == {_key(n) for n in CT}
    for name in CT:
        assert store.get_bytes(_key(name)) == FILES[name]
    manifest = read_manifest(store, "raw/pacs/")
    assert manifest.summary["studies"] == 1 and manifest.summary["instances"] == 3
    assert manifest.summary["auth"] == "basic"
    listing = store.get_bytes("raw/pacs/" + STUDIES_CSV).decode()
    assert ct.StudyInstanceUID in listing and ",CT,3," in listing
    # AND no patient ID, accession number or password reached the manifest or the logs
    out = capsys.readouterr()
    for secret in ("1CT1", "ACC-CT-1", pacs.env["IRMSIA_DICOMWEB_PASSWORD"]):
        assert secret not in manifest.to_json().decode() and secret not in out.err + out.out
    # AND every request carried the credentials, and the dropped instance was fetched again whole
    assert all(r.headers.get("Authorization", "").startswith("Basic ") for r in pacs.proxy.log)
    assert pacs.wado().count(ct.SOPInstanceUID) == 2


def test_a_bearer_token_from_the_environment_is_sent(tmp_path, bearer_pacs, monkeypatch, capsys):
    pacs = _use(bearer_pacs, monkeypatch)
    assert _collect(pacs, str(tmp_path / "s"), "--accession", "ACC-MR-2") == 0
    assert _stored(str(tmp_path / "s")) == {_key("MR_small.dcm")}
    token = pacs.env["IRMSIA_DICOMWEB_TOKEN"]
    assert {r.headers.get("Authorization") for r in pacs.proxy.log} == {f"Bearer {token}"}
    out = capsys.readouterr()
    assert token not in out.err + out.out
    assert read_manifest(open_store(str(tmp_path / "s")), "raw/pacs/").summary["auth"] == "bearer"


def _worklist(tmp_path, rows: str) -> str:
    path = tmp_path / "worklist.csv"
    path.write_text(rows)
    return str(path)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--study-date", "20040801-20041231"], ["MR_small.dcm", "JPEG2000.dcm"]),
        (["--study-date", "20040101-", "--modality", "MR"], ["MR_small.dcm"]),
        (["--accession", "ACC-CT-1,ACC-NM-3"], [*CT, "JPEG2000.dcm"]),
        (["--study-uid", HEADERS["JPEG2000.dcm"].StudyInstanceUID], ["JPEG2000.dcm"]),
        (["--worklist", "AccessionNumber,PatientID\nACC-MR-2,\n,1CT1\n"], [*CT, "MR_small.dcm"]),
        (["--study-date", "20040101-20041231", "--max-studies", "1"], CT),
    ],
)
def test_searches_select_the_studies_they_name(tmp_path, pacs, flags, expected):
    if flags[0] == "--worklist":
        flags = ["--worklist", _worklist(tmp_path, flags[1])]
    assert _collect(pacs, str(tmp_path / "s"), *flags) == 0
    assert _stored(str(tmp_path / "s")) == {_key(n) for n in expected}


def test_a_rerun_retrieves_only_the_missing_instance(tmp_path, pacs):
    # GIVEN a finished collect that lost its manifest, the series' completion record and one instance
    store_uri = str(tmp_path / "s")
    assert _collect(pacs, store_uri, "--patient", "1CT1") == 0
    store = open_store(store_uri)
    first = read_manifest(store, "raw/pacs/")
    store.delete("raw/pacs/_SUCCESS.json")
    for key in (o.key for o in first.outputs if "/_collect/" in o.key):
        store.delete(key)
    store.delete(_key(CT[2]))
    pacs.proxy.log.clear()
    # WHEN it runs again
    assert _collect(pacs, store_uri, "--patient", "1CT1") == 0
    # THEN only that instance was retrieved, and the result is the same
    assert pacs.wado() == [HEADERS[CT[2]].SOPInstanceUID]
    assert read_manifest(store, "raw/pacs/").content_sha256 == first.content_sha256


def test_a_new_matching_study_is_collected_by_the_next_run(tmp_path, pacs):
    # GIVEN a collect of a date range
    store_uri = str(tmp_path / "s")
    flags = ("--study-date", "20040801-20041231")
    assert _collect(pacs, store_uri, *flags) == 0
    # WHEN the PACS receives another study in that range and the same search runs again
    extra = pydicom.dcmread(io.BytesIO(FILES["MR_small.dcm"]))
    extra.StudyInstanceUID, extra.SeriesInstanceUID = extra.StudyInstanceUID + ".9", extra.SeriesInstanceUID + ".9"
    extra.SOPInstanceUID = extra.file_meta.MediaStorageSOPInstanceUID = extra.SOPInstanceUID + ".9"
    buf = io.BytesIO()
    extra.save_as(buf, enforce_file_format=True)
    pacs.server.upload(buf.getvalue())
    try:
        pacs.proxy.log.clear()
        assert _collect(pacs, store_uri, *flags) == 0
        # THEN it is not a cache hit: the new study is collected, the others are kept without retrieving them
        assert pacs.wado() == [extra.SOPInstanceUID]
        assert read_manifest(open_store(store_uri), "raw/pacs/").summary["studies"] == 3
    finally:
        found = pacs.server.request("POST", "/tools/lookup", extra.SOPInstanceUID.encode())
        import json

        for hit in json.loads(found):
            pacs.server.request("DELETE", hit["Path"])


def test_a_server_sending_another_instance_is_exit_3(tmp_path, pacs, capsys):
    # GIVEN a PACS that answers one instance's retrieve with a different instance
    ct, other = HEADERS[CT[0]], HEADERS[CT[1]]
    wrong = f"/dicom-web/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}"
    upstream = (
        f"/dicom-web/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances/{other.SOPInstanceUID}"
    )

    def swapped(handler, query, body) -> bool:
        handler.path = upstream
        return pacs.proxy._forward(handler, query, body)

    pacs.proxy.routes[wrong] = swapped
    try:
        store_uri = str(tmp_path / "s")
        assert _collect(pacs, store_uri, "--patient", "1CT1") == 3
        assert "instead" in capsys.readouterr().err
        assert read_manifest(open_store(store_uri), "raw/pacs/") is None
    finally:
        del pacs.proxy.routes[wrong]


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ("password", 2, "access denied"),
        ("down", 75, "unavailable after 3 attempts"),
        ("nothing", 2, "no study matches"),
        ("no-search", 2, "needs a search"),
        ("url-credentials", 2, "put no credentials in the URL"),
        ("half-credentials", 2, "go together"),
    ],
)
def test_faults_give_the_documented_exit_codes(tmp_path, pacs, monkeypatch, capsys, change, code, message):
    flags = ["--patient", "1CT1"]
    url = pacs.url
    if change == "password":
        monkeypatch.setenv("IRMSIA_DICOMWEB_PASSWORD", "wrong")
    elif change == "down":
        pacs.proxy.fault("/dicom-web/studies", *["503"] * 5)
    elif change == "nothing":
        flags = ["--patient", "NOBODY"]
    elif change == "no-search":
        flags = ["--modality", "CT"]
    elif change == "url-credentials":
        url = url.replace("http://", "http://radiology:secret@")
    else:
        monkeypatch.delenv("IRMSIA_DICOMWEB_PASSWORD")
    store_uri = str(tmp_path / "s")
    argv = ["--source", "dicomweb", "--dataset", "pacs", "--store", store_uri, "--dicomweb-url", url,
            "--backoff", "0.01", "--retries", "3", *flags]  # fmt: skip
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("irmsia-collect: error:") and message in err
    assert "secret" not in err
    assert read_manifest(open_store(store_uri), "raw/pacs/") is None


def test_credentials_are_environment_only_and_never_shown(pacs):
    # GIVEN credentials in the environment WHEN the options are built THEN no flag takes them and repr hides them
    env = {"IRMSIA_DICOMWEB_TOKEN": "tok-123", "IRMSIA_DICOMWEB_URL": pacs.url}
    options = CollectSettings.parse(["--source", "dicomweb", "--dataset", "x", "--patient", "P"], env).options
    assert options.auth().header == "Bearer tok-123" and "tok-123" not in repr(options)
    for flag in ("--token", "--password", "--username"):
        with pytest.raises(UsageError):
            CollectSettings.parse(["--source", "dicomweb", "--dataset", "x", "--patient", "P", flag, "v"], env)
    assert replace(options, token=None).auth() is None


def test_a_deidentified_pacs_collect_keeps_no_original_uid_or_id_anywhere_in_the_store(tmp_path, pacs, monkeypatch):
    # GIVEN the PACS's studies, and a de-identification key in the environment
    monkeypatch.setenv("IRMSIA_DEID_SECRET", "pacs-deid-secret-31415926")
    store_uri = str(tmp_path / "store")
    # WHEN they are collected with --deidentify
    every_study = ("--accession", "ACC-CT-1,ACC-MR-2,ACC-NM-3", "--deidentify")
    assert _collect(pacs, store_uri, *every_study) == 0
    store = open_store(store_uri)
    manifest = read_manifest(store, "raw/pacs/")
    # THEN every instance is stored de-identified but the one that may show text in its pixels (JPEG2000.dcm, a
    # Secondary Capture), and the PHI scan found nothing
    report = manifest.summary["deidentification"]
    assert report["phi_scan"]["findings"] == 0 and report["left_out"] == {"possible burned-in annotation": 1}
    stored = {o.key: store.get_bytes(o.key) for o in manifest.outputs}
    images = {k: pydicom.dcmread(io.BytesIO(v)) for k, v in stored.items() if k.endswith(".dcm")}
    assert len(images) == len(FILES) - 1 and all(ds.PatientIdentityRemoved == "YES" for ds in images.values())
    # AND no original UID, patient ID or accession number is in an object name, a stored byte or the manifest
    originals = {str(v) for ds in HEADERS.values()
                 for v in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.PatientID,
                           ds.AccessionNumber)}  # fmt: skip
    everything = manifest.to_json().decode() + "".join(stored) + "".join(v.decode("latin-1") for v in stored.values())
    assert [o for o in originals if o in everything] == [], [k for k, v in stored.items() for o in originals
                                                             if o in k or o.encode() in v]  # fmt: skip
    # AND the files are named by their pseudonymous UIDs, so one study and series stay one folder
    for key, ds in images.items():
        assert key == f"raw/pacs/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    # AND a rerun reuses every stored series instead of retrieving it again, reporting what the first run did
    pacs.proxy.log.clear()
    assert _collect(pacs, store_uri, *every_study, "--force") == 0
    assert pacs.wado() == []
    again = read_manifest(store, "raw/pacs/")
    assert again.summary["deidentification"] == report and report["files"]["de-identified"] == len(FILES) - 1
    assert again.content_sha256 == manifest.content_sha256
