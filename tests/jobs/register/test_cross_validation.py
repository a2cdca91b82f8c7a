"""``irmsia-register --cv``: the sealed aggregate of the run's settings is recorded in the ledger entry, metadata,
model card and ``registry show``; one of other settings, an unsealed one or none at all is handled as documented."""

from __future__ import annotations

import json

from jobs.core.errors import ExitCode
from jobs.core.hashing import pretty_json
from jobs.core.manifest import StageWriter
from jobs.core.paths import crossval_prefix
from jobs.ml.evaluation import aggregate_folds
from jobs.register import ledger
from jobs.register import registry as model_registry
from tests.jobs.register.conftest import register
from tests.support.runs import seal_run

FOLD_METRICS = [{"val_auc": 0.9, "val_accuracy": 0.8}, {"val_auc": 0.8, "val_accuracy": 0.7},
                {"val_auc": 0.85, "val_accuracy": 0.9}]  # fmt: skip


def seal_cv(store, cv_id="demo-cv-0123456789", params=None):
    """``crossval/<cv-id>/`` as ``irmsia-train --aggregate-folds`` leaves it, over three sealed fold runs."""
    runs = [seal_run(store, f"fold-{i}", seed=100 + i, metrics=m) for i, m in enumerate(FOLD_METRICS)]
    writer = StageWriter(store, "train", crossval_prefix(cv_id), {"seed": 0, "folds": 3, **(params or {})},
                         {r.prefix: r.content_sha256 for r in runs})  # fmt: skip
    cv = {"dataset": "demo", "folds": 3, "metrics": aggregate_folds(FOLD_METRICS),
          "runs": [{"fold": i, "run_id": f"fold-{i}", "manifest_sha256": r.content_sha256, "metrics": m}
                   for i, (r, m) in enumerate(zip(runs, FOLD_METRICS, strict=True))]}  # fmt: skip
    writer.put_bytes("cv.json", pretty_json(cv))
    return writer.commit(summary={"cv_id": cv_id}), cv


def test_register_records_the_folds_mean_and_sd_everywhere_and_a_rerun_is_a_cache_hit(store, run_id):
    manifest, cv = seal_cv(store)
    assert register(store, "--run", run_id, "--model-name", "m", "--cv", "demo-cv-0123456789") == 0
    (entry,) = ledger.registrations(ledger.read_entries(store, "m")).values()
    recorded = entry.fields["cross_validation"]
    assert (recorded["folds"], recorded["manifest_sha256"], recorded["metrics"]) == (3, manifest.content_sha256,
                                                                                     cv["metrics"])  # fmt: skip
    assert recorded["metrics"]["val_auc"]["mean"] == 0.85 and recorded["metrics"]["val_auc"]["sd"] == 0.05
    assert [r["run_id"] for r in recorded["runs"]] == ["fold-0", "fold-1", "fold-2"]
    shown = model_registry.show(store, "m", 1)
    assert shown["cross_validation"] == recorded == shown["metadata"]["irmsia"]["cross_validation"]
    card = store.get_bytes("registry/m/1/docs/README.md").decode()
    assert "Cross-validation (3 folds)" in card and "| val_auc | 0.8500 | 0.0500 | 0.9000 / 0.8000 / 0.8500 |" in card
    # the bundle's lineage names the aggregate; the same run with the same aggregate is the same version
    assert manifest.prefix in json.loads(store.get_bytes("registry/m/1/_SUCCESS.json"))["inputs"]
    assert register(store, "--run", run_id, "--model-name", "m", "--cv", "demo-cv-0123456789") == 0
    assert len(ledger.registrations(ledger.read_entries(store, "m"))) == 1


def test_folds_of_other_settings_or_an_unsealed_aggregate_are_refused_and_none_records_nothing(store, run_id):
    seal_cv(store, "other-cv", params={"seed": 7})
    assert register(store, "--run", run_id, "--model-name", "m", "--cv", "other-cv") == ExitCode.USAGE
    assert register(store, "--run", run_id, "--model-name", "m", "--cv", "missing-cv") == ExitCode.DATA
    assert ledger.read_entries(store, "m") == []
    assert register(store, "--run", run_id, "--model-name", "m", "--cv", "") == 0
    (entry,) = ledger.registrations(ledger.read_entries(store, "m")).values()
    assert "cross_validation" not in entry.fields and model_registry.show(store, "m", 1)["cross_validation"] is None
