"""Which split each patient goes to: patient-grouped, label-stratified, seeded. Pure functions, no IO.

The unit of assignment is the patient, so a patient never appears in two splits. Each patient falls in one
stratum: its most frequent label string among its rows (ties: the alphabetically first). A multi-label row
(``Effusion|Mass``) counts as that joined string, so each label combination is a stratum of its own.

Strata are handled smallest first (patient count, then name). Within a stratum the patients are shuffled with
the seeded generator and then ordered by row count, largest first (the shuffle breaks ties), and each one goes to
the split whose row count is furthest below its target, where targets are the ratios times the rows of the
strata handled so far. Because every stratum starts from near-balanced running totals, each stratum is split
close to the ratios, and the final totals end within about one patient's rows of the targets. The first
(largest) patient of every stratum goes to train, so every class is present in train. A stratum with fewer
patients than ``min_per_class`` is too small to spread over three splits and stays wholly in train.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from jobs.core.errors import DataError

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True, slots=True)
class PatientGroup:
    """One patient: its (dataset-namespaced) id, the stratum it is balanced in, and how many rows it has."""

    patient: str
    stratum: str
    rows: int


@dataclass(frozen=True)
class Assignment:
    """Patient -> split index (``TRAIN``, ``VAL``, ``TEST``), and the strata kept wholly in train."""

    split_of: dict[str, int]
    rare_strata: tuple[str, ...] = ()


def patient_groups(rows: Iterable[tuple[str, str]]) -> list[PatientGroup]:
    """``(patient, label)`` per row -> one group per patient (sorted by patient), stratum = its majority label."""
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    for patient, label in rows:
        labels[patient][label] += 1
    groups = []
    for patient in sorted(labels):
        counts = labels[patient]
        stratum = min(counts, key=lambda lab: (-counts[lab], lab))
        groups.append(PatientGroup(patient=patient, stratum=stratum, rows=sum(counts.values())))
    return groups


def assign_stratified(
    groups: Sequence[PatientGroup],
    ratios: Sequence[float],
    seed: int,
    min_per_class: int = 1,
) -> Assignment:
    """Assign every patient to a split so rows follow ``ratios`` overall and within each stratum."""
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[PatientGroup]] = defaultdict(list)
    for group in sorted(groups, key=lambda g: g.patient):
        by_stratum[group.stratum].append(group)
    totals = [0] * len(ratios)
    seen_rows = 0
    split_of: dict[str, int] = {}
    rare: list[str] = []
    for stratum in sorted(by_stratum, key=lambda s: (len(by_stratum[s]), s)):
        members = by_stratum[stratum]
        members = [members[i] for i in rng.permutation(len(members))]
        members.sort(key=lambda g: -g.rows)  # stable: the shuffle decides among equal sizes
        seen_rows += sum(g.rows for g in members)
        small = len(members) < min_per_class
        if small:
            rare.append(stratum)
        targets = [ratio * seen_rows for ratio in ratios]
        for position, group in enumerate(members):
            split = TRAIN
            if not small and position:  # the largest deficit, the first split among equals
                deficit = targets[0] - totals[0]
                for s, target in enumerate(targets):
                    if target - totals[s] > deficit:
                        split, deficit = s, target - totals[s]
            split_of[group.patient] = split
            totals[split] += group.rows
    return Assignment(split_of=split_of, rare_strata=tuple(sorted(rare)))


def official_by_patient(rows: Iterable[tuple[str, str | None]], where: str) -> dict[str, str]:
    """``(patient, official_split)`` per row -> the patient's official split; ``DataError`` on a bad or mixed one."""
    official: dict[str, str] = {}
    missing = 0
    for patient, value in rows:
        if value is None or value == "":
            missing += 1
            continue
        if value not in SPLIT_NAMES:
            raise DataError(
                f"{where}: official_split {value!r} for patient {patient!r}; expected one of "
                f"{', '.join(SPLIT_NAMES)}; fix the index's layout adapter and rerun irmsia-index"
            )
        if official.setdefault(patient, value) != value:
            raise DataError(
                f"{where}: patient {patient!r} is in official splits {official[patient]!r} and {value!r}; a "
                "patient must be in one split only; fix the official lists or use --split-from stratified"
            )
    if missing:
        raise DataError(
            f"{where}: {missing} rows have no official_split; use --split-from stratified for datasets "
            "without an official split"
        )
    return official


def assign_official(
    groups: Sequence[PatientGroup],
    official: Mapping[str, str],
    ratios: Sequence[float],
    seed: int,
    min_per_class: int = 1,
) -> Assignment:
    """Keep the official test (and val) patients; carve val out of the official train patients when none is given.

    With no official ``val``, the official train patients are split into train and val in the proportion
    ``ratios[0] : ratios[1]`` with ``assign_stratified``; the test ratio is not used.
    """
    split_of = {g.patient: SPLIT_NAMES.index(official[g.patient]) for g in groups}
    if VAL in split_of.values() or ratios[VAL] == 0:
        return Assignment(split_of=split_of)
    pool = [g for g in groups if split_of[g.patient] == TRAIN]
    share = ratios[TRAIN] + ratios[VAL]
    carved = assign_stratified(pool, (ratios[TRAIN] / share, ratios[VAL] / share, 0.0), seed, min_per_class)
    split_of.update(carved.split_of)
    return Assignment(split_of=split_of, rare_strata=carved.rare_strata)


def assign_folds(groups: Sequence[PatientGroup], folds: int, seed: int) -> dict[str, int]:
    """Patient -> fold ``0..folds-1``: the same stratified, patient-grouped assignment as the splits, with equal
    ratios, so every fold holds about ``1/folds`` of each stratum's rows and no patient is in two folds."""
    return assign_stratified(groups, [1.0 / folds] * folds, seed + 1).split_of
