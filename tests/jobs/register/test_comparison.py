"""``--promote auto`` by a paired patient bootstrap on the same split, recorded in the ledger; the evaluation in the
bundle, the model card and ``irmsia registry show``."""

from __future__ import annotations

import json

import pytest

from jobs.register import comparison
from jobs.register import registry as model_registry
from tests.jobs.register.conftest import register
from tests.support.runs import predictions_of, seal_dataset, seal_run


def _entry(store, version: int) -> dict:
    return model_registry.show(store, "m", version)["ledger"]


def test_a_challenger_is_promoted_only_when_the_paired_interval_excludes_zero(store):
    # GIVEN a weak champion, a much stronger challenger, and a third run that only adds noise to the second's
    # predictions but reports a higher bare val_auc (which the old bare comparison would have promoted)
    upstream = seal_dataset(store)
    weak = predictions_of(0.3, seed=1)
    strong = predictions_of(2.0, seed=2)
    same = predictions_of(0.0, seed=3, noise_of=strong)
    seal_run(store, "r1", upstream=upstream, seed=1, metrics={"val_auc": 0.60}, predictions=weak)
    seal_run(store, "r2", upstream=upstream, seed=2, metrics={"val_auc": 0.90}, predictions=strong)
    seal_run(store, "r3", upstream=upstream, seed=3, metrics={"val_auc": 0.91}, predictions=same)
    # WHEN each is registered with --promote auto
    for run in ("r1", "r2", "r3"):
        assert register(store, "--run", run, "--model-name", "m", "--bootstrap-resamples", "500") == 0
    # THEN v2 beat v1 with an interval above zero and a small p, and v3 did not significantly beat v2
    assert model_registry.alias_map(store, "m") == {"champion": 2, "candidate": 3}
    test2 = _entry(store, 2)["promotion_test"]
    assert test2["metric"] == "auc" and test2["low"] > 0 and test2["p_value"] < 0.01
    assert test2["patients"] == 120 and test2["resamples"] == 500
    test3 = _entry(store, 3)["promotion_test"]
    assert test3["low"] <= 0 <= test3["high"]
    assert "does not significantly beat champion v2" in _entry(store, 3)["promotion"]
    # and the predictions travel with the bundle, so the next challenger can be paired against this one
    assert "eval/predictions.json" in model_registry.show(store, "m", 2)["files"]


def test_without_the_champions_predictions_the_bare_numbers_decide_and_say_so(store):
    # GIVEN a champion registered before runs kept predictions
    upstream = seal_dataset(store)
    seal_run(store, "r1", upstream=upstream, seed=1, metrics={"val_auc": 0.80})
    seal_run(store, "r2", upstream=upstream, seed=2, metrics={"val_auc": 0.85}, predictions=predictions_of(1.0))
    # WHEN a challenger with predictions is registered
    for run in ("r1", "r2"):
        assert register(store, "--run", run, "--model-name", "m") == 0
    # THEN the bare comparison promotes it, the reason says why there was no paired test, and no test is recorded
    entry = _entry(store, 2)
    assert entry["alias"] == "champion"
    assert "no paired test: the champion has no predictions.json" in entry["promotion"]
    assert "promotion_test" not in entry


@pytest.mark.parametrize(
    ("metric", "why"),
    [("val_f1x", "not a metric the paired test computes"), ("train_auc", "was not scored by both")],
)
def test_a_paired_test_that_cannot_run_says_why(metric, why):
    result = comparison.compare(predictions_of(1.0), predictions_of(1.0, seed=4), metric, resamples=100)
    assert result.result is None and why in result.why_not


def test_the_evaluation_reaches_the_bundle_the_card_and_registry_show(store, upstream):
    # GIVEN a run whose metrics carry intervals, calibration, operating points and subgroups
    evaluation = {
        "intervals": {"val_auc": {"low": 0.81, "high": 0.97, "resamples": 1000},
                      "test_sensitivity_abnormal": {"low": 0.5, "high": 0.9, "resamples": 1000}},
        "bootstrap": {"unit": "patient", "resamples": 1000, "seed": 42, "level": 0.95, "method": "percentile",
                      "patients": {"val": 3, "test": 3}},
        "calibration": {"temperature": 1.7, "fitted_on": "val", "val": {"ece": 0.04, "nll": 0.3, "bins": []}},
        "operating_points": {"abnormal": {"specificity_0.9": {"threshold": 0.62, "val": {"sensitivity": 0.8,
                             "specificity": 0.9}, "test": {"sensitivity": 0.7, "specificity": 0.85}}, "youden": None}},
        "subgroups": {"test": {"modality": {"CT": {"n": 30, "patients": 12, "accuracy": 0.9, "balanced_accuracy": 0.88,
                                                   "auc": 0.93}, "MR": {"n": 4, "patients": 2, "too_small": True}}}},
        "serving": {"temperature": 1.7, "operating_points": {"abnormal": {"specificity_0.9": 0.62}}},
    }  # fmt: skip
    seal_run(store, "r1", upstream=upstream, evaluation=evaluation, report=b"<!DOCTYPE html><p>report</p>")
    # WHEN it is registered
    assert register(store, "--run", "r1", "--model-name", "m") == 0
    # THEN show lists each metric with its interval, the metadata keeps the evaluation, the card shows it
    shown = model_registry.show(store, "m", 1)
    assert shown["metrics"]["val_auc"] == {"value": 0.95, "interval": evaluation["intervals"]["val_auc"]}
    assert shown["metrics"]["test_auc"]["interval"] is None
    assert shown["metadata"]["irmsia"]["evaluation"] == evaluation
    card = store.get_bytes("registry/m/1/docs/README.md").decode()
    assert "| val_auc | 0.9500 | 0.8100 - 0.9700 |" in card
    assert "1000 patient-level bootstrap resamples" in card
    assert "| test_sensitivity_abnormal | 0.5000 - 0.9000 |" in card
    assert "Temperature 1.7 (fitted on val)" in card
    assert "| abnormal | specificity_0.9 | 0.6200 | 0.8000 | 0.9000 | 0.7000 | 0.8500 |" in card
    assert "| modality | MR | 4 | 2 | too small | too small | too small |" in card
    assert json.loads(store.get_bytes("registry/m/1/configs/metadata.json"))["irmsia"]["evaluation"]["serving"]
    # and the run's HTML report is in the bundle
    assert "docs/report.html" in shown["files"]
    assert store.get_bytes("registry/m/1/docs/report.html") == b"<!DOCTYPE html><p>report</p>"


def _predictions(task: str | None) -> bytes:
    """A one-split predictions file of ``task`` (``None``: written before files named their task)."""
    rows = [{"image": f"i{i}", "patient_id": f"p{i}", "label": i % 2, "probs": [0.4, 0.6]} for i in range(8)]
    return json.dumps({**({"task": task} if task else {}), "classes": ["a", "b"], "splits": {"val": rows}}).encode()


@pytest.mark.parametrize(
    ("challenger", "champion", "why"),
    [
        ("multilabel", "multilabel", "compares classification predictions, not multilabel"),
        ("multilabel", "classification", "different tasks (multilabel vs classification)"),
        ("classification", "multilabel", "different tasks (classification vs multilabel)"),
    ],
)
def test_the_paired_test_runs_only_on_two_classification_runs(challenger, champion, why):
    # GIVEN two runs' predictions of which at least one is not classification
    # WHEN they are compared
    found = comparison.compare(_predictions(challenger), _predictions(champion), "val_auc", resamples=100)
    # THEN there is no paired result, and the reason (which the fallback decision quotes) names the tasks
    assert found.result is None and why in found.why_not


def test_a_file_without_a_task_is_classification_and_is_paired():
    # GIVEN a champion's predictions written before files named their task, and a classification challenger's
    # WHEN they are compared
    found = comparison.compare(_predictions("classification"), _predictions(None), "val_auc", resamples=100)
    # THEN the paired test runs
    assert found.result is not None, found.why_not
