"""The run's evaluation outputs: who each scored image belongs to, and the ``metrics.json`` sections built from it.

Train scores val and test with the best model; this module joins each scored image to its patient (the split's
``datalist.json``) and to its index columns (the split's ``<split>.csv``, which carries every index column), then
computes, with ``jobs.ml.evaluation``: patient-bootstrap intervals for every metric, calibration (ECE and
reliability bins, optionally after a temperature fitted on val), operating points chosen on val and evaluated on
test, and metrics per subgroup. No torch here.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.core.errors import DataError
from jobs.core.manifest import Manifest, read_output
from jobs.ml import evaluation
from jobs.ml.predictions import PROB_DIGITS, Scored

log = logging.getLogger("irmsia.train.assessment")
SUBGROUP_COLUMNS = ("dataset", "modality", "body_part", "manufacturer", "view_position", "patient_sex", "age_band")
"""Index columns reported per value when the split carries them (``age_band`` is derived from ``patient_age``)."""
_SECTIONS = ("training", "validation", "test")


@dataclass(frozen=True)
class EvaluationOptions:
    """How the run is assessed (the train options of the same names)."""

    resamples: int = evaluation.DEFAULT_RESAMPLES
    seed: int = 0
    calibrate: bool = False
    specificity: float = 0.9
    min_subgroup: int = 10


def _csv_rows(store: Any, manifest: Manifest, split: str) -> dict[str, dict[str, str]]:
    name = f"{split}.csv"
    if not any(o.key == manifest.prefix + name for o in manifest.outputs):
        return {}
    text = read_output(store, manifest, name).decode("utf-8")
    return {row["key"]: row for row in csv.DictReader(io.StringIO(text)) if row.get("key")}


def _attributes(rows: Sequence[Mapping[str, str] | None]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    present = {c for row in rows if row for c in row}
    for column in SUBGROUP_COLUMNS:
        if column == "age_band" and "patient_age" in present:
            out[column] = [evaluation.age_band(row.get("patient_age")) if row else None for row in rows]
        elif column in present:
            out[column] = [(row.get(column) or None) if row else None for row in rows]
    return out


def join_items(
    store: Any, manifest: Manifest, predictions: Mapping[str, tuple[Sequence[str], np.ndarray, np.ndarray]]
) -> dict[str, Scored]:
    """``{split: Scored}`` for ``{split: (keys, labels, probs)}``; an image whose datalist row has no patient is
    its own patient (an older split), with a warning."""
    where = f"{manifest.prefix}datalist.json"
    try:
        datalist = json.loads(read_output(store, manifest, "datalist.json"))
    except ValueError as exc:
        raise DataError(f"{where}: not valid JSON ({exc}); rerun irmsia-split --force") from exc
    # every section and CSV: with --fold, val images come from the split's train and val sections
    patient_of = {str(r["image"]): r.get("patient_id") for s in _SECTIONS for r in datalist.get(s, [])}
    # an item of a volume (a series' slices as one) is named by its volume: the patient of its rows
    for s in _SECTIONS:
        for r in datalist.get(s, []):
            if r.get("volume"):
                patient_of.setdefault(str(r["volume"]), r.get("patient_id"))
    rows = {k: v for split in ("train", "val", "test") for k, v in _csv_rows(store, manifest, split).items()}
    for row in list(rows.values()):
        if row.get("volume"):
            rows.setdefault(row["volume"], row)
    scored = {}
    for split, (keys, labels, probs) in predictions.items():
        missing = [k for k in keys if not patient_of.get(k)]
        if missing:
            log.warning("%s: %d %s images lack a patient_id; each is its own patient", where, len(missing), split)
        scored[split] = Scored(
            keys=tuple(keys),
            labels=np.asarray(labels, np.int64),
            probs=np.round(np.asarray(probs, np.float64), PROB_DIGITS),
            patients=tuple(str(patient_of.get(k) or k) for k in keys),
            attributes=_attributes([rows.get(k) for k in keys]),
        )
    return scored


def patients_of(store: Any, manifest: Manifest, keys: Sequence[str]) -> tuple[str, ...]:
    """The patient of each item (image key or volume id); an item without one is its own patient."""
    joined = join_items(store, manifest, {"items": (keys, np.zeros(len(keys), np.int64), np.zeros((len(keys), 0)))})
    return joined["items"].patients


NOT_APPLICABLE = {
    "multilabel": {
        "calibration": "multi-label findings are scored one by one; ECE and temperature scaling are of a softmax",
        "operating_points": "each finding's threshold is chosen on val by the task itself (config.json thresholds)",
        "subgroups": "subgroup metrics are computed for classification runs only",
        "paired_test": "the paired promotion test compares classification predictions only",
    },
    "segmentation": {
        "calibration": "a segmentation has no per-image class probabilities to calibrate",
        "operating_points": "a segmentation has no per-image score to threshold",
        "subgroups": "subgroup metrics are computed for classification runs only",
        "paired_test": "the paired promotion test compares classification predictions only",
    },
}
"""Per task, the parts of the classification evaluation that do not apply, and why (``metrics.json``)."""


def _bootstrap_section(options: EvaluationOptions, patients: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    return {
        "unit": "patient",
        "resamples": options.resamples,
        "seed": options.seed,
        "level": evaluation.DEFAULT_LEVEL,
        "method": "percentile",
        "patients": {split: len(set(p)) for split, p in patients.items()},
    }


def assess_multilabel(scored: Mapping[str, Scored], findings: Sequence[str], options: EvaluationOptions) -> dict:
    """Multi-label ``metrics.json`` sections: per-finding and mean AUC intervals by patient bootstrap, and what
    does not apply."""
    out: dict[str, Any] = {"not_applicable": NOT_APPLICABLE["multilabel"]}
    if options.resamples > 0:
        intervals: dict[str, Any] = {}
        for split, s in scored.items():
            found = evaluation.multilabel_intervals(
                s.labels, s.probs, s.patients, findings, resamples=options.resamples, seed=options.seed
            )
            intervals.update(_flat_intervals(split, found))
        out["intervals"] = intervals
        out["bootstrap"] = _bootstrap_section(options, {split: s.patients for split, s in scored.items()})
    return out


def assess_segmentation(
    cases: Mapping[str, tuple[Sequence[Sequence[float]], Sequence[str]]], options: EvaluationOptions
) -> dict[str, Any]:
    """Segmentation ``metrics.json`` sections: the interval of the headline Dice (``{split: (each case's defined
    foreground Dice values, patients)}``) by patient bootstrap, and what does not apply."""
    out: dict[str, Any] = {"not_applicable": NOT_APPLICABLE["segmentation"]}
    if options.resamples > 0:
        out["intervals"] = {
            f"{split}_dice": evaluation.case_mean_interval(
                values, patients, resamples=options.resamples, seed=options.seed
            )
            for split, (values, patients) in cases.items()
        }
        out["bootstrap"] = _bootstrap_section(options, {split: p for split, (_, p) in cases.items()})
    return out


def _flat_intervals(split: str, intervals: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{split}_{name}": ci for name, ci in intervals.items()}


def assess(scored: Mapping[str, Scored], classes: Sequence[str], options: EvaluationOptions) -> dict[str, Any]:
    """The ``metrics.json`` sections: ``intervals``, ``bootstrap``, ``calibration``, ``operating_points``,
    ``subgroups`` and ``serving`` (the temperature and thresholds a server applies)."""
    out: dict[str, Any] = {}
    if options.resamples > 0:
        intervals: dict[str, Any] = {}
        for split, s in scored.items():
            found = evaluation.bootstrap_intervals(
                s.labels, s.probs, s.patients, classes, resamples=options.resamples, seed=options.seed
            )
            intervals.update(_flat_intervals(split, found))
        out["intervals"] = intervals
        out["bootstrap"] = {
            "unit": "patient",
            "resamples": options.resamples,
            "seed": options.seed,
            "level": evaluation.DEFAULT_LEVEL,
            "method": "percentile",
            "patients": {split: len(set(s.patients)) for split, s in scored.items()},
        }
    val, test = scored.get("val"), scored.get("test")
    temperature = 1.0
    if options.calibrate and val is not None and len(val.labels):
        temperature = round(evaluation.fit_temperature(val.labels, val.probs), 6)

    def calibrated(s: Scored) -> np.ndarray:
        return evaluation.apply_temperature(s.probs, temperature) if temperature != 1.0 else s.probs

    calibration: dict[str, Any] = {"temperature": temperature, "fitted_on": "val" if options.calibrate else None}
    for split, s in scored.items():
        section = evaluation.reliability(s.labels, calibrated(s))
        section["nll"] = _round(evaluation.nll(s.labels, calibrated(s)))
        if temperature != 1.0:
            section["uncalibrated"] = {
                "ece": evaluation.reliability(s.labels, s.probs)["ece"],
                "nll": _round(evaluation.nll(s.labels, s.probs)),
            }
        calibration[split] = section
    out["calibration"] = calibration
    points: dict[str, Any] = {}
    if val is not None and len(val.labels):
        points = evaluation.operating_points(
            classes,
            (val.labels, calibrated(val)),
            (test.labels, calibrated(test)) if test is not None else None,
            specificities=(options.specificity,),
        )
    out["operating_points"] = points
    out["subgroups"] = {
        split: evaluation.subgroup_metrics(
            s.labels, s.probs, s.attributes, classes, patients=s.patients, min_size=options.min_subgroup
        )
        for split, s in scored.items()
    }
    out["serving"] = {
        "temperature": temperature,
        "thresholds_on": "softmax(logits / temperature)",
        "operating_points": {
            c: {name: p["threshold"] for name, p in by_name.items() if p is not None} for c, by_name in points.items()
        },
    }
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
