"""``--source nih`` against a local NIH-like server: MD5-verified archives, labels and the official split."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest

from jobs.collect.__main__ import main
from jobs.collect.sources import nih
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.support.nih_server import NihServer, png_bytes

ARCHIVES = {
    1: ["00000001_000.png", "00000001_001.png", "00000002_000.png"],
    2: ["00000003_000.png", "00000004_000.png"],
}
FINDINGS = {"00000001_000.png": "Cardiomegaly|Effusion", "00000003_000.png": "Pleural_Thickening"}
TEST_IMAGES = {"00000004_000.png"}


@pytest.fixture
def nih_server(monkeypatch) -> Iterator[NihServer]:
    with NihServer() as server:
        table = server.publish(nih.ARCHIVES, ARCHIVES, FINDINGS, TEST_IMAGES)
        monkeypatch.setattr(nih, "ARCHIVES", table)  # synthetic archives: their own MD5s, same links
        monkeypatch.setenv("IRMSIA_NIH_URL", server.base + "/")
        monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
        yield server


def _collect(store_uri: str, *extra: str) -> int:
    return main(["--source", "nih", "--dataset", "nih", "--store", store_uri, "--archives", "1,2", "--backoff",
                 "0.01", "--retries", "3", *extra])  # fmt: skip


def test_archives_labels_and_official_split(store_uri, nih_server):
    # GIVEN the first archive's connection drops once
    nih_server.fault("/" + nih.ARCHIVES[0][1], "drop")
    # WHEN two archives are collected
    assert _collect(store_uri) == 0
    store = open_store(store_uri)
    manifest = read_manifest(store, "raw/nih/")
    # THEN every image is stored byte for byte under images/
    names = [n for names in ARCHIVES.values() for n in names]
    for name in names:
        assert store.get_bytes(f"raw/nih/images/{name}") == png_bytes(name)
    # AND labels.csv joins the NIH CSV (multi-label, patient) and the official split, for collected images only
    rows = list(csv.DictReader(io.StringIO(store.get_bytes("raw/nih/labels.csv").decode())))
    assert [r["path"] for r in rows] == sorted(f"images/{n}" for n in names)
    by_path = {r["path"]: r for r in rows}
    assert by_path["images/00000001_000.png"]["label"] == "Cardiomegaly|Effusion"
    assert by_path["images/00000002_000.png"]["label"] == "No Finding"
    assert by_path["images/00000001_001.png"]["patient_id"] == "1"
    assert by_path["images/00000004_000.png"]["official_split"] == "test"
    assert by_path["images/00000003_000.png"]["official_split"] == "train"
    # AND the original metadata files and licence are kept as sidecars
    for sidecar in ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt", "LICENSE"):
        assert store.exists(f"raw/nih/{sidecar}")
    assert manifest.summary["license"].startswith("NIH Clinical Center")
    assert manifest.summary["images"] == 5
    # AND the release is pinned by NIH's own checksum of every archive collected
    assert manifest.summary["archive_md5"] == {name: md5 for name, _, md5 in nih.ARCHIVES[:2]}


def test_subset_of_archives(tmp_path, nih_server):
    assert _collect(str(tmp_path / "s"), "--archives", "2") == 0
    fetched = [r.path for r in nih_server.log if r.path.endswith(".gz")]
    assert fetched == ["/" + nih.ARCHIVES[1][1]]


def test_md5_mismatch_is_a_data_error(tmp_path, nih_server, monkeypatch, capsys):
    name, rel, _ = nih.ARCHIVES[0]
    monkeypatch.setattr(nih, "ARCHIVES", ((name, rel, "0" * 32), *nih.ARCHIVES[1:]))
    assert _collect(str(tmp_path / "s"), "--archives", "1") == 3
    err = capsys.readouterr().err
    assert "MD5 is" in err and "images_001.tar.gz" in err


def test_metadata_from_a_local_folder(tmp_path, nih_server):
    # GIVEN the CSV and lists downloaded by hand (NIH gives them no direct link)
    folder = tmp_path / "meta"
    folder.mkdir()
    for name in nih.METADATA:
        (folder / name).write_bytes(nih_server.files["/" + name])
    del nih_server.files["/Data_Entry_2017_v2020.csv"]
    assert _collect(str(tmp_path / "s"), "--path", str(folder)) == 0


def test_missing_metadata_says_how_to_get_it(tmp_path, nih_server, capsys):
    del nih_server.files["/Data_Entry_2017_v2020.csv"]
    assert _collect(str(tmp_path / "s")) == 2
    assert "--path DIR" in capsys.readouterr().err


def test_rerun_reuses_verified_archives(tmp_path, nih_server):
    store = str(tmp_path / "s")
    assert _collect(store) == 0
    open_store(store).delete("raw/nih/_SUCCESS.json")
    nih_server.log.clear()
    assert _collect(store) == 0
    assert not [r for r in nih_server.log if r.path.endswith(".gz")]
