"""The split stage's settings: one frozen dataclass, parsed and validated once from flags and the environment.

Argo passes every flag of the DAG, so an empty string means "not set" and the default applies.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jobs.core.errors import UsageError
from jobs.core.layout import check_name
from jobs.core.settings import (
    CommonSettings,
    StageArgumentParser,
    add_common_arguments,
    common_settings,
    int_flag,
    optional_flag,
    parse_ratio_list,
)

SPLITS = ("train", "val", "test")
SPLIT_FROM = ("stratified", "official")
DEFAULT_RATIOS = "0.7,0.15,0.15"
DEFAULT_SEED = 42
DEFAULT_MIN_PER_CLASS = 3


@dataclass(frozen=True, kw_only=True)
class SplitSettings:
    """Everything one split run needs."""

    common: CommonSettings = field(default_factory=CommonSettings)
    dataset: str
    """Name of the split written to ``splits/<dataset>/`` (and of the index read, unless ``merge`` is set)."""
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    """Target fractions of rows in train, val and test (sum 1)."""
    seed: int = DEFAULT_SEED
    """Seed of the patient shuffle: the same seed and input give byte-identical outputs."""
    merge: tuple[str, ...] = ()
    """Indexed datasets combined into ``dataset`` (sorted, distinct); empty: just ``index/<dataset>/``."""
    split_from: str = "stratified"
    """``stratified`` (computed here) or ``official`` (the index's ``official_split`` column)."""
    min_per_class: int = DEFAULT_MIN_PER_CLASS
    """A class with fewer patients than this is kept wholly in train (with a warning)."""

    def __post_init__(self) -> None:
        check_name(self.dataset, "--dataset")
        for name in self.merge:
            check_name(name, "--merge")
        if len(set(self.merge)) != len(self.merge):
            raise UsageError(f"--merge {','.join(self.merge)!r}: a dataset is named twice; list each once")
        if self.split_from not in SPLIT_FROM:
            raise UsageError(f"--split-from {self.split_from!r}: use one of {', '.join(SPLIT_FROM)}")
        if self.ratios[0] <= 0:
            raise UsageError(f"--ratios {','.join(map(str, self.ratios))!r}: the train fraction must be above 0")
        if self.seed < 0:
            raise UsageError(f"--seed {self.seed}: use a non-negative whole number")
        if self.min_per_class < 1:
            raise UsageError(f"--min-per-class {self.min_per_class}: use a positive whole number (1 disables it)")

    @property
    def datasets(self) -> tuple[str, ...]:
        """The indexed datasets this split reads."""
        return self.merge or (self.dataset,)

    def params(self) -> dict[str, object]:
        """The parameters that change the result (the cache key's part from the settings)."""
        return {
            "dataset": self.dataset,
            "datasets": list(self.datasets),
            "ratios": list(self.ratios),
            "seed": self.seed,
            "split_from": self.split_from,
            "min_per_class": self.min_per_class,
        }


def build_parser() -> argparse.ArgumentParser:
    parser = StageArgumentParser(
        prog="irmsia-split",
        description="Split index/<dataset>/ into train/val/test by patient, stratified by label, "
        "into splits/<dataset>/.",
    )
    parser.add_argument("--dataset", default="", help="dataset name (required): reads index/<NAME>/")
    parser.add_argument("--ratios", default="", help=f"train,val,test fractions (default {DEFAULT_RATIOS})")
    parser.add_argument("--seed", default="", help=f"shuffle seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--merge", default="", help="comma-separated indexed datasets to combine into --dataset (default: none)"
    )
    parser.add_argument(
        "--split-from",
        default="",
        help="stratified (default) or official: use the index's official_split column (NIH train_val/test lists)",
    )
    parser.add_argument(
        "--min-per-class",
        default="",
        help=f"classes with fewer patients stay wholly in train (default {DEFAULT_MIN_PER_CLASS})",
    )
    add_common_arguments(parser)
    return parser


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> SplitSettings:
    """Flags and environment -> validated ``SplitSettings`` (``UsageError`` naming the bad flag)."""
    args = build_parser().parse_args(list(argv))
    dataset = optional_flag(args.dataset)
    if dataset is None:
        raise UsageError("--dataset is required: the name of the split (and of the index to read, index/<NAME>/)")
    ratios = parse_ratio_list(optional_flag(args.ratios) or DEFAULT_RATIOS, "--ratios", len(SPLITS))
    merge = tuple(sorted(m.strip() for m in (args.merge or "").split(",") if m.strip()))
    return SplitSettings(
        common=common_settings(args, env),
        dataset=dataset,
        ratios=ratios,  # type: ignore[arg-type]
        seed=int_flag(args.seed, "--seed", DEFAULT_SEED),
        merge=merge,
        split_from=optional_flag(args.split_from) or "stratified",
        min_per_class=int_flag(args.min_per_class, "--min-per-class", DEFAULT_MIN_PER_CLASS),
    )
