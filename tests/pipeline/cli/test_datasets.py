"""``irmsia datasets list|search|show``: the catalogue offline, and Kaggle and TCIA through local servers."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from tests.jobs.collect.conftest import make_zip
from tests.support.kaggle_server import KaggleServer
from tests.support.tcia_server import TciaServer


@pytest.fixture
def servers(monkeypatch):
    with KaggleServer() as kaggle, TciaServer() as tcia:
        kaggle.add_dataset("someone/brain-mri-tumours", make_zip({"a.png": b"x"}), "Brain MRI tumours")
        kaggle.add_dataset("someone/chest", make_zip({"a.png": b"x"}), "Chest X-rays")
        tcia.add_series("Brain-Tumor-Progression", "P1", "1.1", "1.1.1", "MR", images=1)
        tcia.add_series("LIDC-IDRI", "P2", "2.1", "2.1.1", "CT", images=1)
        monkeypatch.setenv("IRMSIA_KAGGLE_ENDPOINT", kaggle.base)
        monkeypatch.setenv("IRMSIA_TCIA_URL", tcia.api_url)
        monkeypatch.setenv("KAGGLE_USERNAME", kaggle.username)
        monkeypatch.setenv("KAGGLE_KEY", kaggle.key)
        monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
        yield kaggle, tcia


def test_list_prints_every_catalogued_dataset_and_the_top_ten_commands(capsys):
    from jobs.collect.catalog import TOP_TEN, catalogue, find

    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for entry in catalogue():
        assert f"\n{entry.name} " in out
    for name in TOP_TEN:
        assert find(name).command in out
    assert f"{len(catalogue())} datasets:" in out


def test_list_filters_and_prints_the_commands_of_what_it_shows(capsys):
    assert main(["datasets", "list", "--source", "kaggle-competition", "--access", "rules"]) == 0
    out = capsys.readouterr().out
    assert (
        "irmsia-collect --source kaggle --dataset rsna-pneumonia --competition rsna-pneumonia-detection-challenge"
        in out
    )
    assert "chest-xray-pneumonia" not in out and " idc " not in out


def test_show_says_how_to_get_a_dataset_and_what_the_pipeline_can_do(capsys):
    assert main(["datasets", "show", "mimic-cxr"]) == 0
    out = capsys.readouterr().out
    assert "credentialed" in out and "PhysioNet" in out and "pipeline cannot:" in out
    assert "irmsia-collect --source local --dataset mimic-cxr" in out
    assert main(["datasets", "show", "no-such-thing"]) == 2


def test_search_looks_through_the_catalogue_offline(capsys):
    assert main(["datasets", "search", "intracranial"]) == 0
    out = capsys.readouterr().out
    assert "rsna-intracranial-hemorrhage" in out and "online:" not in out


def test_search_finds_kaggle_datasets_and_tcia_collections(servers, capsys):
    assert main(["datasets", "search", "brain", "--online"]) == 0
    out = capsys.readouterr().out
    assert "someone/brain-mri-tumours" in out and "Brain-Tumor-Progression" in out
    assert "someone/chest" not in out and "LIDC-IDRI\n" not in out and "--collection LIDC-IDRI" not in out
    assert "--source tcia --dataset brain-tumor-progression --collection Brain-Tumor-Progression" in out


def test_search_without_kaggle_credentials_still_searches_tcia(servers, monkeypatch, capsys, tmp_path):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["datasets", "search", "lidc", "--online"]) == 0
    captured = capsys.readouterr()
    assert "LIDC-IDRI" in captured.out and "skipping Kaggle" in captured.err
    assert main(["datasets", "search", "lidc", "--source", "kaggle"]) == 2
