"""``--source url``: files and archives into the store, byte-identical, idempotent, with the contract's exit codes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.jobs.collect.conftest import DEID_ARCHIVE_FILES, DEID_SECRET, deid_archive, make_tar_gz, make_zip

MEMBERS = {
    "chest_xray/train/NORMAL/n1.jpeg": b"\xff\xd8normal-1" * 100,
    "chest_xray/train/PNEUMONIA/p1.jpeg": b"\xff\xd8pneumonia-1" * 100,
    "chest_xray/test/NORMAL/n2.jpeg": b"\xff\xd8normal-2" * 100,
    "LICENSE": b"CC BY 4.0\n",
}


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")


def _collect(store_uri, url, *extra) -> int:
    return main(["--source", "url", "--dataset", "xray", "--url", url, "--store", store_uri, "--backoff", "0.01",
                 "--retries", "3", *extra])  # fmt: skip


@pytest.mark.parametrize("maker", [make_zip, make_tar_gz])
def test_archive_is_unpacked_byte_identical(store_uri, http_server, maker, quiet):
    # GIVEN an archive on a server that drops the first connection
    data = maker(MEMBERS)
    url = http_server.add_file("/datasets/chest_xray.zip", data)
    http_server.fault("/datasets/chest_xray.zip", "drop")
    # WHEN it is collected with its published checksum
    assert _collect(store_uri, url, "--sha256", hashlib.sha256(data).hexdigest()) == 0
    # THEN every member is in the store under its own path, byte for byte, and the licence is recorded
    store = open_store(store_uri)
    manifest = read_manifest(store, "raw/xray/")
    images = {o.key.removeprefix("raw/xray/"): o for o in manifest.outputs if not o.key.startswith("raw/xray/_")}
    assert set(images) == set(MEMBERS)
    for name, data_ in MEMBERS.items():
        assert store.get_bytes(f"raw/xray/{name}") == data_
        assert images[name].sha256 == hashlib.sha256(data_).hexdigest()
    assert manifest.summary["license"] == "CC BY 4.0"
    assert manifest.summary["source"] == "url"


def test_plain_file_is_stored_under_its_name(store_uri, http_server, quiet):
    url = http_server.add_file("/files/labels%20v2.csv", b"file,label\n")
    assert _collect(store_uri, url) == 0
    assert open_store(store_uri).get_bytes("raw/xray/labels v2.csv") == b"file,label\n"


def test_rerun_after_failure_does_not_download_again(store_uri, http_server, tmp_path, monkeypatch, quiet):
    # GIVEN a collect whose archive reached the store, but which failed before sealing (simulated by
    # deleting the manifest)
    data = make_zip(MEMBERS)
    url = http_server.add_file("/a.zip", data)
    sha = hashlib.sha256(data).hexdigest()
    assert _collect(store_uri, url, "--sha256", sha) == 0
    store = open_store(store_uri)
    first = read_manifest(store, "raw/xray/")
    store.delete("raw/xray/_SUCCESS.json")
    gets = len([r for r in http_server.requests_for("/a.zip") if r.method == "GET"])
    # WHEN it runs again
    assert _collect(store_uri, url, "--sha256", sha) == 0
    # THEN the archive was not downloaded again and the result is identical
    assert len([r for r in http_server.requests_for("/a.zip") if r.method == "GET"]) == gets
    assert read_manifest(store, "raw/xray/").content_sha256 == first.content_sha256


def test_partial_store_content_is_not_mistaken_for_complete(store_uri, http_server, quiet):
    # GIVEN a previous run whose files were stored but one of them was later lost
    data = make_zip(MEMBERS)
    url = http_server.add_file("/a.zip", data)
    assert _collect(store_uri, url) == 0
    store = open_store(store_uri)
    store.delete("raw/xray/_SUCCESS.json")
    store.delete("raw/xray/chest_xray/train/NORMAL/n1.jpeg")
    gets = len([r for r in http_server.requests_for("/a.zip") if r.method == "GET"])
    # WHEN it runs again
    assert _collect(store_uri, url) == 0
    # THEN it downloaded again and the lost file is back
    assert len([r for r in http_server.requests_for("/a.zip") if r.method == "GET"]) == gets + 1
    assert store.get_bytes("raw/xray/chest_xray/train/NORMAL/n1.jpeg") == MEMBERS["chest_xray/train/NORMAL/n1.jpeg"]


def test_a_deidentified_rerun_reusing_the_stored_archive_reports_what_the_first_run_did(
    store_uri, http_server, monkeypatch, quiet
):
    # GIVEN an archive of DICOM files and a label list, collected with --deidentify
    monkeypatch.setenv("IRMSIA_DEID_SECRET", DEID_SECRET)
    url = http_server.add_file("/a.zip", deid_archive())
    assert _collect(store_uri, url, "--deidentify") == 0
    store = open_store(store_uri)
    first = read_manifest(store, "raw/xray/")
    assert first.summary["deidentification"]["files"] == DEID_ARCHIVE_FILES
    gets = len([r for r in http_server.requests_for("/a.zip") if r.method == "GET"])
    # WHEN it is collected again (--force: no cache hit), reusing the stored archive's unit
    assert _collect(store_uri, url, "--deidentify", "--force") == 0
    # THEN nothing was downloaded again, and the report and the result are the first run's
    assert len([r for r in http_server.requests_for("/a.zip") if r.method == "GET"]) == gets
    again = read_manifest(store, "raw/xray/")
    assert again.summary["deidentification"] == first.summary["deidentification"]
    assert again.content_sha256 == first.content_sha256


def _latin1_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        info = tarfile.TarInfo("caf\u00e9.png")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"\x89PNG"))
    return buf.getvalue()


def _false_utf8_zip() -> bytes:
    data = make_zip({"caf\u00e9.png": b"\x89PNG"})  # zipfile flags a non-ASCII name as UTF-8 ...
    return data.replace("caf\u00e9".encode(), b"caf\xe9\xff")  # ... which these bytes are not


@pytest.mark.parametrize(
    ("setup", "code", "message"),
    [
        (lambda s: s.fault("/a.zip", *["503"] * 5), 75, "unavailable after 3 attempts"),
        (lambda s: s.fault("/a.zip", "404", "404"), 2, "HTTP 404"),  # HEAD, then GET
        (lambda s: s.files.update({"/a.zip": make_zip({"../../evil": b"x"})}), 3, "escapes the target folder"),
        (lambda s: s.files.update({"/a.zip": make_zip(MEMBERS)[:-30]}), 3, "not a zip or tar"),
        # member names that are not UTF-8: a tar written in Latin-1, a zip that flags a non-UTF-8 name as UTF-8
        (lambda s: s.files.update({"/a.zip": _latin1_tar()}), 3, "member b'caf\\xe9.png' is not named in UTF-8"),
        (lambda s: s.files.update({"/a.zip": _false_utf8_zip()}), 3, "not a valid zip ('utf-8' codec can't decode"),
    ],
)
def test_faults_give_the_documented_exit_codes(tmp_path, http_server, capsys, quiet, setup, code, message):
    http_server.add_file("/a.zip", make_zip(MEMBERS))
    setup(http_server)
    store = str(tmp_path / "store")
    assert _collect(store, http_server.url("/a.zip")) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("irmsia-collect: error:") and message in err
    assert read_manifest(open_store(store), "raw/xray/") is None


def test_wrong_checksum_is_a_data_error(tmp_path, http_server, capsys, quiet):
    url = http_server.add_file("/a.zip", make_zip(MEMBERS))
    assert _collect(str(tmp_path / "s"), url, "--sha256", "a" * 64) == 3
    assert "expected " + "a" * 64 in capsys.readouterr().err


def test_result_file_reports_url_and_checksum(tmp_path, http_server, monkeypatch, quiet):
    data = make_zip(MEMBERS)
    url = http_server.add_file("/a.zip", data)
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(tmp_path / "r.json"))
    assert _collect(str(tmp_path / "s"), url) == 0
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["url"] == url and summary["sha256"] == hashlib.sha256(data).hexdigest()
