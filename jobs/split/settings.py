"""The split stage's settings: its options, declared once (see ``jobs.core.settings``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.errors import UsageError
from jobs.core.paths import check_name
from jobs.core.settings import StageSettings, option, ratio_list

SPLITS = ("train", "val", "test")
SPLIT_FROM = ("stratified", "official")
TASKS = ("classification", "multilabel", "segmentation")
"""The train tasks (``jobs.split.tasks``); stated here too so that settings import nothing else of the stage."""


def _names(values: tuple[str, ...], flag: str) -> None:
    for name in values:
        check_name(name, flag)
    if len(set(values)) != len(values):
        raise UsageError(f"{flag} {','.join(values)!r}: a dataset is named twice; list each once")


def _sorted_names(text: str) -> tuple[str, ...]:
    return tuple(sorted(m.strip() for m in text.split(",") if m.strip()))


@dataclass(frozen=True, kw_only=True)
class SplitSettings(StageSettings):
    """Everything one split run needs."""

    prog = "irmsia-split"
    about = "Split index/<dataset>/ into train/val/test by patient, stratified by label, into splits/<dataset>/."

    dataset: str = option(
        check=check_name,
        result=True,
        parameter="dataset",
        help="name of the split written to splits/<dataset>/ (and of the index read, unless --merge is set)",
    )
    ratios: tuple[float, float, float] = option(
        (0.7, 0.15, 0.15),
        parse=ratio_list(len(SPLITS)),
        result=True,
        parameter="ratios",
        help="train,val,test fractions (sum 1)",
    )
    seed: int = option(
        42,
        minimum=0,
        result=True,
        parameter="seed",
        help="seed of the patient shuffle: the same seed and input give byte-identical outputs",
    )
    merge: tuple[str, ...] = option(
        (),
        parse=_sorted_names,
        check=_names,
        parameter="merge",
        help="comma-separated indexed datasets to combine into --dataset",
    )
    split_from: str = option(
        "stratified",
        choices=SPLIT_FROM,
        result=True,
        parameter="split_from",
        help="stratified (grouped by patient) or official (the index's official_split "
        "column, e.g. NIH's train_val/test lists)",
    )
    task: str = option(
        "classification",
        choices=TASKS,
        result=True,
        parameter="task",
        help="what the split is for: classification (a label per image), multilabel (findings joined by |, "
        "stratified per finding) or segmentation (images with a mask)",
    )
    none_label: str = option(
        "No Finding",
        result=True,
        help="--task multilabel: the label that means no finding (NIH's 'No Finding'); such rows have none",
    )
    min_per_class: int = option(
        3,
        minimum=1,
        result=True,
        parameter="min_per_class",
        help="a class with fewer patients than this stays wholly in train (1 disables it)",
    )

    folds: int = option(
        0,
        minimum=0,
        maximum=50,
        result=True,
        parameter="folds",
        help="also assign the train and val patients to this many patient-grouped, stratified folds for "
        "cross-validation (a 'fold' column; the test split is untouched; 0: none)",
    )

    def validate(self) -> None:
        if self.folds == 1:
            raise UsageError("--folds 1: cross-validation needs at least 2 folds (or 0 for none)")
        if self.ratios[0] <= 0:
            raise UsageError(f"--ratios {','.join(map(str, self.ratios))!r}: the train fraction must be above 0")

    @property
    def datasets(self) -> tuple[str, ...]:
        """The indexed datasets this split reads."""
        return self.merge or (self.dataset,)

    def result_params(self) -> dict[str, Any]:
        """The options that change the result, with ``--merge`` as the datasets read."""
        return {**super().result_params(), "datasets": list(self.datasets)}

    def log_fields(self) -> dict[str, str | None]:
        return {"dataset": self.dataset, "run_id": None}
