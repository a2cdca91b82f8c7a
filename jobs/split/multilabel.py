"""Multi-label splits: each row has a set of findings (NIH's ``Effusion|Mass``), patients stay whole.

A row's findings are its label split on ``|``, stripped, without the label that means "none" (``No Finding``):
an empty set is a row with no finding. The split balances, per finding, the rows that have it, and overall the
rows, across train/val/test by an iterative stratification over patients (Sechidis et al., 2011, with the
patient as the unit): the finding with the fewest rows still unassigned is handled first; its patients, shuffled
with the seed and taken largest first, each go to the split furthest below its target for that finding (ties:
furthest below its row target, then train, val, test). A patient's other findings are counted wherever it goes.
The first patient of every finding goes to train, so train has every finding; a finding with fewer patients
than ``min_per_class`` goes wholly to train. Patients without findings fill the row targets last. Pure, no IO.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from jobs.split.assign import TRAIN, Assignment

NONE_LABEL = "No Finding"


def findings(label: str | None, none_label: str = NONE_LABEL) -> tuple[str, ...]:
    """The sorted findings of a ``|``-joined label; the none label (any case) and blanks are not findings."""
    if not label:
        return ()
    parts = {part.strip() for part in label.split("|")}
    return tuple(sorted(p for p in parts if p and p.lower() != none_label.lower()))


@dataclass(frozen=True)
class PatientFindings:
    """One patient: its rows, and how many of them have each finding."""

    patient: str
    rows: int
    counts: Counter[str] = field(default_factory=Counter)


def patient_findings(rows: Iterable[tuple[str, str | None]], none_label: str = NONE_LABEL) -> list[PatientFindings]:
    """``(patient, label)`` per row -> one record per patient, sorted by patient."""
    row_counts: Counter[str] = Counter()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for patient, label in rows:
        row_counts[patient] += 1
        counts[patient].update(findings(label, none_label))
    return [PatientFindings(p, row_counts[p], counts[p]) for p in sorted(row_counts)]


class _Totals:
    """Rows (overall and per finding) assigned to each split so far, against the targets the ratios set."""

    def __init__(self, groups: Sequence[PatientFindings], ratios: Sequence[float]) -> None:
        self.ratios = list(ratios)
        total_rows = sum(g.rows for g in groups)
        per_finding: Counter[str] = Counter()
        for g in groups:
            per_finding.update(g.counts)
        self.row_target = [r * total_rows for r in ratios]
        self.target = {f: [r * n for r in ratios] for f, n in per_finding.items()}
        self.rows = [0] * len(ratios)
        self.counts: list[Counter[str]] = [Counter() for _ in ratios]

    def add(self, group: PatientFindings, split: int) -> None:
        self.rows[split] += group.rows
        self.counts[split].update(group.counts)

    def best(self, finding: str | None) -> int:
        """The split furthest below its target for ``finding`` (or rows), ties by rows, then split order."""

        def need(s: int) -> tuple[float, float, int]:
            rows = self.row_target[s] - self.rows[s]
            if finding is None:
                return (rows, rows, -s)
            return (self.target[finding][s] - self.counts[s][finding], rows, -s)

        allowed = [s for s, ratio in enumerate(self.ratios) if ratio > 0]
        return max(allowed, key=need)


def assign_multilabel(
    groups: Sequence[PatientFindings], ratios: Sequence[float], seed: int, min_per_class: int = 1
) -> Assignment:
    """Assign every patient to a split, balancing rows per finding and overall (see the module docstring)."""
    rng = np.random.default_rng(seed)
    ordered = [groups[i] for i in rng.permutation(len(groups))]
    totals = _Totals(groups, ratios)
    patients_with: dict[str, int] = Counter(f for g in groups for f in g.counts)
    rare = sorted(f for f, n in patients_with.items() if n < min_per_class)
    split_of: dict[str, int] = {}
    for group in ordered:  # rare findings first: their patients all go to train
        if any(f in rare for f in group.counts):
            split_of[group.patient] = TRAIN
            totals.add(group, TRAIN)
    while True:
        remaining: Counter[str] = Counter()
        for g in ordered:
            if g.patient not in split_of:
                remaining.update(g.counts)
        if not remaining:
            break
        finding = min(remaining, key=lambda f: (remaining[f], f))
        members = [g for g in ordered if g.patient not in split_of and g.counts[finding]]
        members.sort(key=lambda g: -g.counts[finding])  # stable: the shuffle decides among equals
        for group in members:
            split = TRAIN if totals.counts[TRAIN][finding] == 0 else totals.best(finding)
            split_of[group.patient] = split
            totals.add(group, split)
    rest = [g for g in ordered if g.patient not in split_of]
    rest.sort(key=lambda g: -g.rows)
    for group in rest:
        split = totals.best(None)
        split_of[group.patient] = split
        totals.add(group, split)
    return Assignment(split_of=split_of, rare_strata=tuple(rare))
