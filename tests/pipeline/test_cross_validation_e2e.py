"""``irmsia run --folds 3`` on the demo dataset, end to end: three fold trainings beside the registered one (side by
side with ``--jobs``), their mean ± sd sealed in ``crossval/<cv-id>/cv.json`` and recorded by register in the
ledger, the metadata, the model card and ``irmsia registry show``; a rerun is all cache hits."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.paths import crossval_prefix, run_prefix
from jobs.core.store import open_store
from jobs.register import ledger

pytestmark = [pytest.mark.slow]
FAST = ("--model", "small-cnn", "--epochs", "2", "--image-size", "32")


def _irmsia(*args: str) -> subprocess.CompletedProcess:
    # output into files, not pipes: a decode worker outliving its stage must not keep the test waiting on a pipe
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        env = {**os.environ, "IRMSIA_LOG_FORMAT": "text"}
        done = subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, stdout=out, stderr=err, timeout=900)
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())


def test_three_folds_train_aggregate_and_are_registered_then_a_rerun_is_all_cache_hits(tmp_path):
    store_uri = str(tmp_path / "store")
    run = ("run", "--store", store_uri, "--profile", "demo", "--folds", "3", "--jobs", "2", *FAST)
    # WHEN the demo pipeline runs with three folds
    first = _irmsia(*run)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    store = open_store(store_uri)
    # THEN four runs were trained: the registered one and one per fold, each fold validated on its own fold
    run_ids = sorted({o.key.split("/")[1] for o in store.list("runs/")})
    assert len(run_ids) == 4
    folds = {}
    for run_id in run_ids:
        manifest = read_manifest(store, run_prefix(run_id))
        assert manifest is not None
        folds[run_id] = manifest.params["fold"]
    assert sorted(f for f in folds.values() if f is not None) == [0, 1, 2]
    (registered,) = [r for r, f in folds.items() if f is None]
    # AND the aggregate's mean and sd are those of the fold runs' own metrics.json
    (cv_id,) = {o.key.split("/")[1] for o in store.list("crossval/")}
    cv = json.loads(store.get_bytes(crossval_prefix(cv_id) + "cv.json"))
    assert [r["fold"] for r in cv["runs"]] == [0, 1, 2]
    fold_metrics = [json.loads(store.get_bytes(run_prefix(r["run_id"]) + "metrics.json")) for r in cv["runs"]]
    assert [folds[r["run_id"]] for r in cv["runs"]] == [0, 1, 2]
    for name in ("val_accuracy", "val_auc", "val_loss", "test_accuracy"):
        values = [float(m[name]) for m in fold_metrics]
        assert cv["metrics"][name]["values"] == values
        assert cv["metrics"][name]["mean"] == pytest.approx(statistics.mean(values), abs=1e-6)
        assert cv["metrics"][name]["sd"] == pytest.approx(statistics.stdev(values), abs=1e-6)
        assert cv["metrics"][name]["n"] == 3
    # AND register registered the ordinary run and recorded the folds in its ledger entry, metadata and card
    (entry,) = ledger.registrations(ledger.read_entries(store, "demo-classifier")).values()
    assert entry.fields["run_id"] == registered
    recorded = entry.fields["cross_validation"]
    assert (recorded["cv_id"], recorded["folds"], recorded["metrics"]) == (cv_id, 3, cv["metrics"])
    assert [r["run_id"] for r in recorded["runs"]] == [r["run_id"] for r in cv["runs"]]
    shown = _irmsia("registry", "show", "demo-classifier", "--store", store_uri)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["cross_validation"] == recorded
    card = store.get_bytes("registry/demo-classifier/1/docs/README.md").decode()
    accuracy = cv["metrics"]["val_accuracy"]
    assert "Cross-validation (3 folds)" in card
    assert f"| val_accuracy | {accuracy['mean']:.4f} | {accuracy['sd']:.4f} |" in card, card
    # WHEN it runs again THEN every task (three folds included) is a cache hit and nothing new is written
    second = _irmsia(*run)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count(" cached ") == 9, second.stdout
    assert sorted({o.key.split("/")[1] for o in store.list("runs/")}) == run_ids
    assert len(ledger.registrations(ledger.read_entries(store, "demo-classifier"))) == 1
