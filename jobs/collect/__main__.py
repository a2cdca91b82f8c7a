"""``irmsia-collect`` / ``python -m jobs.collect``: download a dataset into ``raw/<dataset>/``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.collect.stage import STAGE
from jobs.core.entrypoint import stage_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the collect stage; returns the contract's exit code."""
    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
