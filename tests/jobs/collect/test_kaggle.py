"""``--source kaggle`` through the Kaggle client library against a local server speaking its protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.jobs.collect.conftest import make_zip
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


def test_search_lists_matching_datasets(kaggle):
    from jobs.collect.sources.kaggle import KaggleCredentials, KaggleDatasets
    from jobs.collect.transfer import HttpClient

    creds = KaggleCredentials("test", username=kaggle.username, key=kaggle.key)
    hits = KaggleDatasets(creds, kaggle.base, HttpClient()).search("pneumonia")
    assert hits == [{"ref": REF, "title": "Chest X-Ray Images (Pneumonia)", "bytes": kaggle.datasets[REF]["totalBytes"],
                     "license": "CC BY 4.0"}]  # fmt: skip
