"""Evaluation statistics: properties a broken bootstrap, calibration or operating point would fail."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.ml.evaluation import (
    PatientResampler,
    age_band,
    aggregate_folds,
    apply_temperature,
    bootstrap_intervals,
    case_mean_interval,
    fit_temperature,
    multilabel_intervals,
    nll,
    operating_points,
    paired_bootstrap,
    reliability,
    subgroup_metrics,
    threshold_at_specificity,
    youden_threshold,
)

CLASSES = ("neg", "pos")


def _binary(n: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels alternating 0/1 and probabilities whose positive score is shifted up by ``separation``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + separation * (2 * y - 1))))
    return y, np.stack([1 - score, score], axis=1)


def _patients(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_shuffled_label_model_has_an_auc_interval_containing_one_half(seed):
    # GIVEN a model that learned nothing: labels shuffled against its scores
    y, probs = _binary(120, 2.0, seed)
    shuffled = np.random.default_rng(100 + seed).permutation(y)
    # WHEN the patient bootstrap gives the AUC interval
    ci = bootstrap_intervals(shuffled, probs, _patients(120), CLASSES, resamples=500, seed=seed)
    # THEN it contains chance
    assert ci["auc"]["low"] < 0.5 < ci["auc"]["high"]


def test_a_good_model_has_an_interval_above_chance_around_its_point_estimate():
    # GIVEN a model that separates the classes
    y, probs = _binary(200, 2.0, 0)
    # WHEN intervals are computed
    ci = bootstrap_intervals(y, probs, _patients(200), CLASSES, resamples=500)
    # THEN chance is excluded, and each headline interval is ordered and in [0, 1]
    assert ci["auc"]["low"] > 0.8
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "sensitivity_pos", "specificity_pos"):
        assert 0.0 <= ci[name]["low"] <= ci[name]["high"] <= 1.0
        assert ci[name]["resamples"] == 500
    # and the loss (NLL) interval brackets the observed loss
    assert ci["loss"]["low"] < nll(y, probs) < ci["loss"]["high"]


def test_the_interval_narrows_as_patients_are_added():
    # GIVEN the same model scored on 50 and on 2,000 patients
    widths = []
    for n in (50, 2000):
        y, probs = _binary(n, 1.0, 7)
        ci = bootstrap_intervals(y, probs, _patients(n), CLASSES, resamples=300)
        widths.append(ci["accuracy"]["high"] - ci["accuracy"]["low"])
    # THEN the larger sample's interval is much narrower (about sqrt(40) ~ 6x)
    assert widths[1] < widths[0] / 3


def test_images_of_one_patient_do_not_narrow_the_interval():
    # GIVEN 40 patients, scored once each, and the same patients with each image copied ten times
    y, probs = _binary(40, 1.0, 3)
    once = bootstrap_intervals(y, probs, _patients(40), CLASSES, resamples=400)
    patients10 = [p for p in _patients(40) for _ in range(10)]
    ten = bootstrap_intervals(np.repeat(y, 10), np.repeat(probs, 10, axis=0), patients10, CLASSES, resamples=400)
    # THEN the patient is the unit: the interval is as wide as with one image each (an image-level bootstrap
    # would shrink it by about sqrt(10))
    width = ten["accuracy"]["high"] - ten["accuracy"]["low"]
    assert width > 0.7 * (once["accuracy"]["high"] - once["accuracy"]["low"])


def test_the_bootstrap_is_seeded():
    # GIVEN one scored split
    y, probs = _binary(60, 1.0, 0)
    # WHEN intervals are computed twice with one seed and once with another
    a = bootstrap_intervals(y, probs, _patients(60), CLASSES, resamples=200, seed=5)
    b = bootstrap_intervals(y, probs, _patients(60), CLASSES, resamples=200, seed=5)
    c = bootstrap_intervals(y, probs, _patients(60), CLASSES, resamples=200, seed=6)
    # THEN the same seed repeats exactly and the other differs
    assert a == b
    assert a != c


def test_resampling_draws_whole_patients():
    # GIVEN three patients with 1, 2 and 3 images
    sampler = PatientResampler.of(["a", "b", "b", "c", "c", "c"], resamples=50, seed=0)
    # WHEN resamples are drawn THEN each holds three patients' complete image sets
    for idx in sampler.indices():
        counts = np.bincount(idx, minlength=6)
        assert counts[1] == counts[2] and counts[3] == counts[4] == counts[5]
        assert counts[0] + counts[1] + counts[3] == 3


def test_an_auc_undefined_in_a_split_has_no_interval():
    # GIVEN a split with only negatives
    y = np.zeros(10, np.int64)
    probs = np.tile([0.7, 0.3], (10, 1))
    # WHEN intervals are computed THEN the AUC has none, accuracy does
    ci = bootstrap_intervals(y, probs, _patients(10), CLASSES, resamples=50)
    assert ci["auc"] is None
    assert ci["accuracy"] is not None


# -- paired test -----------------------------------------------------------------------------------------------
def test_a_model_compared_with_itself_is_not_better():
    y, probs = _binary(100, 1.0, 0)
    result = paired_bootstrap(y, probs, probs, _patients(100), "auc", CLASSES, resamples=300)
    assert result is not None
    assert result.difference == 0 and result.low == result.high == 0
    assert result.p_value == 1.0 and not result.better(lower_is_better=False)


def test_a_clearly_better_model_wins_and_a_marginally_different_one_does_not():
    # GIVEN a champion that learned little and two challengers: a strong one and one differing by noise
    y, weak = _binary(150, 0.3, 1)
    _, strong = _binary(150, 2.5, 2)
    rng = np.random.default_rng(3)
    noisy = np.clip(weak + rng.normal(0, 0.01, weak.shape), 1e-6, 1)
    noisy /= noisy.sum(axis=1, keepdims=True)
    patients = _patients(150)
    # WHEN each is paired against the champion on the same patients
    wins = paired_bootstrap(y, strong, weak, patients, "auc", CLASSES, resamples=500)
    tie = paired_bootstrap(y, noisy, weak, patients, "auc", CLASSES, resamples=500)
    # THEN the strong one's difference interval excludes zero with a small p; the noisy one's contains zero
    assert wins.better(lower_is_better=False) and wins.p_value < 0.01
    assert tie.low <= 0 <= tie.high and not tie.better(lower_is_better=False)


def test_for_a_loss_lower_is_better():
    y, weak = _binary(150, 0.3, 1)
    _, strong = _binary(150, 2.5, 2)
    result = paired_bootstrap(y, strong, weak, _patients(150), "loss", CLASSES, resamples=300)
    assert result.difference < 0 and result.better(lower_is_better=True)
    assert result.p_value < 0.01


# -- calibration -----------------------------------------------------------------------------------------------
def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A predictor whose top-class confidence is exactly its probability of being right."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    correct = rng.uniform(0, 1, n) < confidence
    predicted = rng.integers(0, 2, n)
    y = np.where(correct, predicted, 1 - predicted)
    probs = np.zeros((n, 2))
    probs[np.arange(n), predicted] = confidence
    probs[np.arange(n), 1 - predicted] = 1 - confidence
    return y, probs


def test_a_perfectly_calibrated_predictor_has_an_ece_near_zero():
    y, probs = _calibrated(20000, 0)
    result = reliability(y, probs, bins=10)
    assert result["ece"] < 0.02
    assert sum(b["count"] for b in result["bins"]) == 20000
    for b in result["bins"]:
        if b["count"] > 500:
            assert abs(b["accuracy"] - b["confidence"]) < 0.05


def test_an_overconfident_predictor_has_a_large_ece_that_temperature_scaling_reduces():
    # GIVEN calibrated probabilities made overconfident (logits times 4)
    y, probs = _calibrated(5000, 1)
    sharp = apply_temperature(probs, 0.25)
    before = reliability(y, sharp)["ece"]
    # WHEN a temperature is fitted on them
    t = fit_temperature(y, sharp)
    # THEN it is about 4, lowers the NLL, and the ECE falls close to the calibrated one
    assert 3.0 < t < 5.0
    assert nll(y, apply_temperature(sharp, t)) < nll(y, sharp)
    assert before > 0.1
    assert reliability(y, apply_temperature(sharp, t))["ece"] < 0.03


def test_a_calibrated_predictor_keeps_a_temperature_near_one():
    y, probs = _calibrated(5000, 2)
    assert 0.85 < fit_temperature(y, probs) < 1.15


# -- operating points ------------------------------------------------------------------------------------------
def test_the_threshold_at_a_fixed_specificity_reaches_it_on_the_split_it_was_chosen_on():
    y, probs = _binary(400, 1.0, 0)
    t = threshold_at_specificity(y == 1, probs[:, 1], 0.9)
    spec = float(((probs[:, 1] < t) & (y == 0)).sum() / (y == 0).sum())
    assert 0.9 <= spec < 0.92  # the lowest threshold that reaches it: as much sensitivity as possible


def test_the_youden_point_separates_separable_scores():
    positive = np.array([False, False, False, True, True])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.9])
    assert youden_threshold(positive, scores) == 0.6


def test_operating_points_are_chosen_on_val_and_evaluated_on_test():
    # GIVEN val and test from the same model
    val = _binary(300, 1.0, 0)
    test = _binary(300, 1.0, 1)
    # WHEN operating points are chosen
    points = operating_points(CLASSES, val, test, specificities=(0.9, 0.95))
    # THEN each class has thresholds meeting the specificity on val, with test rates reported beside them
    for c in CLASSES:
        assert points[c]["specificity_0.9"]["val"]["specificity"] >= 0.9
        assert points[c]["specificity_0.95"]["val"]["specificity"] >= 0.95
        assert 0.0 <= points[c]["specificity_0.9"]["test"]["sensitivity"] <= 1.0
        assert points[c]["youden"]["threshold"] == pytest.approx(points[c]["youden"]["threshold"])
    # the stricter specificity never has the lower threshold
    assert points["pos"]["specificity_0.95"]["threshold"] >= points["pos"]["specificity_0.9"]["threshold"]


# -- subgroups -------------------------------------------------------------------------------------------------
def test_subgroups_report_counts_and_small_groups_as_too_small():
    # GIVEN 30 items: 24 CT, 6 MR; one column with a single value
    y, probs = _binary(30, 2.0, 0)
    attributes = {"modality": ["CT"] * 24 + ["MR"] * 6, "body_part": ["CHEST"] * 30}
    # WHEN subgroup metrics are computed with a minimum size of 10
    groups = subgroup_metrics(y, probs, attributes, CLASSES, patients=_patients(30), min_size=10)
    # THEN CT has numbers, MR only its counts, and the single-valued column is left out
    assert set(groups) == {"modality"}
    assert groups["modality"]["CT"]["n"] == 24 and groups["modality"]["CT"]["patients"] == 24
    assert 0 <= groups["modality"]["CT"]["accuracy"] <= 1
    assert groups["modality"]["MR"] == {"n": 6, "patients": 6, "too_small": True}


@pytest.mark.parametrize(
    ("age", "band"),
    [("045Y", "40-49"), ("006M", "0-9"), (67, "60-69"), ("", None), (None, None), ("abc", None), ("200Y", None)],
)
def test_age_bands(age, band):
    assert age_band(age) == band


def test_folds_aggregate_to_mean_and_sample_sd():
    # GIVEN three folds' metrics, one without an AUC
    folds = [{"val_auc": 0.8, "val_accuracy": 0.7, "best_epoch": 3}, {"val_auc": 0.9, "val_accuracy": 0.8},
             {"val_auc": None, "val_accuracy": 0.9}]  # fmt: skip
    # WHEN aggregated
    summary = aggregate_folds(folds)
    # THEN each metric has its mean, sample sd (ddof 1) and how many folds reported it; counters are left out
    assert summary["val_accuracy"]["mean"] == pytest.approx(0.8) and summary["val_accuracy"]["sd"] == pytest.approx(0.1)
    assert summary["val_auc"] == {"mean": 0.85, "sd": pytest.approx(0.070711, abs=1e-6), "n": 2, "values": [0.8, 0.9]}
    assert set(summary) == {"val_accuracy", "val_auc"}


def _findings(n: int, separations: tuple[float, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 finding vectors ``(n, K)`` and probabilities whose positive score per finding is shifted up."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (n, len(separations)))
    logits = rng.normal(0, 1, labels.shape) + np.asarray(separations) * (2 * labels - 1)
    return labels, 1 / (1 + np.exp(-logits))


@pytest.mark.parametrize(
    ("separations", "informative"),
    [
        ((3.0, 0.0), (True, False)),
        ((0.0, 3.0), (False, True)),
        ((3.0, 3.0), (True, True)),
    ],
)
def test_multilabel_intervals_lie_above_chance_only_for_an_informative_finding(separations, informative):
    # GIVEN findings scored by a model that knows some of them and guesses the others, two images per patient
    labels, probs = _findings(160, separations, seed=7)
    patients = [f"p{i // 2}" for i in range(160)]
    # WHEN the per-finding AUC intervals are drawn by patient bootstrap
    found = multilabel_intervals(labels, probs, patients, ("a", "b"), resamples=300, seed=0)
    # THEN an informative finding's interval lies above 0.5, a guessed one's contains it, and the mean is there too
    for finding, knows in zip(("a", "b"), informative, strict=True):
        ci = found[f"auc_{finding}"]
        assert ci is not None and ci["resamples"] == 300
        assert (ci["low"] > 0.5) is knows
        assert ci["low"] <= 0.5 <= ci["high"] or knows
    assert found["auc"] is not None and found["auc"]["low"] <= found["auc"]["high"]


def test_the_case_mean_interval_is_of_the_headline_statistic_and_resamples_patients():
    # GIVEN per-case Dice values (a case may define none: an empty mask) where one patient holds all the poor cases
    values = [[0.9], [0.92], [0.88, 0.91], [], [0.1], [0.12]]
    patients = ["a", "a", "b", "b", "c", "c"]
    # WHEN the interval of the mean Dice is drawn by patient bootstrap
    ci = case_mean_interval(values, patients, resamples=400, seed=0)
    # THEN it contains the headline mean (every defined value), and it is wide: patient c is in some draws, not others
    headline = float(np.mean([v for case in values for v in case]))
    assert ci is not None and ci["low"] <= headline <= ci["high"]
    assert ci["high"] - ci["low"] > 0.2
    # and with no defined value at all there is no interval
    assert case_mean_interval([[], []], ["a", "b"], resamples=50) is None
