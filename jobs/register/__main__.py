"""``irmsia-register`` / ``python -m jobs.register``: register a trained run as a new model version."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.core.entrypoint import stage_main
from jobs.register.stage import STAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the register stage; returns the contract's exit code."""
    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
