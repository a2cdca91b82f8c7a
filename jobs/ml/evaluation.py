"""Evaluation statistics a clinician can check: patient-level bootstrap intervals, a paired test, calibration,
operating points and subgroup metrics. Pure numpy over labels, class probabilities and patient ids; no IO, no torch.

Why the patient is the unit: images of one patient are correlated, so resampling images would understate the
uncertainty. Every resample draws patients with replacement and takes all their images. The same resamples
(one seeded generator) serve every metric, and a paired comparison of two models uses the same resamples for
both, so the interval is of the *difference* on the same patients, not of two independent numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.ml.scores import binary_auc, classification_metrics

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
PER_CLASS = ("auc", "sensitivity", "specificity")
"""Per-class metrics that get an interval besides the headline ones."""


# -- resampling ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientResampler:
    """Seeded patient-level bootstrap: ``indices()`` yields item index arrays, one per resample."""

    groups: tuple[np.ndarray, ...]
    resamples: int
    seed: int

    @classmethod
    def of(cls, patients: Sequence[str], resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> PatientResampler:
        """Group item positions by patient (patients sorted, so the draw does not depend on item order)."""
        by_patient: dict[str, list[int]] = {}
        for i, patient in enumerate(patients):
            by_patient.setdefault(str(patient), []).append(i)
        groups = tuple(np.asarray(by_patient[p], np.int64) for p in sorted(by_patient))
        return cls(groups=groups, resamples=resamples, seed=seed)

    @property
    def patients(self) -> int:
        return len(self.groups)

    def indices(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        n = len(self.groups)
        if n == 0:
            return []
        return [np.concatenate([self.groups[p] for p in rng.integers(0, n, n)]) for _ in range(self.resamples)]


def _percentile_interval(values: list[float], level: float) -> dict[str, Any] | None:
    if not values:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(np.asarray(values, np.float64), [tail, 100.0 - tail])
    return {"low": round(float(low), 6), "high": round(float(high), 6), "resamples": len(values)}


def _metric_values(metrics: Mapping[str, Any], classes: Sequence[str]) -> dict[str, float | None]:
    """The metrics that get intervals, flat: headline names and ``<metric>_<class>`` per class."""
    values: dict[str, float | None] = {m: metrics[m] for m in ("accuracy", "balanced_accuracy", "macro_f1", "auc")}
    per_class = metrics["details"]["per_class"]
    for c in classes:
        for m in PER_CLASS:
            values[f"{m}_{c}"] = per_class[c][m]
    return values


def bootstrap_intervals(
    labels: np.ndarray,
    probs: np.ndarray,
    patients: Sequence[str],
    classes: Sequence[str],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, dict[str, Any] | None]:
    """``{metric: {"low", "high", "resamples"}}`` by patient bootstrap (the headline metrics, per-class AUC,
    sensitivity and specificity, and ``loss``, the NLL); ``None`` where no resample defines it.

    ``resamples`` counts only the draws where the metric is defined (an AUC needs both classes in the draw).
    """
    labels, probs = np.asarray(labels, np.int64), np.asarray(probs, np.float64)
    sampler = PatientResampler.of(patients, resamples, seed)
    draws: dict[str, list[float]] = {}
    for idx in sampler.indices():
        values = _metric_values(classification_metrics(labels[idx], probs[idx], classes), classes)
        values["loss"] = nll(labels[idx], probs[idx])
        for name, value in values.items():
            if value is not None:
                draws.setdefault(name, []).append(float(value))
    names = [*_metric_values(classification_metrics(labels, probs, classes), classes), "loss"]
    return {name: _percentile_interval(draws.get(name, []), level) for name in names}


def multilabel_intervals(
    labels: np.ndarray,
    probs: np.ndarray,
    patients: Sequence[str],
    findings: Sequence[str],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, dict[str, Any] | None]:
    """Multi-label: ``auc_<finding>`` per finding and ``auc`` (their mean over defined findings) by patient
    bootstrap of the ``(N, K)`` 0/1 ``labels`` and finding probabilities."""
    labels, probs = np.asarray(labels, np.int64), np.asarray(probs, np.float64)

    def values(idx: np.ndarray) -> dict[str, float | None]:
        per = {f"auc_{f}": binary_auc(labels[idx, k] == 1, probs[idx, k]) for k, f in enumerate(findings)}
        defined = [v for v in per.values() if v is not None]
        return {"auc": float(np.mean(defined)) if defined else None, **per}

    draws: dict[str, list[float]] = {}
    for idx in PatientResampler.of(patients, resamples, seed).indices():
        for name, value in values(idx).items():
            if value is not None:
                draws.setdefault(name, []).append(float(value))
    names = values(np.arange(len(labels)))
    return {name: _percentile_interval(draws.get(name, []), level) for name in names}


def case_mean_interval(
    values: Sequence[Sequence[float]],
    patients: Sequence[str],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Any] | None:
    """The interval of the mean of every case's ``values`` (a segmentation's Dice per foreground class it defines,
    so the statistic is the headline Dice) by patient bootstrap; ``None`` when no draw defines it."""
    per_case = [np.asarray(v, np.float64) for v in values]
    draws = []
    for idx in PatientResampler.of(patients, resamples, seed).indices():
        picked = [per_case[i] for i in idx if len(per_case[i])]
        if picked:
            draws.append(float(np.concatenate(picked).mean()))
    return _percentile_interval(draws, level)


# -- paired comparison -----------------------------------------------------------------------------------------
def nll(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean negative log-likelihood of the true class (the cross-entropy loss)."""
    if not len(labels):
        return None
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(p).mean())


def metric_function(name: str, classes: Sequence[str]) -> Callable[[np.ndarray, np.ndarray], float | None]:
    """``(labels, probs) -> value`` for a headline metric name (``auc``, ``accuracy``…, or ``loss``)."""
    if name == "loss":
        return nll
    return lambda y, p: classification_metrics(y, p, classes)[name]


@dataclass(frozen=True)
class PairedResult:
    """Challenger minus champion on the same patients: the observed difference, its interval and a p-value.

    ``p_value`` is one-sided: the share of resamples in which the challenger is *not* better (difference <= 0 for
    a higher-is-better metric, >= 0 for a loss), the bootstrap estimate of how often a no-better model would look
    this good.
    """

    metric: str
    difference: float
    low: float
    high: float
    p_value: float
    resamples: int
    patients: int
    level: float

    def better(self, lower_is_better: bool) -> bool:
        """Whether the whole interval lies on the challenger's side of zero."""
        return self.high < 0 if lower_is_better else self.low > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": "paired patient bootstrap",
            "metric": self.metric,
            "difference": round(self.difference, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
            "p_value": round(self.p_value, 6),
            "resamples": self.resamples,
            "patients": self.patients,
            "level": self.level,
        }


def paired_bootstrap(  # noqa: PLR0913 - the two models, the split they share, the metric, and the bootstrap
    labels: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    patients: Sequence[str],
    metric: str,
    classes: Sequence[str],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> PairedResult | None:
    """Paired patient bootstrap of ``metric(challenger) - metric(champion)``; ``None`` if it is never defined."""
    labels = np.asarray(labels, np.int64)
    a, b = np.asarray(challenger, np.float64), np.asarray(champion, np.float64)
    fn = metric_function(metric, classes)
    observed_a, observed_b = fn(labels, a), fn(labels, b)
    if observed_a is None or observed_b is None:
        return None
    sampler = PatientResampler.of(patients, resamples, seed)
    diffs = []
    for idx in sampler.indices():
        va, vb = fn(labels[idx], a[idx]), fn(labels[idx], b[idx])
        if va is not None and vb is not None:
            diffs.append(va - vb)
    if not diffs:
        return None
    interval = _percentile_interval(diffs, level)
    assert interval is not None
    d = np.asarray(diffs)
    not_better = float(np.mean(d >= 0)) if metric == "loss" else float(np.mean(d <= 0))
    return PairedResult(
        metric=metric,
        difference=float(observed_a - observed_b),
        low=interval["low"],
        high=interval["high"],
        p_value=not_better,
        resamples=len(diffs),
        patients=sampler.patients,
        level=level,
    )


# -- calibration -----------------------------------------------------------------------------------------------
def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the top-class confidence over ``bins`` equal-width bins, and the bins.

    ECE = sum over bins of (items in bin / N) * |accuracy in bin - mean confidence in bin|.
    """
    labels, probs = np.asarray(labels, np.int64), np.asarray(probs, np.float64)
    if not len(labels):
        return {"ece": None, "bins": []}
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 joins the first bin
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for i in range(bins):
        mask = which == i
        count = int(mask.sum())
        row: dict[str, Any] = {"low": i / bins, "high": (i + 1) / bins, "count": count}
        if count:
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += count / len(labels) * abs(acc - conf)
            row.update(accuracy=round(acc, 6), confidence=round(conf, 6))
        rows.append(row)
    return {"ece": round(ece, 6), "bins": rows}


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``logits / T``; ``log(probs)`` differs from the logits by a per-row constant, which softmax drops."""
    logits = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(labels: np.ndarray, probs: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature in ``[low, high]`` minimising the NLL of ``labels`` (golden-section search on log T).

    The NLL of temperature-scaled probabilities is convex in 1/T, so the search finds the global minimum.
    """
    labels = np.asarray(labels, np.int64)

    def loss(log_t: float) -> float:
        return nll(labels, apply_temperature(probs, float(np.exp(log_t)))) or 0.0

    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(80):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    best = float(np.exp((a + b) / 2))
    # Never worse than leaving the model alone.
    return best if loss(np.log(best)) < loss(0.0) else 1.0


# -- operating points ------------------------------------------------------------------------------------------
def _rates(positive: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    predicted = scores >= threshold
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    sens = float((predicted & positive).sum() / n_pos) if n_pos else None
    spec = float((~predicted & ~positive).sum() / n_neg) if n_neg else None
    return sens, spec


def _candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    # every distinct score is a threshold (predict positive when score >= t), plus one above all (none positive)
    return np.concatenate([np.unique(scores), [np.inf]])


def threshold_at_specificity(positive: np.ndarray, scores: np.ndarray, specificity: float) -> float | None:
    """The lowest threshold whose specificity on these items is at least ``specificity`` (max sensitivity)."""
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return None
    for t in _candidate_thresholds(np.asarray(scores, np.float64)):
        _, spec = _rates(positive, scores, float(t))
        if spec is not None and spec >= specificity:
            return float(t)
    return None


def youden_threshold(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """The threshold maximising sensitivity + specificity - 1 (the lowest such threshold on ties)."""
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return None
    best_t, best_j = None, -np.inf
    for t in _candidate_thresholds(np.asarray(scores, np.float64)):
        sens, spec = _rates(positive, scores, float(t))
        j = (sens or 0.0) + (spec or 0.0) - 1.0
        if j > best_j + 1e-12:
            best_t, best_j = float(t), j
    return best_t


def _json_threshold(t: float) -> float | str:
    return "inf" if np.isinf(t) else round(t, 6)


def operating_points(
    classes: Sequence[str],
    chosen_on: tuple[np.ndarray, np.ndarray],
    evaluated_on: tuple[np.ndarray, np.ndarray] | None,
    specificities: Sequence[float] = (0.9,),
) -> dict[str, Any]:
    """Per class (one vs rest), thresholds chosen on ``chosen_on`` (val) and their rates there and on
    ``evaluated_on`` (test): at each fixed specificity and at the Youden point."""
    y_val, p_val = np.asarray(chosen_on[0], np.int64), np.asarray(chosen_on[1], np.float64)
    out: dict[str, Any] = {}
    for i, c in enumerate(classes):
        picks: dict[str, float | None] = {
            f"specificity_{s:g}": threshold_at_specificity(y_val == i, p_val[:, i], s) for s in specificities
        }
        picks["youden"] = youden_threshold(y_val == i, p_val[:, i])
        points: dict[str, dict[str, Any] | None] = {}
        for name, t in picks.items():
            if t is None:
                points[name] = None
                continue
            sens, spec = _rates(y_val == i, p_val[:, i], t)
            point: dict[str, Any] = {"threshold": _json_threshold(t), "val": {"sensitivity": sens, "specificity": spec}}
            if evaluated_on is not None and len(evaluated_on[0]):
                y_t, p_t = np.asarray(evaluated_on[0], np.int64), np.asarray(evaluated_on[1], np.float64)
                sens_t, spec_t = _rates(y_t == i, p_t[:, i], t)
                point["test"] = {"sensitivity": sens_t, "specificity": spec_t}
            points[name] = point
        out[c] = points
    return out


# -- subgroups -------------------------------------------------------------------------------------------------
def subgroup_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    attributes: Mapping[str, Sequence[Any]],
    classes: Sequence[str],
    *,
    patients: Sequence[str],
    min_size: int,
) -> dict[str, dict[str, Any]]:
    """``{column: {value: {"n", "patients", metrics… | "too_small": True}}}`` for each attribute column with at
    least two distinct values; a group with fewer than ``min_size`` images is reported by its counts only."""
    labels, probs = np.asarray(labels, np.int64), np.asarray(probs, np.float64)
    patients_arr = np.asarray([str(p) for p in patients])
    out: dict[str, dict[str, Any]] = {}
    for column, values in sorted(attributes.items()):
        text = np.asarray(["unknown" if v is None or v == "" else str(v) for v in values])
        distinct = sorted(set(text.tolist()))
        if len(distinct) < 2:
            continue  # one value: the subgroup is the whole split
        groups: dict[str, Any] = {}
        for value in distinct:
            mask = text == value
            n = int(mask.sum())
            row: dict[str, Any] = {"n": n, "patients": len(set(patients_arr[mask].tolist()))}
            if n < min_size:
                row["too_small"] = True
            else:
                m = classification_metrics(labels[mask], probs[mask], classes)
                row.update({k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc")})
            groups[value] = row
        out[column] = groups
    return out


def age_band(age: Any) -> str | None:
    """A DICOM age (``045Y``, ``006M``) or a number of years as a decade band (``40-49``); ``None`` if unknown."""
    if age is None or age == "":
        return None
    text = str(age).strip().upper()
    try:
        if text[-1:] in "DWMY" and text[:-1].isdigit():
            years = int(text[:-1]) / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[text[-1]]
        else:
            years = float(text)
    except ValueError:
        return None
    if not 0 <= years < 150:
        return None
    low = int(years // 10) * 10
    return f"{low}-{low + 9}"


# -- cross-validation ------------------------------------------------------------------------------------------
def aggregate_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation over folds of every flat numeric ``<split>_<metric>`` that each fold's
    ``metrics.json`` reports (a metric missing or ``None`` in a fold is left out of that metric's ``n``)."""
    names = sorted({k for m in fold_metrics for k, v in m.items() if k.startswith(("val_", "test_"))
                    and isinstance(v, int | float) and not isinstance(v, bool)})  # fmt: skip
    out = {}
    for name in names:
        values = [float(m[name]) for m in fold_metrics if isinstance(m.get(name), int | float)]
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out[name] = {"mean": round(float(np.mean(values)), 6), "sd": None if sd is None else round(sd, 6),
                     "n": len(values), "values": values}  # fmt: skip
    return out
