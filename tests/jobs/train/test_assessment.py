"""The run's evaluation end to end: intervals a broken model fails, calibration, operating points, subgroups."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from jobs.core.errors import DataError, UsageError
from jobs.core.store import open_store
from jobs.ml.predictions import Scored, read_predictions
from jobs.train.assessment import EvaluationOptions, assess, assess_multilabel, assess_segmentation
from jobs.train.stage import run
from tests.support.synthetic_split import write_split

COUNTS = {"train": 48, "val": 24, "test": 24}


def _train(tmp_path, fast_settings, *, shuffle: bool, **overrides):
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    columns = {"modality": ("CT", "CT", "CT", "MR"), "patient_sex": ("F", "M")}
    write_split(store, "tiny", counts=COUNTS, shuffle_labels=shuffle, columns=columns)
    run(fast_settings(store_uri, run_id="r", epochs=6, **overrides))
    return store, json.loads(store.get_bytes("runs/r/metrics.json"))


def test_a_shuffled_label_run_has_an_auc_interval_containing_chance_and_a_real_one_does_not(tmp_path, fast_settings):
    # GIVEN the same images once with their true labels and once with shuffled labels
    # WHEN each is trained and evaluated
    _, broken = _train(tmp_path / "broken", fast_settings, shuffle=True)
    _, real = _train(tmp_path / "real", fast_settings, shuffle=False)
    # THEN the broken run's test AUC interval contains 0.5, the real run's lies above it
    ci = broken["intervals"]["test_auc"]
    assert ci["low"] < 0.5 < ci["high"], ci
    assert real["intervals"]["test_auc"]["low"] > 0.5, real["intervals"]["test_auc"]
    # and every headline metric of both splits has an interval from 1,000 patient resamples
    for split in ("val", "test"):
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "sensitivity_nodule", "specificity_normal"):
            interval = real["intervals"][f"{split}_{name}"]
            assert 0.0 <= interval["low"] <= interval["high"] <= 1.0
    assert real["bootstrap"]["resamples"] == 1000
    assert real["bootstrap"]["patients"] == {"val": 24, "test": 24}


def test_the_run_records_calibration_operating_points_subgroups_and_predictions(tmp_path, fast_settings):
    # GIVEN a run with temperature scaling and a minimum subgroup of 8 images
    store, metrics = _train(tmp_path, fast_settings, shuffle=False, calibrate=True, min_subgroup=8)
    # THEN the temperature was fitted on val and does not raise the val NLL
    calibration = metrics["calibration"]
    assert calibration["fitted_on"] == "val"
    if calibration["temperature"] != 1.0:
        assert calibration["val"]["nll"] <= calibration["val"]["uncalibrated"]["nll"]
    assert sum(b["count"] for b in calibration["test"]["bins"]) == 24
    # operating points chosen on val meet the specificity there, with test rates beside them, and serving has them
    point = metrics["operating_points"]["nodule"]["specificity_0.9"]
    assert point["val"]["specificity"] >= 0.9 and "test" in point
    assert metrics["serving"]["operating_points"]["nodule"]["specificity_0.9"] == point["threshold"]
    assert metrics["serving"]["temperature"] == calibration["temperature"]
    # subgroups: MR (6 test images) is too small, CT (18) is scored, sex splits 12/12
    modality = metrics["subgroups"]["test"]["modality"]
    assert modality["MR"] == {"n": 6, "patients": 6, "too_small": True}
    assert modality["CT"]["n"] == 18 and 0.0 <= modality["CT"]["accuracy"] <= 1.0
    assert {v["n"] for v in metrics["subgroups"]["test"]["patient_sex"].values()} == {12}
    # predictions.json holds every scored image with its patient
    classes, splits = read_predictions(store.get_bytes("runs/r/predictions.json"), "predictions.json")
    assert classes == ["nodule", "normal"]
    assert len(splits["test"].keys) == 24 and len(set(splits["test"].patients)) == 24
    np.testing.assert_allclose(splits["test"].probs.sum(axis=1), 1.0, atol=1e-5)


def _scored(n: int, seed: int, sharpness: float) -> Scored:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    logits = sharpness * (rng.normal(0, 1, n) + 1.0 * (2 * y - 1))
    p1 = 1 / (1 + np.exp(-logits))
    return Scored(
        keys=tuple(f"k{i}" for i in range(n)),
        labels=y,
        probs=np.stack([1 - p1, p1], axis=1),
        patients=tuple(f"p{i}" for i in range(n)),
    )


def test_temperature_scaling_of_an_overconfident_model_lowers_the_test_ece():
    # GIVEN an overconfident model's val and test scores
    scored = {"val": _scored(400, 0, 5.0), "test": _scored(400, 1, 5.0)}
    # WHEN the run is assessed with and without calibration
    plain = assess(scored, ("neg", "pos"), EvaluationOptions(resamples=0))
    fitted = assess(scored, ("neg", "pos"), EvaluationOptions(resamples=0, calibrate=True))
    # THEN the fitted temperature softens it (> 1) and the held-out test ECE and NLL fall
    assert plain["calibration"]["temperature"] == 1.0 and "intervals" not in plain
    assert fitted["calibration"]["temperature"] > 2.0
    assert fitted["calibration"]["test"]["ece"] < plain["calibration"]["test"]["ece"]
    assert fitted["calibration"]["test"]["nll"] < plain["calibration"]["test"]["nll"]
    assert fitted["calibration"]["test"]["uncalibrated"]["ece"] == plain["calibration"]["test"]["ece"]


def test_a_fold_trains_on_the_other_folds_and_validates_on_its_own(tmp_path, fast_settings):
    # GIVEN a split whose 36 train and val images are in 3 folds
    store = open_store(str(tmp_path / "store"))
    write_split(store, "tiny", folds=3)
    # WHEN fold 1 is trained
    run(fast_settings(store.uri, run_id="f1", fold=1, epochs=1, bootstrap_resamples=100))
    # THEN it trained on the 24 images of folds 0 and 2, validated on the 12 of fold 1, and tested on the test split
    config = json.loads(store.get_bytes("runs/f1/config.json"))
    metrics = json.loads(store.get_bytes("runs/f1/metrics.json"))
    assert config["fold"] == 1 and config["train_images"] == 24
    assert metrics["details"]["val"]["n"] == 12 and metrics["details"]["test"]["n"] == 12
    assert metrics["bootstrap"]["patients"] == {"val": 12, "test": 12}


@pytest.mark.parametrize(
    ("folds", "fold", "error", "match"),
    [(0, 0, DataError, "the split has no folds; rerun irmsia-split --folds K"),
     (3, 3, UsageError, "--fold 3: the split has 3 folds")],
)  # fmt: skip
def test_a_fold_the_split_does_not_have_is_refused(tmp_path, fast_settings, folds, fold, error, match):
    store = open_store(str(tmp_path / "store"))
    write_split(store, "tiny", folds=folds)
    with pytest.raises(error, match=re.escape(match)):
        run(fast_settings(store.uri, run_id="f", fold=fold))


def test_a_multilabel_run_gets_per_finding_auc_intervals_and_names_what_does_not_apply():
    # GIVEN a multilabel model's val predictions: finding a informative, finding b guessed
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (80, 2))
    probs = np.clip(np.stack([labels[:, 0] * 0.6 + 0.2, rng.uniform(0, 1, 80)], axis=1), 0, 1)
    scored = {"val": Scored(tuple(f"i{i}" for i in range(80)), labels, probs, tuple(f"p{i // 2}" for i in range(80)))}
    # WHEN it is assessed
    sections = assess_multilabel(scored, ("a", "b"), EvaluationOptions(resamples=200))
    # THEN the intervals are per finding and of the mean, by patient, and the softmax-only parts are named n/a
    assert set(sections["intervals"]) == {"val_auc", "val_auc_a", "val_auc_b"}
    assert sections["intervals"]["val_auc_a"]["low"] > 0.9
    assert sections["bootstrap"]["patients"] == {"val": 40}
    assert set(sections["not_applicable"]) == {"calibration", "operating_points", "subgroups", "paired_test"}


def test_a_segmentation_run_gets_a_dice_interval_and_names_what_does_not_apply():
    # GIVEN per-case Dice values of val and test
    cases = {"val": ([[0.8], [0.9], [0.85]], ["a", "b", "c"]), "test": ([[0.7], []], ["d", "e"])}
    # WHEN they are assessed, and when intervals are switched off
    sections = assess_segmentation(cases, EvaluationOptions(resamples=100))
    off = assess_segmentation(cases, EvaluationOptions(resamples=0))
    # THEN each split has its Dice interval, and either way calibration and operating points are named n/a
    assert set(sections["intervals"]) == {"val_dice", "test_dice"}
    assert 0.8 <= sections["intervals"]["val_dice"]["low"] <= sections["intervals"]["val_dice"]["high"] <= 0.9
    assert "intervals" not in off and off["not_applicable"]["calibration"]
