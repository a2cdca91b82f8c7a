"""Settings of the index stage, parsed once from flags (and the environment, for the common ones)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobs.core.errors import UsageError
from jobs.core.layout import check_name
from jobs.core.settings import CommonSettings, StageArgumentParser, add_common_arguments, common_settings
from jobs.index.layouts import AUTO, LAYOUTS


@dataclass(frozen=True, kw_only=True)
class IndexSettings:
    """What one index run needs; every field is validated here, once."""

    common: CommonSettings
    dataset: str
    """Dataset name: reads ``raw/<dataset>/``, writes ``index/<dataset>/``."""
    labels: str | None = None
    """Labels CSV: a store key (also relative to ``raw/<dataset>/``) or a local path; ``None`` when unset."""
    layout: str = AUTO
    """Layout adapter name, or ``auto`` to detect it from the tree."""
    verify_pixels: bool = False
    """Decode every image's pixel data and quarantine those that fail (slower: reads whole files)."""
    workers: int = 0
    """Worker processes; 0 means one per available core."""

    def __post_init__(self) -> None:
        check_name(self.dataset, "--dataset")
        if self.layout != AUTO and self.layout not in LAYOUTS:
            raise UsageError(f"--layout {self.layout!r}: use {AUTO} or one of {', '.join(LAYOUTS)}")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers}: use 0 (one per core) or a positive number")


def build_parser() -> argparse.ArgumentParser:
    parser = StageArgumentParser(
        prog="irmsia-index", description="Hash, sniff and read every raw file; write the index."
    )
    parser.add_argument("--dataset", required=True, help="dataset name (raw/<dataset>/ -> index/<dataset>/)")
    parser.add_argument("--labels", default="", help="labels CSV: store key or local path ('' = none)")
    parser.add_argument("--layout", default="", help=f"layout adapter: {AUTO} (default) or one of {', '.join(LAYOUTS)}")
    parser.add_argument("--verify-pixels", action="store_true", help="also decode pixel data; quarantine failures")
    parser.add_argument("--workers", default="", help="worker processes (default: one per core)")
    add_common_arguments(parser)
    return parser


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> IndexSettings:
    """Flags -> ``IndexSettings``; ``UsageError`` naming the flag on any bad value."""
    args = build_parser().parse_args(list(argv))
    workers_text = str(args.workers).strip()
    try:
        workers = int(workers_text) if workers_text else 0
    except ValueError as exc:
        raise UsageError(f"--workers {workers_text!r}: expected a whole number") from exc
    return IndexSettings(
        common=common_settings(args, env),
        dataset=args.dataset,
        labels=args.labels.strip() or None,
        layout=args.layout.strip() or AUTO,
        verify_pixels=bool(args.verify_pixels),
        workers=workers,
    )
