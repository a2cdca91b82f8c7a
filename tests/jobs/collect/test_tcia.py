"""``--source tcia`` against a local NBIA v4 server: selection, ZIP series, faults, idempotence."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator

import pydicom
import pytest

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.jobs.collect.conftest import make_streamed_zip
from tests.support.tcia_server import API, TciaServer, series_zip

COLLECTION = "LIDC-Mini"


@pytest.fixture
def tcia(monkeypatch) -> Iterator[TciaServer]:
    server = TciaServer()
    server.files_by_series = {}
    for p in range(1, 4):
        for s in range(1, 3 if p != 2 else 2):
            uid = f"1.2.3.{p}.{s}"
            modality = "CT" if s == 1 else "MR"
            files = server.add_series(COLLECTION, f"PAT-{p:03d}", f"1.2.3.{p}", uid, modality, images=2 + s)
            server.files_by_series[uid] = files
    server.add_series("Other", "X-1", "9.9", "9.9.1")
    with server:
        monkeypatch.setenv("IRMSIA_TCIA_URL", server.api_url)
        monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
        yield server


def _collect(store_uri: str, *extra: str) -> int:
    return main(["--source", "tcia", "--dataset", "lidc", "--store", store_uri, "--backoff", "0.01",
                 "--retries", "3", "--workers", "3", *extra])  # fmt: skip


def _gets(server: TciaServer) -> list[str]:
    return [r.query["SeriesInstanceUID"][0] for r in server.log if r.path == API + "getImage"]


def test_collection_is_stored_byte_identical_with_licence_and_series_csv(store_uri, tcia):
    # GIVEN one series whose connection drops and one behind a 429
    tcia.retry_after = "0"
    tcia.fault_series("1.2.3.1.1", "drop")
    tcia.fault_series("1.2.3.3.2", "429")
    # WHEN the collection is collected
    assert _collect(store_uri, "--collection", COLLECTION) == 0
    # THEN every DICOM file is stored under patient/study/series, byte for byte
    store = open_store(store_uri)
    manifest = read_manifest(store, "raw/lidc/")
    for uid, files in tcia.files_by_series.items():
        p = uid.split(".")[3]
        for name, data in files.items():
            assert store.get_bytes(f"raw/lidc/PAT-00{p}/1.2.3.{p}/{uid}/{name}") == data
    dicoms = [o for o in manifest.outputs if o.key.endswith(".dcm")]
    assert len(dicoms) == sum(len(f) for f in tcia.files_by_series.values())
    # AND the licence member became the dataset's LICENSE, the series are listed for label joins
    assert store.get_bytes("raw/lidc/LICENSE").startswith(b"Creative Commons Attribution 4.0")
    rows = list(csv.DictReader(io.StringIO(store.get_bytes("raw/lidc/tcia_series.csv").decode())))
    assert [r["SeriesInstanceUID"] for r in rows] == sorted(tcia.files_by_series)
    assert rows[0]["folder"] == "PAT-001/1.2.3.1/1.2.3.1.1" and rows[0]["Modality"] == "CT"
    assert manifest.summary["license"] == "CC BY 4.0"
    assert manifest.summary["series"] == 5 and manifest.summary["patients"] == 3
    # AND the dropped series was resumed with Range rather than downloaded twice in full
    resumed = [r for r in tcia.log if r.path == API + "getImage" and "Range" in r.headers]
    assert len(resumed) == 1 and resumed[0].query["SeriesInstanceUID"] == ["1.2.3.1.1"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--modality", "MR"], {"1.2.3.1.2", "1.2.3.3.2"}),
        (["--patient", "PAT-002,PAT-003"], {"1.2.3.2.1", "1.2.3.3.1", "1.2.3.3.2"}),
        (["--max-patients", "1"], {"1.2.3.1.1", "1.2.3.1.2"}),
        (["--ref", COLLECTION, "--body-part", "CHEST", "--max-patients", "2"],
         {"1.2.3.1.1", "1.2.3.1.2", "1.2.3.2.1"}),
    ],
)  # fmt: skip
def test_filters_select_series(tmp_path, tcia, flags, expected):
    if "--ref" not in flags:
        flags = ["--collection", COLLECTION, *flags]
    assert _collect(str(tmp_path / "s"), *flags) == 0
    assert set(_gets(tcia)) == expected


def test_tcia_manifest_file_selects_series(tmp_path, tcia):
    manifest = tmp_path / "cart.tcia"
    manifest.write_text(
        "downloadServerUrl=https://public.cancerimagingarchive.net/nbia-download/servlet/DownloadServlet\n"
        "includeAnnotation=true\nnoOfrRetry=4\ndatabasketId=manifest-1.tcia\nmanifestVersion=3.0\n"
        "ListOfSeriesToDownload=\n1.2.3.2.1\n9.9.1\n"
    )
    assert _collect(str(tmp_path / "s"), "--manifest", str(manifest)) == 0
    assert sorted(_gets(tcia)) == ["1.2.3.2.1", "9.9.1"]
    assert open_store(str(tmp_path / "s")).exists("raw/lidc/X-1/9.9/9.9.1/1-01.dcm")


def test_interrupted_collect_downloads_only_what_is_missing(store_uri, tcia):
    # GIVEN a finished collect whose manifest and one series' completion record were lost, and whose other
    # series lost one file (a partial series must not pass for complete)
    assert _collect(store_uri, "--collection", COLLECTION) == 0
    store = open_store(store_uri)
    first = read_manifest(store, "raw/lidc/")
    store.delete("raw/lidc/_SUCCESS.json")
    unit_records = [o.key for o in first.outputs if "/_collect/" in o.key]
    store.delete(next(k for k in unit_records if "1.2.3.2.1" in k))
    store.delete("raw/lidc/PAT-003/1.2.3.3/1.2.3.3.1/1-02.dcm")
    tcia.log.clear()
    # WHEN it runs again
    assert _collect(store_uri, "--collection", COLLECTION) == 0
    # THEN exactly those two series were downloaded again and the result is identical to the first
    assert sorted(_gets(tcia)) == ["1.2.3.2.1", "1.2.3.3.1"]
    assert read_manifest(store, "raw/lidc/").content_sha256 == first.content_sha256


def _stored_files(store_uri: str, uid: str) -> dict[str, bytes]:
    store = open_store(store_uri)
    keys = [k for k in store.keys("raw/lidc/") if f"/{uid}/" in k]
    return {k.rsplit("/", 1)[1]: store.get_bytes(k) for k in keys}


def test_dropped_series_download_resumes_at_the_member_it_was_reading(tmp_path, tcia):
    # GIVEN a series whose first download breaks off halfway through its ZIP
    uid = "1.2.3.3.2"
    tcia.fault_series(uid, "drop")
    # WHEN it is collected
    assert _collect(str(tmp_path / "s"), "--collection", COLLECTION, "--patient", "PAT-003") == 0
    # THEN the second request asked only for the rest, from the local header of the member cut in two
    requests = [r for r in tcia.log if r.path == API + "getImage" and r.query["SeriesInstanceUID"] == [uid]]
    assert len(requests) == 2 and "Range" not in requests[0].headers
    offset = int(requests[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    data = tcia.zips[uid]
    assert 0 < offset < len(data) // 2 and data[offset : offset + 4] == b"PK\x03\x04"
    assert requests[1].headers["If-Range"]
    # AND the stored files are the series' files, byte for byte
    assert _stored_files(str(tmp_path / "s"), uid) == tcia.files_by_series[uid]


def test_a_server_ignoring_the_resume_restarts_the_series_cleanly(tmp_path, tcia):
    uid = "1.2.3.3.2"
    tcia.fault_series(uid, "drop", "ignore-range")
    assert _collect(str(tmp_path / "s"), "--collection", COLLECTION, "--patient", "PAT-003") == 0
    assert _gets(tcia).count(uid) == 2
    assert _stored_files(str(tmp_path / "s"), uid) == tcia.files_by_series[uid]


def test_a_zip_that_cannot_be_streamed_is_downloaded_then_unpacked(tmp_path, tcia):
    # GIVEN a series ZIP with stored members whose sizes follow their data (written to an unseekable stream)
    uid = "1.2.3.2.1"

    tcia.zips[uid] = make_streamed_zip(tcia.files_by_series[uid], zipfile.ZIP_STORED)
    # WHEN it is collected
    assert _collect(str(tmp_path / "s"), "--collection", COLLECTION, "--patient", "PAT-002") == 0
    # THEN it took one refused streaming attempt and one download, and the files are intact
    assert _gets(tcia) == [uid, uid]
    assert _stored_files(str(tmp_path / "s"), uid) == tcia.files_by_series[uid]


def test_corrupt_zip_is_refetched_once(tmp_path, tcia):
    # GIVEN a series whose first download is corrupt (a flipped byte) and second is good
    good = tcia.zips["1.2.3.2.1"]
    bad = bytearray(good)
    bad[60] ^= 0xFF
    served = []

    def corrupt_then_good(handler, query, body) -> bool:
        if query.get("SeriesInstanceUID") == ["1.2.3.2.1"]:
            served.append(1)
            handler.serve_bytes(bytes(bad) if len(served) == 1 else good, None, "application/zip")
            return True
        return tcia._image(handler, query, body)

    tcia.routes[API + "getImage"] = corrupt_then_good
    assert _collect(str(tmp_path / "s"), "--collection", COLLECTION, "--patient", "PAT-002") == 0
    assert len(served) == 2


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ("corrupt", 3, "the download is corrupt"),
        ("traversal", 3, "escapes the target folder"),
        ("down", 75, "unavailable after 3 attempts"),
        ("unknown", 2, "matched no series"),
    ],
)
def test_faults_give_the_documented_exit_codes(tmp_path, tcia, capsys, change, code, message):
    flags = ["--collection", COLLECTION, "--patient", "PAT-002"]
    if change == "corrupt":
        data = bytearray(tcia.zips["1.2.3.2.1"])
        data[60] ^= 0xFF
        tcia.zips["1.2.3.2.1"] = bytes(data)
    elif change == "traversal":
        tcia.zips["1.2.3.2.1"] = series_zip({"../../../etc/cron.d/evil": b"x"})
    elif change == "down":
        tcia.fault(API + "getSeries", *["503"] * 5)
    else:
        flags = ["--collection", "No-Such-Collection"]
    store = str(tmp_path / "s")
    assert _collect(store, *flags) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("irmsia-collect: error:") and message in err
    assert read_manifest(open_store(store), "raw/lidc/") is None


def test_missing_manifest_file_is_a_usage_error(tmp_path, tcia, capsys):
    assert _collect(str(tmp_path / "s"), "--manifest", str(tmp_path / "nope.tcia")) == 2
    assert "--manifest" in capsys.readouterr().err


def test_series_zip_helper_is_a_valid_zip():
    assert zipfile.ZipFile(io.BytesIO(series_zip({"a.dcm": b"x"}))).testzip() is None


def test_the_series_list_pins_a_rerun_to_exactly_the_same_series(tmp_path, tcia, capsys):
    # GIVEN a collect of two patients and the tcia_series.csv it wrote
    store_uri = str(tmp_path / "s")
    assert _collect(store_uri, "--collection", COLLECTION, "--max-patients", "2") == 0
    store = open_store(store_uri)
    first = read_manifest(store, "raw/lidc/")
    assert first.summary["doi"] == ["https://doi.org/10.7937/tcia.lidc-mini"]
    assert first.summary["latest_release"] == "2024-05-01 00:00:00.0"
    pinned = tmp_path / "pinned.csv"
    pinned.write_bytes(store.get_bytes("raw/lidc/tcia_series.csv"))
    # WHEN the collection grows and the list is given back as --manifest
    tcia.add_series(COLLECTION, "PAT-000", "1.2.3.0", "1.2.3.0.1")
    assert main(["--source", "tcia", "--dataset", "again", "--store", store_uri, "--manifest", str(pinned)]) == 0
    # THEN the same series were collected, not the new one
    again = read_manifest(store, "raw/again/")
    assert again.summary["series_fingerprint"] == first.summary["series_fingerprint"]
    # AND once TCIA revises one of them (more images), the pinned rerun refuses (exit 3) rather than differ
    row = next(s for s in tcia.series if s["SeriesInstanceUID"] == "1.2.3.1.1")
    row["ImageCount"] += 1
    assert main(["--source", "tcia", "--dataset", "third", "--store", store_uri, "--manifest", str(pinned)]) == 3
    assert "TCIA revised it" in capsys.readouterr().err


def test_a_deidentified_collect_names_folders_and_lists_series_by_pseudonyms_only(tmp_path, tcia, monkeypatch):
    # GIVEN the collection, and a de-identification key in the environment
    monkeypatch.setenv("IRMSIA_DEID_SECRET", "tcia-deid-secret-27182818")
    store_uri = str(tmp_path / "store")
    # WHEN it is collected with --deidentify
    assert _collect(store_uri, "--collection", COLLECTION, "--deidentify", "--deid-allow-burned-in") == 0
    store = open_store(store_uri)
    manifest = read_manifest(store, "raw/lidc/")
    assert manifest.summary["deidentification"]["phi_scan"]["findings"] == 0
    # THEN no original series or study UID, nor patient ID, is in an object name or a stored record
    originals = {*tcia.files_by_series, *{u.rsplit(".", 1)[0] for u in tcia.files_by_series}, "PAT-001", "PAT-002"}
    stored = {o.key: store.get_bytes(o.key) for o in manifest.outputs}
    leaks = [(k, o) for k, v in stored.items() for o in originals if o in k or f"{o}\n".encode() in v
             or f"{o},".encode() in v or f'"{o}"'.encode() in v]  # fmt: skip
    assert leaks == []
    # AND the series list names each series by the folder its de-identified files are in, under its new UIDs
    rows = list(csv.DictReader(io.StringIO(stored["raw/lidc/tcia_series.csv"].decode())))
    assert len(rows) == len(tcia.files_by_series)
    for row in rows:
        (key, *_) = [k for k in stored if k.startswith(f"raw/lidc/{row['folder']}/")]
        header = pydicom.dcmread(io.BytesIO(stored[key]))
        assert (header.SeriesInstanceUID, header.StudyInstanceUID) == (
            row["SeriesInstanceUID"],
            row["StudyInstanceUID"],
        )
        assert row["folder"].endswith(f"/{header.StudyInstanceUID}/{header.SeriesInstanceUID}")
    # AND a rerun reuses every series instead of downloading it again
    tcia.log.clear()
    assert _collect(store_uri, "--collection", COLLECTION, "--deidentify", "--deid-allow-burned-in", "--force") == 0
    assert _gets(tcia) == []
