"""``irmsia datasets list|search`` against local Kaggle and TCIA servers."""

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


def test_list_prints_every_recommended_dataset_with_its_command(capsys):
    from jobs.collect.catalog import RECOMMENDED

    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for entry in RECOMMENDED:
        assert entry.ref in out and entry.license in out and entry.command in out
    assert "irmsia-collect --source kaggle --dataset chest-xray-pneumonia --ref paultimothymooney/" in out


def test_search_finds_kaggle_datasets_and_tcia_collections(servers, capsys):
    assert main(["datasets", "search", "brain"]) == 0
    out = capsys.readouterr().out
    assert "someone/brain-mri-tumours" in out and "Brain-Tumor-Progression" in out
    assert "someone/chest" not in out and "LIDC-IDRI" not in out
    assert "--source tcia --dataset brain-tumor-progression --collection Brain-Tumor-Progression" in out


def test_search_without_kaggle_credentials_still_searches_tcia(servers, monkeypatch, capsys, tmp_path):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["datasets", "search", "lidc"]) == 0
    captured = capsys.readouterr()
    assert "LIDC-IDRI" in captured.out and "skipping Kaggle" in captured.err
    assert main(["datasets", "search", "lidc", "--source", "kaggle"]) == 2
