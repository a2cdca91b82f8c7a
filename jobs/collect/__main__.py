"""``irmsia-collect`` / ``python -m jobs.collect``: download a dataset into ``raw/<dataset>/``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.collect.settings import parse_settings
from jobs.collect.stage import run
from jobs.core.entrypoint import stage_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the collect stage; returns the contract's exit code."""
    return stage_main("collect", argv, parse_settings, run)


if __name__ == "__main__":
    sys.exit(main())
