"""The optional MLflow mirror: tags carry the metadata, and its absence never fails a registration."""

from __future__ import annotations

import json

import pytest

from jobs.register import mlflow_sync
from tests.jobs.register.conftest import register


def test_tags_carry_metrics_hashes_and_lineage(store, run_id):
    assert register(store, "--run", run_id, "--model-name", "m") == 0
    meta = json.loads(store.get_bytes("registry/m/1/configs/metadata.json"))
    tags = mlflow_sync.metadata_tags(meta, "champion")
    assert tags["irmsia.alias"] == "champion" and tags["irmsia.run_id"] == run_id
    assert tags["metric.val_auc"] == "0.95"
    assert tags["sha256.models/model.pt"] == meta["irmsia"]["model_files"]["models/model.pt"]
    assert json.loads(tags["lineage.license"]) == "CC-BY-4.0"
    assert all(isinstance(v, str) and len(v) <= mlflow_sync.MAX_TAG for v in tags.values())


@pytest.mark.skipif(mlflow_sync.mlflow_available(), reason="checks the behaviour without mlflow installed")
def test_tracking_uri_without_mlflow_still_registers(store, run_id, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert register(store, "--run", run_id, "--model-name", "m") == 0
    assert "mlflow is not installed" in capsys.readouterr().err


@pytest.mark.skipif(not mlflow_sync.mlflow_available(), reason="mlflow is not installed")
def test_version_is_mirrored_into_a_file_tracking_store(store, run_id, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert register(store, "--run", run_id, "--model-name", "m") == 0
    (version,) = MlflowClient(tracking_uri=uri).search_model_versions("name='m'")
    assert version.tags["irmsia.run_id"] == run_id
