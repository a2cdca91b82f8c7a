"""``irmsia-train`` / ``python -m jobs.train``: train a classifier on a split (see ``jobs.train.stage``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    # Before torch loads OpenMP: idle threads sleep instead of spinning. On a shared or CPU-limited node a
    # spinning team waits for descheduled members; measured 75 ms vs 985 ms per small-cnn step on 2 busy cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from jobs.core.entrypoint import stage_main
    from jobs.train.settings import parse_settings
    from jobs.train.stage import run

    return stage_main("train", argv, parse_settings, run)


if __name__ == "__main__":
    sys.exit(main())
