"""``irmsia-train`` / ``python -m jobs.train``: train a classifier on a split (see ``jobs.train.stage``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from jobs.core.entrypoint import stage_main
    from jobs.train.settings import parse_settings
    from jobs.train.stage import run

    return stage_main("train", argv, parse_settings, run)


if __name__ == "__main__":
    sys.exit(main())
