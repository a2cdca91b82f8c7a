"""``irmsia-split`` / ``python -m jobs.split``: the split stage's process entrypoint."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.core.entrypoint import stage_main
from jobs.split.settings import parse_settings
from jobs.split.stage import run


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("split", argv, parse_settings, run)


if __name__ == "__main__":
    sys.exit(main())
