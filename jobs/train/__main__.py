"""``irmsia-train`` / ``python -m jobs.train``: train a classifier on a split (see ``jobs.train.stage``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the train stage; returns the contract's exit code."""
    # Before torch loads OpenMP: idle threads sleep instead of spinning. On a shared or CPU-limited node a
    # spinning team waits for descheduled members; measured 75 ms vs 985 ms per small-cnn step on 2 busy cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from jobs.core.entrypoint import stage_main
    from jobs.train.stage import STAGE

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
