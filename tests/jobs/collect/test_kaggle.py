"""``--source kaggle`` through the Kaggle client library against a local server speaking its protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.jobs.collect.conftest import DEID_ARCHIVE_FILES, DEID_SECRET, deid_archive, make_zip
from tests.support.kaggle_server import SERVICE, KaggleServer

REF = "paultimothymooney/chest-xray-pneumonia"
MEMBERS = {
    "chest_xray/train/NORMAL/IM-0115-0001.jpeg": b"\xff\xd8normal" * 3000,
    "chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg": b"\xff\xd8pneumonia" * 3000,
    "chest_xray/test/NORMAL/IM-0001-0001.jpeg": b"\xff\xd8test" * 3000,
}


@pytest.fixture
def kaggle(monkeypatch) -> Iterator[KaggleServer]:
    with KaggleServer() as server:
        server.add_dataset(REF, make_zip(MEMBERS), "Chest X-Ray Images (Pneumonia)")
        monkeypatch.setenv("IRMSIA_KAGGLE_ENDPOINT", server.base)
        monkeypatch.setenv("KAGGLE_USERNAME", server.username)
        monkeypatch.setenv("KAGGLE_KEY", server.key)
        for var in ("KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
        yield server


def _collect(store_uri: str, *extra: str) -> int:
    return main(["--source", "kaggle", "--dataset", "pneumonia", "--ref", REF, "--store", store_uri,
                 "--backoff", "0.01", "--retries", "3", *extra])  # fmt: skip


def test_dataset_is_downloaded_through_the_redirect_and_unpacked(store_uri, kaggle):
    # GIVEN a download that drops half way (the first GET is the client library following the redirect)
    kaggle.fault(f"/files/{REF}.zip", "ok", "drop")
    assert _collect(store_uri) == 0
    # THEN the client called the real RPCs, authenticated, and the files are byte-identical
    paths = [r.path for r in kaggle.log]
    assert SERVICE + "GetDataset" in paths and SERVICE + "DownloadDataset" in paths
    assert all(r.headers.get("Authorization", "").startswith("Basic ") for r in kaggle.log if r.method == "POST")
    store = open_store(store_uri)
    for name, data in MEMBERS.items():
        assert store.get_bytes(f"raw/pneumonia/{name}") == data
    manifest = read_manifest(store, "raw/pneumonia/")
    assert manifest.summary["license"] == "CC BY 4.0" and manifest.summary["ref"] == REF
    # AND the dropped transfer resumed with Range
    assert any("Range" in r.headers for r in kaggle.requests_for(f"/files/{REF}.zip"))


def test_token_credentials_are_sent_as_bearer(tmp_path, kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", kaggle.key)
    assert _collect(str(tmp_path / "s")) == 0
    assert kaggle.log[0].headers["Authorization"] == f"Bearer {kaggle.key}"


def test_kaggle_json_is_read(tmp_path, kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "kaggle.json").write_text(f'{{"username": "{kaggle.username}", "key": "{kaggle.key}"}}')
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert _collect(str(tmp_path / "s")) == 0


def test_missing_credentials_exit_2(tmp_path, kaggle, monkeypatch, capsys):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _collect(str(tmp_path / "s")) == 2
    assert "KAGGLE_API_TOKEN" in capsys.readouterr().err


def test_wrong_credentials_exit_2_without_leaking_the_key(tmp_path, kaggle, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KEY", "wrong-secret-value")
    assert _collect(str(tmp_path / "s")) == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "access denied" in err and "wrong-secret-value" not in err


def test_unknown_dataset_exit_2(tmp_path, kaggle, capsys):
    assert main(["--source", "kaggle", "--dataset", "x", "--ref", "nobody/nothing", "--store", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_rate_limit_then_success(tmp_path, kaggle):
    kaggle.retry_after = "0"
    kaggle.fault(SERVICE + "DownloadDataset", "429", "503")
    assert _collect(str(tmp_path / "s")) == 0


def test_kaggle_down_exit_75(tmp_path, kaggle, capsys):
    kaggle.fault(SERVICE + "GetDataset", *["503"] * 5)
    assert _collect(str(tmp_path / "s")) == 75
    assert "unavailable after 3 attempts" in capsys.readouterr().err


def _downloads(kaggle: KaggleServer) -> int:
    """GETs of the ZIP by the transfer code (the client library's redirect probe carries Authorization)."""
    return len([r for r in kaggle.requests_for(f"/files/{REF}.zip") if "Authorization" not in r.headers])


def test_rerun_does_not_download_again(tmp_path, kaggle):
    store = str(tmp_path / "s")
    assert _collect(store) == 0
    open_store(store).delete("raw/pneumonia/_SUCCESS.json")
    assert _downloads(kaggle) == 1
    assert _collect(store) == 0
    assert _downloads(kaggle) == 1
    assert read_manifest(open_store(store), "raw/pneumonia/").summary["files"] == len(MEMBERS) + 1


def test_a_deidentified_rerun_reusing_the_stored_dataset_reports_what_the_first_run_did(tmp_path, kaggle,
                                                                                         monkeypatch):  # fmt: skip
    # GIVEN a dataset of DICOM files and a label list, collected with --deidentify
    monkeypatch.setenv("IRMSIA_DEID_SECRET", DEID_SECRET)
    kaggle.add_dataset(REF, deid_archive(), "Chest X-Ray Images (Pneumonia)")
    store = str(tmp_path / "s")
    assert _collect(store, "--deidentify") == 0
    first = read_manifest(open_store(store), "raw/pneumonia/")
    assert first.summary["deidentification"]["files"] == DEID_ARCHIVE_FILES
    # WHEN it is collected again (--force: no cache hit), reusing the stored dataset's unit
    assert _collect(store, "--deidentify", "--force") == 0
    # THEN nothing was downloaded again, and the report and the result are the first run's
    assert _downloads(kaggle) == 1
    again = read_manifest(open_store(store), "raw/pneumonia/")
    assert again.summary["deidentification"] == first.summary["deidentification"]
    assert again.content_sha256 == first.content_sha256


def test_search_lists_matching_datasets(kaggle):
    from jobs.collect.sources.kaggle import KaggleCredentials, KaggleDatasets
    from jobs.collect.transfer import HttpClient

    creds = KaggleCredentials("test", username=kaggle.username, key=kaggle.key)
    hits = KaggleDatasets(creds, kaggle.base, HttpClient()).search("pneumonia")
    assert hits == [{"ref": REF, "title": "Chest X-Ray Images (Pneumonia)", "bytes": kaggle.datasets[REF]["totalBytes"],
                     "license": "CC BY 4.0"}]  # fmt: skip


# -- dataset versions: recorded, and asked for again ------------------------------------------------------------
def test_the_version_collected_is_recorded_and_a_pinned_rerun_gets_exactly_it(tmp_path, kaggle):
    # GIVEN a dataset with two versions (2 is current)
    old = {"chest_xray/train/NORMAL/IM-old.jpeg": b"\xff\xd8old" * 1000}
    kaggle.add_dataset(REF, make_zip(MEMBERS), "Chest X-Ray Images (Pneumonia)",
                       versions={1: make_zip(old), 2: make_zip(MEMBERS)})  # fmt: skip
    store_uri = str(tmp_path / "s")
    # WHEN it is collected without a version, then pinned to version 1 into another dataset
    assert _collect(store_uri) == 0
    assert main(["--source", "kaggle", "--dataset", "v1", "--ref", REF, "--kaggle-version", "1",
                 "--store", store_uri, "--backoff", "0.01"]) == 0  # fmt: skip
    # THEN the first records version 2 and how to ask for it, the second holds exactly version 1
    store = open_store(store_uri)
    current = read_manifest(store, "raw/pneumonia/")
    assert current.summary["version"] == 2 and current.summary["pin"] == "--kaggle-version 2"
    assert current.params["version"] == 2
    pinned = read_manifest(store, "raw/v1/")
    assert pinned.summary["version"] == 1
    assert sorted(o.key.removeprefix("raw/v1/") for o in pinned.outputs if not o.key.startswith("raw/v1/_")) == \
        sorted(old)  # fmt: skip
    assert any(r.path == f"/files/{REF}/versions/1.zip" for r in kaggle.log)


def test_a_new_version_is_not_a_cache_hit(tmp_path, kaggle):
    # GIVEN a collected dataset
    store_uri = str(tmp_path / "s")
    assert _collect(store_uri) == 0
    # WHEN Kaggle publishes version 2 and the collect runs again
    newer = {**MEMBERS, "chest_xray/val/NORMAL/new.jpeg": b"\xff\xd8new" * 1000}
    kaggle.add_dataset(REF, make_zip(newer), "Chest X-Ray Images (Pneumonia)",
                       versions={1: make_zip(MEMBERS), 2: make_zip(newer)})  # fmt: skip
    assert _collect(store_uri) == 0
    # THEN the new version was collected
    manifest = read_manifest(open_store(store_uri), "raw/pneumonia/")
    assert manifest.summary["version"] == 2
    assert open_store(store_uri).exists("raw/pneumonia/chest_xray/val/NORMAL/new.jpeg")


def test_an_unknown_version_is_exit_2(tmp_path, kaggle, capsys):
    assert _collect(str(tmp_path / "s"), "--kaggle-version", "7") == 2
    assert "not found" in capsys.readouterr().err


# -- competitions ---------------------------------------------------------------------------------------------
COMPETITION = "rsna-pneumonia-detection-challenge"
COMPETITION_FILES = {
    "stage_2_train_labels.csv": b"patientId,x,y,width,height,Target\n0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0\n",
    "stage_2_train_images/0004cfab-14fd-4e49-80ba-63a80b6bddd6.dcm": b"\x00" * 128 + b"DICM" + b"\x02" * 2000,
}


def _competition(store_uri: str, *extra: str) -> int:
    return main(["--source", "kaggle", "--dataset", "rsna", "--competition", COMPETITION, "--store", store_uri,
                 "--backoff", "0.01", "--retries", "3", *extra])  # fmt: skip


def test_a_competitions_data_is_downloaded_resumed_and_verified(store_uri, kaggle):
    # GIVEN a competition whose data transfer drops half way
    path = kaggle.add_competition(COMPETITION, make_zip(COMPETITION_FILES), "RSNA Pneumonia Detection Challenge")
    kaggle.fault(path, "ok", "drop")
    # WHEN it is collected
    assert _competition(store_uri) == 0
    # THEN the files are stored byte for byte, the transfer resumed, and the ZIP's checksum is recorded
    store = open_store(store_uri)
    for name, data in COMPETITION_FILES.items():
        assert store.get_bytes(f"raw/rsna/{name}") == data
    assert any("Range" in r.headers for r in kaggle.requests_for(path))
    manifest = read_manifest(store, "raw/rsna/")
    assert manifest.summary["competition"] == COMPETITION and len(manifest.summary["sha256"]) == 64
    assert "competition rules" in manifest.summary["license"]
    from tests.support.kaggle_server import COMPETITIONS

    assert {COMPETITIONS + "GetCompetition", COMPETITIONS + "DownloadDataFiles"} <= {r.path for r in kaggle.log}


def test_a_rerun_of_a_competition_does_not_download_again(tmp_path, kaggle):
    path = kaggle.add_competition(COMPETITION, make_zip(COMPETITION_FILES), "RSNA Pneumonia Detection Challenge")
    store_uri = str(tmp_path / "s")
    assert _competition(store_uri) == 0
    open_store(store_uri).delete("raw/rsna/_SUCCESS.json")
    assert _competition(store_uri) == 0
    assert len([r for r in kaggle.requests_for(path) if "Authorization" not in r.headers]) == 1


@pytest.mark.parametrize(
    ("flags", "entered", "message"),
    [
        ([], False, "accept its rules at https://www.kaggle.com/competitions/" + COMPETITION + "/rules"),
        (["--ref", REF], True, "not both"),
        (["--kaggle-version", "2"], True, "a competition's data has no version numbers"),
    ],
)
def test_competition_errors_are_usage_errors(tmp_path, kaggle, capsys, flags, entered, message):
    kaggle.add_competition(COMPETITION, make_zip(COMPETITION_FILES), "RSNA Pneumonia", entered=entered)
    assert _competition(str(tmp_path / "s"), *flags) == 2
    assert message in capsys.readouterr().err
