"""``irmsia-index`` / ``python -m jobs.index``: the index stage's process entrypoint."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.core.entrypoint import stage_main
from jobs.index.stage import STAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the index stage; returns the contract's exit code."""
    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
